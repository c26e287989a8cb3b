/**
 * The receiving side of the peer transport: the PeerService handlers the peer listener
 * (h2-server.ts) runs.
 *
 * Frames: every request is decoded, checked and handed to `TransportHandlers.frame` at once
 * (nothing is queued here), so the sender's count of frames in flight is the only buffer. The
 * acknowledgements are cumulative: one FramesResponse answers every frame that arrived within
 * ACK_DELAY_MS of the first unanswered one (at most ACK_MAX_FRAMES), since an HTTP/2 write costs
 * far more than the few bytes it carries; the delay only holds back the sender's window, which
 * is far larger than what arrives meanwhile, never a Raft message. A frame from an id not in the
 * peer list, or one arriving before `listen`, is acknowledged as not delivered and counted. Bytes that are not a frame end
 * the stream with INVALID_ARGUMENT (the sender reconnects after its backoff). Frames larger than
 * `maxFrameBytes` never get here: the listener refuses them (RESOURCE_EXHAUSTED) as they start.
 *
 * Call: the handler's reply, or its TributaryError (or the request's INVALID_REQUEST) as
 * `error_code`/`error_message`; anything else it throws is a bug and ends the call with INTERNAL.
 */
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { isTributaryError } from "../../src/errors.ts";
import type { NodeId, TransportHandlers } from "../../src/cluster/types.ts";
import { decodeRequest } from "../grpc/bridge.ts";
import { CallRequestSchema, CallResponseSchema, FramesResponseSchema } from "../grpc/gen/tributary/peer/v1/peer_pb.ts";
import { decodeFrame } from "./codec.ts";
import type { FramesReply, FramesSink, PeerServerHandlers } from "./h2-server.ts";

export type ReceiveDropReason = "unknown" | "not_listening";

/** How long a frame's acknowledgement may wait for others to share its response. */
export const ACK_DELAY_MS = 20;
/** Frames one response answers at most (the sender's window is larger: DEFAULT_TRANSPORT_LIMITS). */
export const ACK_MAX_FRAMES = 32;

export interface ReceiverEnv {
  known(from: NodeId): boolean;
  /** A timer (the transport's clock): calls `fn` after `ms`, returns its cancel. */
  setTimer(ms: number, fn: () => void): () => void;
  /** Undefined until `listen`. */
  handlers(): TransportHandlers | undefined;
  dropped(from: NodeId, reason: ReceiveDropReason): void;
}

export class Receiver {
  /** Ends each open Frames stream (close() must not wait for peers to hang up). */
  private readonly enders = new Set<() => void>();

  constructor(private readonly env: ReceiverEnv) {}

  handlers(): PeerServerHandlers {
    return {
      frames: (reply) => this.frames(reply),
      call: async (bytes) => toBinary(CallResponseSchema, create(CallResponseSchema, await this.call(bytes))),
    };
  }

  private async call(bytes: Uint8Array): Promise<MessageInitShape<typeof CallResponseSchema>> {
    try {
      const req = decodeRequest(CallRequestSchema, bytes);
      const handlers = this.env.handlers();
      if (!this.env.known(req.from)) return { errorCode: "PERMISSION_DENIED", errorMessage: `peer ${req.from} is not in this peer's cluster.peers` };
      if (!handlers) return { errorCode: "NOT_READY", errorMessage: "the peer is starting: its transport is not listening yet" };
      return { body: await handlers.call(req.from, req.method, req.body) };
    } catch (e) {
      if (isTributaryError(e)) return { errorCode: e.code, errorMessage: e.message };
      throw e;
    }
  }

  /** Ends every open Frames stream. */
  endAll(): void {
    for (const end of [...this.enders]) end();
  }

  private frames(reply: FramesReply): FramesSink {
    // Frames answered by the next response: how many, and whether they reached the handlers.
    let unanswered = 0;
    let delivered = true;
    let cancelTimer: (() => void) | null = null;
    const answer = () => {
      cancelTimer?.();
      cancelTimer = null;
      if (unanswered === 0) return;
      reply.write(toBinary(FramesResponseSchema, create(FramesResponseSchema, { delivered, frames: unanswered })));
      unanswered = 0;
    };
    const end = () => reply.end();
    this.enders.add(end);
    return {
      message: (bytes) => {
        const ok = this.deliver(bytes); // throws INVALID_REQUEST: the server ends the stream
        if (unanswered > 0 && ok !== delivered) answer();
        delivered = ok;
        unanswered++;
        if (unanswered >= ACK_MAX_FRAMES) answer();
        else cancelTimer ??= this.env.setTimer(ACK_DELAY_MS, answer);
      },
      closed: () => {
        cancelTimer?.();
        cancelTimer = null;
        this.enders.delete(end);
      },
    };
  }

  /** True when the frame reached the handlers. */
  private deliver(bytes: Uint8Array): boolean {
    const { from, frame } = decodeFrame(bytes);
    if (!this.env.known(from)) {
      this.env.dropped(from, "unknown");
      return false;
    }
    const handlers = this.env.handlers();
    if (!handlers) {
      this.env.dropped(from, "not_listening");
      return false;
    }
    handlers.frame(from, frame);
    return true;
  }
}
