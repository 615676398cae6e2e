/**
 * `npm run token -- --user alice` / `npm run token -- --service billing [--role admin] [--ttl 3600]`:
 * prints a JWT signed with the local key in BROKER_DATA_DIR (the embedded default). Exit codes:
 * 0 printed, 1 invalid configuration, 2 usage error or refused (trusted issuers configured).
 */
import { ConfigError, loadConfig } from "../config/load-config.js";
import { runTokenCommand } from "../auth/token-command.js";

runTokenCommand(process.argv.slice(2), {
  config: () => loadConfig({ env: process.env }),
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
}).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`invalid configuration:\n${error.problems.map((p) => `  - ${p}`).join("\n")}\n`);
      process.exit(1);
    }
    process.stderr.write(`token: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
