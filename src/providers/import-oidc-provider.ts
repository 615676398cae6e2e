/**
 * oidc-provider, imported without its runtime notice. Its `lib/index.js` prints "Unsupported
 * runtime. Use Node.js v22.x LTS" on every LTS line before Jod (Node 22), with no option or
 * variable to turn it off. The broker supports Node 20 (package.json `engines`) and the sandbox
 * is tested on it (test/integration/provider-sandbox.test.ts), so the notice only misleads. Only
 * that one line is dropped, and only while the module is evaluated.
 */
import type * as OidcProvider from "oidc-provider";

const RUNTIME_NOTICE = "oidc-provider WARNING: Unsupported runtime.";

export async function importOidcProvider(): Promise<typeof OidcProvider> {
  /* eslint-disable no-console -- the notice is written with console.warn; nothing else is touched */
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === "string" && args[0].includes(RUNTIME_NOTICE)) return;
    warn(...args);
  };
  try {
    return await import("oidc-provider");
  } finally {
    console.warn = warn;
  }
  /* eslint-enable no-console */
}
