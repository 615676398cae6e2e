// Patches postgres.js 3.4.9 (run by `postinstall`) for a connection that dies while a write is
// pending, typically a transaction whose backend is terminated (failover, pg_terminate_backend,
// a reset): the driver's own ROLLBACK is flushed from a timer to the nulled socket and throws
// outside every promise, killing the process (porsager/postgres#1208, #1133), and the timer
// handle left behind blocks every later write on the replacement socket, so the pool never
// connects again ("write CONNECT_TIMEOUT"); and the dead backend's last error answers the next
// query. The fix follows upstream #1168 and the fixes discussed in #1208 and #1215: drop the
// pending chunk and timer, and the in-flight state, with the socket;
// test/integration/storage-transaction-reset.test.ts pins it. The same holds for a reserved
// connection (below); test/integration/audit-log.test.ts pins that. And a type fetch that fails
// with its connection must not end the process (below; seen under a cut-and-restore load, which
// test/e2e/database-outage.test.ts runs against a broker process such a rejection would end).
// Idempotent; refuses other versions so an upgrade is checked by hand rather than silently unpatched.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const PATCHED_VERSION = "3.4.9";
const MARK = "/* oauth-broker: pending write dropped with its socket */";

// The package's exports map hides package.json from require.resolve: go by the install layout.
const root = fileURLToPath(new URL("../node_modules/postgres/", import.meta.url));
if (!existsSync(join(root, "package.json"))) {
  process.stderr.write("scripts/patch-postgres.mjs: node_modules/postgres is missing; run npm ci" + "\n");
  process.exit(1);
}
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
if (version !== PATCHED_VERSION) {
  process.stderr.write(`scripts/patch-postgres.mjs: postgres ${version} installed, the patch is for ${PATCHED_VERSION}; check porsager/postgres#1208 and update the patch` + "\n");
  process.exit(1);
}

const replacements = [
  [
    "  function nextWrite(fn) {\n    const x = socket.write(chunk, fn)",
    `  function nextWrite(fn) {\n    if (!socket) { ${MARK}\n      nextWriteTimer !== null && clearImmediate(nextWriteTimer)\n      chunk = nextWriteTimer = null\n      return false\n    }\n    const x = socket.write(chunk, fn)`,
  ],
  ["    clearImmediate(nextWriteTimer)\n    if (socket) {", "    clearImmediate(nextWriteTimer)\n    chunk = nextWriteTimer = null\n    if (socket) {"],
  ["    clearImmediate(nextWriteTimer)\n    socket.removeListener('data', data)", "    clearImmediate(nextWriteTimer)\n    chunk = nextWriteTimer = null\n    socket.removeListener('data', data)"],
  // The dead backend's last ErrorResponse (57P01) must not answer the next query on the new socket.
  [
    "    closedTime = performance.now()",
    "    query && queryError(query, Errors.connection('CONNECTION_CLOSED', options, socket))\n    query = results = errorResponse = null\n    result = new Result()\n    closedTime = performance.now()",
  ],
];

/**
 * A reserved connection (`sql.reserve()`) whose backend dies: the pool marks it closed, but the
 * reserved handle kept sending to it (the query waited forever for a socket that no longer
 * exists) and `release()` put it back among the open connections, where every later query
 * waited the same way. A closed reserved connection now refuses queries at once
 * (CONNECTION_CLOSED) and stays closed when released, so the pool connects it again on demand.
 */
const RESERVE_MARK = "/* oauth-broker: a reserved connection that died stays closed */";
const reserveReplacements = [
  ["      c.reserved = null\n      onopen(c)\n    }", `      c.reserved = null\n      c.queue === closed || onopen(c) ${RESERVE_MARK}\n    }`],
  [
    "    function handler(q) {\n      c.queue === full\n        ? queue.push(q)",
    "    function handler(q) {\n      c.queue === closed\n        ? q.reject(Errors.connection('CONNECTION_CLOSED', options))\n        : c.queue === full\n        ? queue.push(q)",
  ],
];

/**
 * A new connection whose socket dies while it fetches the array types (right after
 * authentication, typically while the database is being cut or restored): the connection
 * handles the failure, but the type fetch's own promise rejected with nobody listening, and the
 * unhandled rejection ended the process.
 */
const TYPES_MARK = "/* oauth-broker: a failed type fetch is handled by the connection */";
const typesReplacements = [["        return fetchArrayTypes()\n", `        return fetchArrayTypes().catch(() => undefined) ${TYPES_MARK}\n`]];

function patch(file, mark, edits) {
  const path = join(root, file);
  let text = readFileSync(path, "utf8");
  if (text.includes(mark)) return;
  for (const [from, to] of edits) {
    if (!text.includes(from)) {
      process.stderr.write(`scripts/patch-postgres.mjs: ${file} does not contain the expected code; the patch cannot be applied` + "\n");
      process.exit(1);
    }
    text = text.replace(from, to);
  }
  writeFileSync(path, text);
}

for (const dir of ["src", "cjs/src"]) {
  patch(`${dir}/connection.js`, MARK, replacements);
  patch(`${dir}/index.js`, RESERVE_MARK, reserveReplacements);
  patch(`${dir}/connection.js`, TYPES_MARK, typesReplacements);
}
