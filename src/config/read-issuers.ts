/**
 * `auth.issuers:` of `BROKER_CONFIG`: the JWT issuers whose tokens identify callers. Only
 * asymmetric algorithms are accepted (RFC 8725 §3.1: `none` and HMAC with a public key are the
 * classic forgeries), and an audience is mandatory (RFC 8725 §3.9), so a token minted for
 * another service is never accepted here.
 */
import { HTTP_URL_MESSAGE, parseHttpUrl } from "./http-url.js";
import type { JwtIssuerConfig } from "./types.js";
import { createYamlReader, type ReaderContext, type YamlReader } from "./yaml-reader.js";

/** RFC 7518 §3.1 and RFC 8037 §3.1 asymmetric JWS algorithms: the only ones a caller token may use. */
export const ACCEPTED_JWT_ALGORITHMS: readonly string[] = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
];
export const DEFAULT_JWT_ALGORITHMS: readonly string[] = ["RS256", "ES256", "EdDSA"];
/**
 * The longest `exp − iat` a caller token may have (also the local key's `npm run token --ttl`
 * ceiling): a leaked long-lived token stays a credential for its whole life, and a JWT cannot be
 * revoked short of rotating the issuer's key.
 */
export const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS = 86_400;
/** Ten years: a larger bound is no bound at all. */
const MAX_TOKEN_LIFETIME_CEILING_SECONDS = 10 * 365 * 86_400;
/** Principals vouched for by the broker's own key carry this issuer name in logs and audit. */
const LOCAL_ISSUER_NAME = "local";

const ISSUER_KEYS = [
  "name",
  "issuer",
  "audiences",
  "jwksUrl",
  "staticKeys",
  "algorithms",
  "clockSkewSeconds",
  "maxTokenLifetimeSeconds",
  "principalKind",
  "rolesClaim",
  "subjectClaim",
  "allowAdmin",
];

export function readIssuers(context: ReaderContext, auth: YamlReader): JwtIssuerConfig[] {
  const names = new Set<string>();
  return auth.items("issuers").map((item) => {
    const issuer = readIssuer(context, createYamlReader(context, item.path, item.value, ISSUER_KEYS));
    if (names.has(issuer.name)) context.problems.add(item.path, `issuer name "${issuer.name}" is used twice`);
    if (issuer.name === LOCAL_ISSUER_NAME) {
      context.problems.add(item.path, `the name "${LOCAL_ISSUER_NAME}" belongs to the broker's own signing key; choose another`);
    }
    names.add(issuer.name);
    return issuer;
  });
}

function readIssuer(context: ReaderContext, reader: YamlReader): JwtIssuerConfig {
  const { problems } = context;
  const issuer = reader.string("issuer", "");
  if (issuer === "") problems.add(reader.at("issuer"), "required: the expected `iss` claim");

  const audiences = reader.strings("audiences", []);
  if (audiences.length === 0) problems.add(reader.at("audiences"), "at least one audience is required");

  const jwksUrl = reader.optionalString("jwksUrl");
  if (jwksUrl !== undefined && parseHttpUrl(jwksUrl) === undefined) problems.add(reader.at("jwksUrl"), HTTP_URL_MESSAGE);
  const staticKeys = reader.strings("staticKeys", []);
  if ((jwksUrl === undefined) === (staticKeys.length === 0)) problems.add(reader.path, "set exactly one of jwksUrl or staticKeys");

  const algorithms = reader.strings("algorithms", DEFAULT_JWT_ALGORITHMS);
  if (algorithms.length === 0) problems.add(reader.at("algorithms"), "at least one algorithm is required");
  for (const algorithm of algorithms) {
    if (algorithm.toLowerCase() === "none" || algorithm.toUpperCase().startsWith("HS")) {
      problems.add(reader.at("algorithms"), `${algorithm} is refused: only asymmetric algorithms are accepted`);
    } else if (!ACCEPTED_JWT_ALGORITHMS.includes(algorithm)) {
      problems.add(reader.at("algorithms"), `${algorithm} is not one of ${ACCEPTED_JWT_ALGORITHMS.join(", ")}`);
    }
  }

  const principalKind = reader.string("principalKind", "service");
  if (principalKind !== "user" && principalKind !== "service") problems.add(reader.at("principalKind"), "must be user or service");

  return {
    name: reader.string("name", issuer),
    issuer,
    audiences,
    jwksUrl,
    staticKeys,
    algorithms,
    clockSkewSeconds: reader.integer("clockSkewSeconds", 30, { min: 0, max: 300 }),
    maxTokenLifetimeSeconds: reader.integer("maxTokenLifetimeSeconds", DEFAULT_MAX_TOKEN_LIFETIME_SECONDS, {
      min: 60,
      max: MAX_TOKEN_LIFETIME_CEILING_SECONDS,
    }),
    principalKind: principalKind === "user" ? "user" : "service",
    rolesClaim: reader.string("rolesClaim", "roles"),
    allowAdmin: reader.boolean("allowAdmin", false),
    subjectClaim: reader.string("subjectClaim", "sub"),
  };
}
