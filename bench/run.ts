/** `npm run bench`: runs the benchmarks and prints their ratios, each measured in one run. */
import { benchWarmPath } from "./warm-path.js";

const lines = await benchWarmPath();
process.stdout.write(`${lines.join("\n")}\n`);
process.exit(0);
