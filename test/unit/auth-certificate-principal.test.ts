import { describe, it, expect } from "vitest";
import { principalFromCertificate } from "../../src/auth/certificate-principal.js";

describe("principalFromCertificate", () => {
  it("prefers the SPIFFE ID URI SAN over the CN", () => {
    expect(
      principalFromCertificate({
        subject: { CN: "billing.internal" },
        subjectaltname: "DNS:billing.internal, URI:spiffe://prod.example/ns/billing/sa/api",
      }),
    ).toEqual({ kind: "service", subject: "spiffe://prod.example/ns/billing/sa/api", issuer: "mtls" });
  });

  it("falls back to the subject CN", () => {
    expect(principalFromCertificate({ subject: { CN: " billing " }, subjectaltname: "DNS:billing.internal" })).toEqual({
      kind: "service",
      subject: "billing",
      issuer: "mtls",
    });
  });

  it("ignores non-SPIFFE URIs", () => {
    expect(principalFromCertificate({ subject: { CN: "billing" }, subjectaltname: "URI:https://billing.example" })?.subject).toBe(
      "billing",
    );
  });

  it("names nobody when the identity is missing or ambiguous", () => {
    expect(principalFromCertificate(undefined)).toBeUndefined();
    expect(principalFromCertificate(null)).toBeUndefined();
    expect(principalFromCertificate({})).toBeUndefined();
    expect(principalFromCertificate({ subject: { CN: "" } })).toBeUndefined();
    expect(principalFromCertificate({ subject: { CN: ["a", "b"] } })).toBeUndefined();
    expect(
      principalFromCertificate({
        subject: { CN: "billing" },
        subjectaltname: "URI:spiffe://a.example/x, URI:spiffe://b.example/y",
      }),
    ).toBeUndefined();
    // A SPIFFE ID needs a trust domain and a path; a malformed one does not fall back to the CN.
    expect(principalFromCertificate({ subject: { CN: "billing" }, subjectaltname: "URI:spiffe://only-domain" })).toBeUndefined();
  });
});
