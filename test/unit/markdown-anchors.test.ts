/** The README anchors the alerts' runbook links point at: GitHub's heading slugs. */
import { describe, expect, it } from "vitest";
import { githubSlug, headingAnchors } from "../support/markdown-anchors.js";

describe("githubSlug", () => {
  it("follows GitHub's heading anchors", () => {
    expect(githubSlug("OAuthBrokerAuditChainBroken")).toBe("oauthbrokerauditchainbroken");
    expect(githubSlug("Callers: authentication, roles, policy, limits")).toBe("callers-authentication-roles-policy-limits");
    expect(githubSlug("Tokens at rest: Vault transit or the local keyring")).toBe("tokens-at-rest-vault-transit-or-the-local-keyring");
    expect(githubSlug("`GET /metrics` reference")).toBe("get-metrics-reference");
    expect([...headingAnchors("# A\n## A\n```\n# not a heading\n```\n### b_c d\n")]).toEqual(["a", "a-1", "b_c-d"]);
  });
});
