/**
 * Service identity from a TLS client certificate on the gRPC listener. Only pass a certificate
 * the TLS layer has verified against the configured client CA (`socket.authorized`): this
 * function trusts what it is given.
 */
import type { Principal } from "../domain/types.js";

/** Principal issuer name for certificate-authenticated callers. */
export const CERTIFICATE_ISSUER_NAME = "mtls";

/** The part of `tls.PeerCertificate` this reads. */
export interface CertificateIdentity {
  readonly subject?: { readonly CN?: string | readonly string[] | undefined } | undefined;
  /** Node's rendering, e.g. `DNS:billing.internal, URI:spiffe://prod.example/ns/billing/sa/api`. */
  readonly subjectaltname?: string | undefined;
}

/**
 * The SPIFFE ID (the single `spiffe://` URI SAN of an X.509-SVID, SPIFFE X509-SVID §2) when
 * present, otherwise the subject CN, as a service principal. `undefined` when the certificate
 * names no usable identity (no SAN and no CN, several SPIFFE IDs, several CNs).
 */
export function principalFromCertificate(certificate: CertificateIdentity | null | undefined): Principal | undefined {
  if (certificate === null || certificate === undefined) return undefined;
  const spiffeIds = (certificate.subjectaltname ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith("URI:spiffe://"))
    .map((entry) => entry.slice("URI:".length));
  if (spiffeIds.length > 1) return undefined;
  const spiffeId = spiffeIds[0];
  if (spiffeId !== undefined) {
    return /^spiffe:\/\/[^/\s]+\/\S+$/.test(spiffeId) ? service(spiffeId) : undefined;
  }
  const cn = certificate.subject?.CN;
  if (typeof cn === "string" && cn.trim().length > 0) return service(cn.trim());
  return undefined;
}

function service(subject: string): Principal {
  return { kind: "service", subject, issuer: CERTIFICATE_ISSUER_NAME };
}
