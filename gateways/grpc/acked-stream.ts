/**
 * A bidirectional stream of requests each answered by one ack, flow-controlled: ProduceStream
 * (producer.ts) and MirrorService.Send (mirror.ts) are both this.
 *
 * `inflight` counts requests read from the stream whose ack the transport has not yet taken: it
 * goes up when a request is read and down when its ack is written without backpressure, or at the
 * next "drain" when the write buffer was full. At `maxInflight` the stream is paused; grpc-js then
 * stops pulling messages off the HTTP/2 stream (after its small readable buffer of 16), HTTP/2
 * flow control fills the client's window, and the client's writes block. So a client that stops
 * reading acks is stopped too: its unread acks fill the send buffer, no ack counts as gone out,
 * inflight stays at the limit. Memory per stream is bounded by maxInflight requests plus grpc-js's
 * buffers.
 *
 * Bun 1.4's node:http2 keeps granting the client HTTP/2 window while grpc-js has the stream
 * paused (grpc-js pauses and resumes the HTTP/2 stream around every message, and Bun's window
 * gate follows the stream's pause/resume events rather than what the reader consumed), so there
 * the client is not stopped by flow control and its bytes pile up in the HTTP/2 stream's read
 * buffer. The guard below bounds that: while the stream is paused it looks at that buffer every
 * PAUSED_CHECK_MS and ends the call with OVERLOADED once it holds more than `maxUnreadBytes`,
 * which a client that honours flow control can never reach (it may be ahead by one HTTP/2
 * window, 64 KiB). On Deno and Node flow control works and the guard never fires. It reads a
 * grpc-js field that is not public API; if grpc-js renames it the guard does nothing and
 * test/grpc-e2e.test.ts's flow-control test fails on Bun.
 *
 * @example
 *   return serveAckedStream(stream, ctx, { maxInflight: 32, maxUnreadBytes, logger, what: "ProduceStream", answer: (req) => handle(req) });
 */
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { TributaryError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import type { BidiCall, CallContext } from "./bridge.ts";

const PAUSED_CHECK_MS = 50;

export interface AckedStreamOptions<I extends DescMessage, O extends DescMessage> {
  maxInflight: number;
  /** While paused, unread bytes past this end the call with OVERLOADED (see above). */
  maxUnreadBytes: number;
  logger: Logger;
  /** The stream's name in logs. */
  what: string;
  /** The ack for one request; never rejects (a refusal is an ack too). */
  answer(request: MessageShape<I>): Promise<MessageInitShape<O>>;
  /** Called each time the stream is paused at maxInflight. */
  onPause?(): void;
}

/** Bytes the HTTP/2 stream under a grpc-js server call has received but grpc-js has not read. */
function unreadBytes(call: object): number | undefined {
  const inner = (call as { call?: { stream?: { readableLength?: unknown } } }).call;
  const n = inner?.stream?.readableLength;
  return typeof n === "number" ? n : undefined;
}

/** Serve the stream until the client half-closes and every ack went out, or it is cancelled. */
export function serveAckedStream<I extends DescMessage, O extends DescMessage>(stream: BidiCall<I, O>, ctx: CallContext, options: AckedStreamOptions<I, O>): Promise<void> {
  const { call } = stream;
  const max = options.maxInflight;
  return new Promise<void>((resolve, reject) => {
    let inflight = 0;
    let awaitingDrain = 0;
    let halfClosed = false;
    let finished = false;
    let guard: ReturnType<typeof setInterval> | undefined;
    const finish = (error?: unknown) => {
      if (finished) return;
      finished = true;
      clearInterval(guard);
      call.off("data", onData);
      if (error === undefined) resolve();
      else reject(error);
    };
    const settle = (n: number) => {
      inflight -= n;
      if (inflight < max && call.isPaused() && !finished) {
        clearInterval(guard);
        guard = undefined;
        call.resume();
      }
      if (halfClosed && inflight === 0) finish();
    };
    call.on("drain", () => {
      const n = awaitingDrain;
      awaitingDrain = 0;
      settle(n);
    });
    const sendAck = (ack: MessageInitShape<O>) => {
      if (finished || ctx.signal.aborted) return;
      const taken = call.write(stream.create(ack));
      // Once the buffer is full, this ack and every later one count as gone out at the next drain.
      if (taken && awaitingDrain === 0) settle(1);
      else awaitingDrain++;
    };
    const pause = () => {
      call.pause();
      options.onPause?.();
      guard ??= setInterval(() => {
        const unread = unreadBytes(call);
        if (unread !== undefined && unread > options.maxUnreadBytes) {
          const message = `the client sent ${unread} bytes past ${max} unacknowledged messages without reading acknowledgements`;
          options.logger.warn(`${options.what} cut off`, { unreadBytes: unread });
          finish(new TributaryError("OVERLOADED", message));
        }
      }, PAUSED_CHECK_MS);
    };
    const onData = (bytes: Buffer) => {
      let req: MessageShape<I>;
      try {
        req = stream.decode(bytes);
      } catch (e) {
        finish(e);
        return;
      }
      inflight++;
      if (inflight >= max && !call.isPaused()) pause();
      void options.answer(req).then(sendAck);
    };
    call.on("data", onData);
    call.on("end", () => {
      halfClosed = true;
      if (inflight === 0) finish();
    });
    // Cancelled by the client, past the deadline, or the connection went away: grpc-js has ended
    // the call; acks still on their way are dropped.
    ctx.signal.addEventListener("abort", () => finish(), { once: true });
  });
}
