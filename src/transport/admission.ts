/**
 * The credential check both listeners make from the headers alone, before they read or inflate
 * a byte of the body: an unauthenticated caller costs no decompression and no parsing. It only
 * decides whether to read; the authentication interceptor still authenticates every call and
 * gives the refusal its usual answer, log line and audit record (the verified-token cache makes
 * the second verification of a good token a lookup).
 */
import type { Authenticator } from "../auth/authenticator.js";
import { BrokerError } from "../domain/errors.js";
import { openServiceMatcher } from "./interceptors/authentication.js";
import { RequestRefusal } from "./request-refusal.js";

/**
 * Whether a call to `service` may have its body read; `certified`: a verified client certificate
 * names a principal. A plain boolean when it is known at once (an open service, a token the
 * authenticator answers for without waiting): the listener then reads on in the same turn.
 * `call`: the call's own request-metadata object, when the handler will ask the authenticator
 * again for the same call (Authenticator.authenticateWarm).
 */
export type Admission = (service: string, authorization: string | null, certified: boolean, call?: object) => boolean | Promise<boolean>;

export function createAdmission(options: {
  readonly authenticator: Pick<Authenticator, "authenticate" | "authenticateWarm">;
  readonly openServices: readonly string[];
}): Admission {
  const isOpen = openServiceMatcher(options.openServices);
  return (service, authorization, certified, call) => {
    if (isOpen(service)) return true;
    if (authorization === null) return certified;
    if (options.authenticator.authenticateWarm(authorization, call) !== undefined) return true;
    return options.authenticator.authenticate(authorization).then(
      () => true,
      () => false,
    );
  };
}

/**
 * What a handler receives in place of a body that was never read. The authentication
 * interceptor refuses the call before anything looks at it; should the credentials pass there
 * after all (an issuer's keys rotated in between), the edge interceptor refuses it instead.
 */
export const UNREAD_BODY = new RequestRefusal(new BrokerError("unauthenticated", "missing or invalid credentials"));
