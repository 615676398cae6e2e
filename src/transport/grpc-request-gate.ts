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

class GatedCall extends grpc.ServerInterceptingCall {
  private decision: boolean | undefined;
  private readPending = false;
  private deliveredStandIn = false;
  private handlerListener: HandlerListener | undefined;

  constructor(next: grpc.ServerInterceptingCallInterface, service: string, admission: Admission, maxRequestBytes: number) {
    super(next, {
      start: (startNext) =>
        startNext({
          onReceiveMetadata: (metadata, metadataNext) => {
            const certified = principalFromCertificate(next.getAuthContext().sslPeerCertificate) !== undefined;
            const decided = (admitted: boolean) => {
              this.decision = admitted;
              metadataNext(metadata);
              if (this.readPending) this.startRead();
            };
            const admitted = admission(service, firstString(metadata, "authorization"), certified);
            // Known at once (a warm caller): no promise between the headers and the body.
            if (typeof admitted === "boolean") decided(admitted);
            else void admitted.then(decided);
          },
        }),
    });
    // grpc-js refuses an oversized message from inside its own call object, past every
    // interceptor's responder: its `sendStatus` is the one place that refusal can be reworded.
    const sendStatus = next.sendStatus.bind(next);
    next.sendStatus = (status) => {
      if (status.code !== grpc.status.RESOURCE_EXHAUSTED || !GRPC_JS_SIZE_REFUSAL.test(status.details)) return sendStatus(status);
      const rewritten = toGrpcStatus(requestTooLarge(maxRequestBytes));
      sendStatus({ ...status, details: rewritten.details ?? status.details, metadata: rewritten.metadata ?? status.metadata });
    };
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

export function createGrpcRequestGate(options: { admission: Admission; maxRequestBytes: number }): grpc.ServerInterceptor {
  return (method, call) => {
    // "/oauthbroker.v1.TokenService/GetAccessToken" → "oauthbroker.v1.TokenService"
    const service = method.path.slice(1, method.path.lastIndexOf("/"));
    return new GatedCall(call, service, options.admission, options.maxRequestBytes);
  };
}
