export { startBroker } from "./app/start-broker.js";
export type { RunningBroker, StartOptions } from "./app/running-broker.js";
