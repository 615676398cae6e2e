/**
 * What a caller can ask the broker to do, named by the domain. Each is one RPC on the wire; the
 * full method names belong to transport, which maps a called method to its operation
 * (transport/rpc-operations.ts).
 */
export const OPERATIONS = [
  "getAccessToken",
  "startAuthorization",
  "completeAuthorization",
  "listIntegrations",
  "getIntegration",
  "refreshIntegration",
  "syncIntegrations",
  "deleteIntegration",
  "watchIntegrations",
  "listProviders",
  "getStatus",
  "listAuditEvents",
] as const;

export type Operation = (typeof OPERATIONS)[number];

/** The rate-limit class of an operation: each class has its own per-principal budget. */
export type OperationClass = "token" | "read" | "write" | "admin";

const CLASSES: Readonly<Record<Operation, OperationClass>> = {
  getAccessToken: "token",
  listIntegrations: "read",
  getIntegration: "read",
  watchIntegrations: "read",
  listProviders: "read",
  startAuthorization: "write",
  completeAuthorization: "write",
  refreshIntegration: "write",
  syncIntegrations: "write",
  deleteIntegration: "write",
  getStatus: "admin",
  listAuditEvents: "admin",
};

export function operationClass(operation: Operation): OperationClass {
  return CLASSES[operation];
}
