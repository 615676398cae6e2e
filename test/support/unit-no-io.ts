/**
 * Setup of the `unit` vitest project: a unit test that opens a socket, listens, or starts a child
 * process fails at that call, instead of quietly depending on the machine. Such a test belongs in
 * test/integration. The builtins' ESM exports are re-synced so `import { spawn } from
 * "node:child_process"` sees the guard too.
 */
import childProcess from "node:child_process";
import { syncBuiltinESMExports } from "node:module";
import net from "node:net";

function refuse(what: string): never {
  throw new Error(`unit tests do no I/O: ${what} is refused here; move the test to test/integration`);
}

for (const name of ["spawn", "spawnSync", "exec", "execSync", "execFile", "execFileSync", "fork"] as const) {
  Object.defineProperty(childProcess, name, { value: () => refuse(`child_process.${name}`), configurable: true, writable: true });
}
net.Socket.prototype.connect = function connect(): never {
  return refuse("opening a socket");
};
net.Server.prototype.listen = function listen(): never {
  return refuse("listening on a socket");
};
syncBuiltinESMExports();
