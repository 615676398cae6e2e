/** The YAML reader's rules: which names are secrets, interpolation, unknown keys. */
import { describe, expect, it } from "vitest";
import { createProblems } from "../../src/config/config-error.js";
import { createYamlReader, isSecretName } from "../../src/config/yaml-reader.js";

describe("isSecretName", () => {
  it.each(["clientSecret", "client_secret", "password", "dbPassword", "api-key", "apiKey", "access_token", "refreshToken", "client_assertion", "secretId"])(
    "treats %s as a secret",
    (name) => expect(isSecretName(name)).toBe(true),
  );

  it.each(["token_access_type", "staticKeys", "defaultAccessTokenLifetimeSeconds", "tokens", "keyId", "prompt", "login_hint", "hd"])(
    "treats %s as ordinary",
    (name) => expect(isSecretName(name)).toBe(false),
  );
});

describe("createYamlReader", () => {
  it("interpolates every ${VAR} in a string and names each unset one", () => {
    const problems = createProblems();
    const reader = createYamlReader(
      { problems, env: { HOST: "id.example.com", PORT: "8443" } },
      "providers.corp",
      { url: "https://${HOST}:${PORT}/${TENANT}/", name: "plain $HOME {x}" },
      ["url", "name"],
    );
    expect(reader.optionalString("url")).toBe("https://id.example.com:8443//");
    expect(reader.string("name", "")).toBe("plain $HOME {x}");
    expect(problems.list).toEqual(["providers.corp.url: references TENANT, which is not set"]);
  });

  it("resolves a secret reference with surrounding spaces, wrapped so it does not print", () => {
    const problems = createProblems();
    const reader = createYamlReader({ problems, env: { S: "value" } }, "x", { clientSecret: " ${S} " }, ["clientSecret"]);
    const secret = reader.secret("clientSecret");
    expect(secret?.reveal()).toBe("value");
    expect(JSON.stringify(secret)).toBe('"[redacted]"');
    expect(problems.list).toEqual([]);
  });

  it("reports unknown keys without their values and treats null as absent", () => {
    const problems = createProblems();
    const reader = createYamlReader({ problems, env: {} }, "", { known: null, clientSecrte: "hunter2" }, ["known"]);
    expect(reader.has("known")).toBe(false);
    expect(reader.integer("known", 7)).toBe(7);
    expect(problems.list).toEqual(["clientSecrte: unknown key (known here: known)"]);
  });
});
