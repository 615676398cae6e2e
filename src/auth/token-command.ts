/**
 * `npm run token`: mints a short-lived JWT with the broker's local signing key, for trying the
 * embedded default with `buf curl -H "authorization: Bearer …"`. When trusted issuers are
 * configured the local key is not trusted, so minting is refused rather than printing a token
 * that every call would reject.
 */
import { parseArgs } from "node:util";
import { DEFAULT_MAX_TOKEN_LIFETIME_SECONDS } from "../config/read-issuers.js";
import type { Config } from "../config/types.js";
import { loadOrCreateLocalSigningKey, signLocalToken } from "./local-signing-key.js";

/** The broker trusts local tokens up to this lifetime, so it mints none longer. */
const MAX_TTL_SECONDS = DEFAULT_MAX_TOKEN_LIFETIME_SECONDS;

export const TOKEN_USAGE = `usage: npm run token -- (--user <id> | --service <name>) [--role admin] [--ttl <seconds>]

  --user <id>        a user token (the subject owns the integrations it connects)
  --service <name>   a service token (its policy in BROKER_CONFIG decides what it may do)
  --role <role>      add a role; "admin" grants the admin role (repeatable)
  --ttl <seconds>    lifetime, default 3600, at most ${MAX_TTL_SECONDS}
`;

export interface TokenCommandDeps {
  /** The validated configuration (only the data directory and the issuers are read). */
  readonly config: () => Pick<Config, "dataDir" | "auth">;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly now?: (() => Date) | undefined;
}

/** Returns the exit code: 0 printed a token, 2 usage error or refused. */
export async function runTokenCommand(argv: readonly string[], deps: TokenCommandDeps): Promise<number> {
  let values: { user?: string; service?: string; role?: string[]; ttl?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        user: { type: "string" },
        service: { type: "string" },
        role: { type: "string", multiple: true },
        ttl: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    deps.stderr(`${error instanceof Error ? error.message : String(error)}\n${TOKEN_USAGE}`);
    return 2;
  }
  if (values.help === true) {
    deps.stdout(TOKEN_USAGE);
    return 0;
  }
  const user = values.user?.trim();
  const service = values.service?.trim();
  if ((user === undefined) === (service === undefined) || user === "" || service === "") {
    deps.stderr(`give exactly one of --user or --service, with a non-empty value\n${TOKEN_USAGE}`);
    return 2;
  }
  const ttlSeconds = values.ttl === undefined ? 3600 : Number(values.ttl);
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > MAX_TTL_SECONDS) {
    deps.stderr(`--ttl must be a whole number of seconds between 1 and ${MAX_TTL_SECONDS}\n`);
    return 2;
  }
  const roles = (values.role ?? []).map((role) => role.trim()).filter((role) => role.length > 0);

  const config = deps.config();
  if (config.auth.issuers.length > 0) {
    const names = config.auth.issuers.map((issuer) => issuer.name).join(", ");
    deps.stderr(
      `refusing to mint a local token: trusted issuers are configured (${names}), so the broker does not trust its local key; get a token from one of those issuers\n`,
    );
    return 2;
  }
  const key = await loadOrCreateLocalSigningKey(config.dataDir);
  const token = await signLocalToken(key, {
    subject: user ?? service ?? "",
    kind: user === undefined ? "service" : "user",
    roles,
    ttlSeconds,
    now: deps.now?.(),
  });
  deps.stdout(`${token}\n`);
  return 0;
}
