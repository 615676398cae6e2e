/**
 * `npm run rewrap [-- --rotate]`: re-encrypts every stored ciphertext under the latest key
 * version, online and resumably (see jobs/rewrap.ts). With `--rotate` it first rotates the key
 * (Vault `<mount>/keys/<key>/rotate`, or a new local keyring version). Afterwards old versions
 * can be retired: Vault `min_decryption_version`.
 */
import { createCipher } from "../crypto/create-cipher.js";
import { rewrapAll } from "../jobs/rewrap.js";
import { createRewrapStore } from "../storage/rewrap-store.js";
import { createLogger } from "../observability/logger.js";
import { loadConfigForCommand, openCommandDatabase } from "./cli-support.js";

async function rewrap(argv: readonly string[]): Promise<number> {
  const unknown = argv.filter((arg) => arg !== "--rotate");
  if (unknown.length > 0) {
    process.stderr.write(`usage: npm run rewrap [-- --rotate]\nunknown argument: ${unknown.join(" ")}\n`);
    return 2;
  }
  const config = loadConfigForCommand();
  if (!config) return 1;
  const logger = createLogger({ level: config.logLevel });
  const database = await openCommandDatabase(config, logger);
  const cipher = await createCipher(config, logger);
  const abort = new AbortController();
  process.once("SIGINT", () => abort.abort());
  process.once("SIGTERM", () => abort.abort());
  try {
    if (argv.includes("--rotate")) {
      const version = await cipher.rotate();
      process.stdout.write(`key rotated: new ciphertexts use version ${version}\n`);
    }
    const result = await rewrapAll({
      store: createRewrapStore(database.sql),
      cipher,
      logger,
      signal: abort.signal,
      onProgress: (p) => process.stdout.write(`${p.table}: ${p.done}/${p.total}\n`),
    });
    process.stdout.write(
      `re-wrapped ${result.rewrapped} ciphertexts to version ${result.latestVersion}; ` +
        `${result.skipped} changed concurrently (run again to pick them up); ${result.failed} failed\n`,
    );
    return result.failed > 0 ? 1 : 0;
  } finally {
    await cipher.close();
    await database.close(5);
  }
}

rewrap(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`rewrap failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
