/**
 * A grpc-js server interceptor in front of every method: it admits the call from its metadata
 * before grpc-js reads the first DATA frame (admission.ts), and gives grpc-js's own size refusal
 * the broker's message and details. grpc-js bounds each message, as sent and once inflated, by
 * `grpc.max_receive_message_length` (grpc-listener.ts); a refused call's stream is never read:
 * the handler gets `UNREAD_BODY` and a half-close instead.
 */
import * as grpc from "@grpc/grpc-js";
import { principalFromCertificate } from "../auth/certificate-principal.js";
import { UNREAD_BODY, type Admission } from "./admission.js";
import { toGrpcStatus } from "./grpc-adapter.js";
import { requestTooLarge } from "./request-refusal.js";

/** grpc-js's details for a message over `grpc.max_receive_message_length`, as sent or inflated. */
const GRPC_JS_SIZE_REFUSAL = /^Received message (larger than max|that decompresses to a size larger than)/;

function firstString(metadata: grpc.Metadata, name: string): string | null {
  const value = metadata.get(name)[0];
  return typeof value === "string" ? value : null;
}

type HandlerListener = Parameters<grpc.ServerInterceptingCall["start"]>[0];

/**
 * The request headers grpc-js parsed when it created the call, before any interceptor ran: its
 * base call keeps them in a field (`metadata`, grpc-js 1.14) that its types call private.
 * Undefined when the call is not that object or the field moved; the gate then waits for the
 * headers like any interceptor (test/integration/grpc-request-gate.test.ts pins which happens).
 */
export function parsedRequestMetadata(call: grpc.ServerInterceptingCallInterface): grpc.Metadata | undefined {
  const metadata: unknown = Reflect.get(call, "metadata");
  return metadata instanceof grpc.Metadata ? metadata : undefined;
}

/** grpc-js's own size refusal, reworded as the broker's (see GatedCall). */
function rewordSizeRefusal(call: grpc.ServerInterceptingCallInterface, maxRequestBytes: number): void {
  const sendStatus = call.sendStatus.bind(call);
  call.sendStatus = (status) => {
    if (status.code !== grpc.status.RESOURCE_EXHAUSTED || !GRPC_JS_SIZE_REFUSAL.test(status.details)) return sendStatus(status);
    const rewritten = toGrpcStatus(requestTooLarge(maxRequestBytes));
    sendStatus({ ...status, details: rewritten.details ?? status.details, metadata: rewritten.metadata ?? status.metadata });
  };
}

class GatedCall extends grpc.ServerInterceptingCall {
  private decision: boolean | undefined;
  private readPending = false;
  private deliveredStandIn = false;
  private handlerListener: HandlerListener | undefined;

  /** `admit`: the admission's answer for the call's headers (asked once per call). */
  constructor(next: grpc.ServerInterceptingCallInterface, admit: (metadata: grpc.Metadata) => boolean | Promise<boolean>, maxRequestBytes: number) {
    super(next, {
      start: (startNext) =>
        startNext({
          onReceiveMetadata: (metadata, metadataNext) => {
            const decided = (admitted: boolean) => {
              this.decision = admitted;
              metadataNext(metadata);
              if (this.readPending) this.startRead();
            };
            const admitted = admit(metadata);
            // Known at once (a warm caller): no promise between the headers and the body.
            if (typeof admitted === "boolean") decided(admitted);
            else void admitted.then(decided);
          },
        }),
    });
    // grpc-js refuses an oversized message from inside its own call object, past every
    // interceptor's responder: its `sendStatus` is the one place that refusal can be reworded.
    rewordSizeRefusal(next, maxRequestBytes);
  }

  override start(listener: HandlerListener): void {
    this.handlerListener = listener;
    super.start(listener);
  }

  override startRead(): void {
    if (this.decision === undefined) {
      this.readPending = true;
      return;
    }
    if (this.decision) {
      super.startRead();
      return;
    }
    // Refused: the handler reads one stand-in message, then the end of the requests.
    const listener = this.handlerListener;
    if (!this.deliveredStandIn) {
      this.deliveredStandIn = true;
      listener?.onReceiveMessage(UNREAD_BODY);
    } else listener?.onReceiveHalfClose();
  }
}

export function createGrpcRequestGate(options: {
  admission: Admission;
  maxRequestBytes: number;
  /** Told how each call was admitted (tests): at once from the parsed headers, or by the gate. */
  onAdmission?: ((how: "at-once" | "gated") => void) | undefined;
}): grpc.ServerInterceptor {
  return (method, call) => {
    // "/oauthbroker.v1.TokenService/GetAccessToken" → "oauthbroker.v1.TokenService"
    const service = method.path.slice(1, method.path.lastIndexOf("/"));
    // The headers are parsed already: a call the admission lets in at once (a warm caller) needs
    // no layer of its own between grpc-js and the handler, which costs every call a set of
    // listener and responder objects. Anything else (refused, or known only later) is gated.
    const ask = (metadata: grpc.Metadata) =>
      options.admission(
        service,
        firstString(metadata, "authorization"),
        principalFromCertificate(call.getAuthContext().sslPeerCertificate) !== undefined,
        metadata,
      );
    const metadata = parsedRequestMetadata(call);
    const early = metadata === undefined ? undefined : ask(metadata);
    if (early === true) {
      rewordSizeRefusal(call, options.maxRequestBytes);
      options.onAdmission?.("at-once");
      // grpc-js composes interceptors by their interface (getServerInterceptingCall); its
      // type asks for the class only because its own interceptors are built from it.
      return call as grpc.ServerInterceptingCall;
    }
    options.onAdmission?.("gated");
    // An answer already asked for is not asked again: a token known only later is verified once.
    return new GatedCall(call, early === undefined ? ask : () => early, options.maxRequestBytes);
  };
}
