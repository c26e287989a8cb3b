/**
 * ProducerService: Produce (unary), ProduceStream (the fast path), InitProducerId.
 *
 * ProduceStream flow control. `inflight` counts batches read from the stream whose ack the
 * transport has not yet taken: it goes up when a batch is read and down when its ack is written
 * without backpressure, or at the next "drain" when the write buffer was full. At
 * grpc.stream.max.inflight the stream is paused; grpc-js then stops pulling messages off the
 * HTTP/2 stream (after its small readable buffer of 16), HTTP/2 flow control fills the client's
 * window, and the client's writes block. So a client that stops reading acks is stopped too:
 * its unread acks fill the send buffer, no ack counts as gone out, inflight stays at the limit.
 * Memory per stream is bounded by max.inflight batches plus grpc-js's buffers.
 *
 * Bun 1.4's node:http2 keeps granting the client HTTP/2 window while grpc-js has the stream
 * paused (grpc-js pauses and resumes the HTTP/2 stream around every message, and Bun's window
 * gate follows the stream's pause/resume events rather than what the reader consumed), so
 * there the client is not stopped by flow control and its bytes pile up in the HTTP/2 stream's
 * read buffer. The guard below bounds that: while the stream is paused it looks at that buffer
 * every PAUSED_CHECK_MS and ends the call with OVERLOADED once it holds more than
 * grpc.max.message.bytes + 1 MiB, which a client that honours flow control can never reach
 * (it may be ahead by one HTTP/2 window, 64 KiB). On Deno and Node flow control works and the
 * guard never fires. It reads a grpc-js field that is not public API; if grpc-js renames it the
 * guard does nothing and test/grpc-e2e.test.ts's flow-control test fails on Bun.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ProduceResult } from "../../src/broker.ts";
import { TributaryError } from "../../src/errors.ts";
import type { BidiCall, CallContext, ServiceHandlers } from "./bridge.ts";
import type { GrpcDeps } from "./deps.ts";
import { gatewayError, GRPC_STATUS } from "./errors.ts";
import {
  ProducerService,
  type ProduceStreamRequestSchema,
  type ProduceStreamResponseSchema,
} from "./gen/tributary/v1/producer_pb.ts";
import { toBrokerAcks, toIdempotence, toOffsetRuns, toProduceRecords } from "./records.ts";
import type { ProduceStreamRequest } from "./gen/tributary/v1/producer_pb.ts";

type Methods = typeof ProducerService extends { method: infer M } ? M : never;

const PAUSED_CHECK_MS = 50;
const UNREAD_SLACK_BYTES = 1024 * 1024;

/** Bytes the HTTP/2 stream under a grpc-js server call has received but grpc-js has not read. */
function unreadBytes(call: object): number | undefined {
  const inner = (call as { call?: { stream?: { readableLength?: unknown } } }).call;
  const n = inner?.stream?.readableLength;
  return typeof n === "number" ? n : undefined;
}

export function producerHandlers(deps: GrpcDeps): ServiceHandlers<Methods> {
  const { broker } = deps;
  return {
    async produce(req) {
      const results = await broker.produce(req.topic, toProduceRecords(req.records), toBrokerAcks(req.acks), toIdempotence(req.idempotence));
      return { runs: toOffsetRuns(results) };
    },
    produceStream: (stream, ctx) => produceStream(deps, stream, ctx),
    async initProducerId() {
      const id = await broker.initProducerId();
      return { producerId: BigInt(id.producerId), producerEpoch: id.producerEpoch };
    },
  };
}

function produceBatch(deps: GrpcDeps, req: ProduceStreamRequest): Promise<ProduceResult[]> {
  try {
    return deps.broker.produce(req.topic, toProduceRecords(req.records), toBrokerAcks(req.acks), toIdempotence(req.idempotence));
  } catch (e) {
    return Promise.reject(e);
  }
}

function produceStream(
  deps: GrpcDeps,
  stream: BidiCall<typeof ProduceStreamRequestSchema, typeof ProduceStreamResponseSchema>,
  ctx: CallContext,
): Promise<void> {
  const { call } = stream;
  const max = deps.limits.streamMaxInflight;
  deps.metrics.produceStreams.inc(undefined, 1);
  return new Promise<void>((resolve, reject) => {
    let inflight = 0;
    let awaitingDrain = 0;
    let halfClosed = false;
    let finished = false;
    let guard: ReturnType<typeof setInterval> | undefined;
    const unreadMax = deps.limits.maxMessageBytes + UNREAD_SLACK_BYTES;
    const finish = (error?: unknown) => {
      if (finished) return;
      finished = true;
      clearInterval(guard);
      deps.metrics.produceStreams.inc(undefined, -1);
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
    const sendAck = (ack: MessageInitShape<typeof ProduceStreamResponseSchema>) => {
      if (finished || ctx.signal.aborted) return;
      const taken = call.write(stream.create(ack));
      // Once the buffer is full, this ack and every later one count as gone out at the next drain.
      if (taken && awaitingDrain === 0) settle(1);
      else awaitingDrain++;
    };
    const onData = (bytes: Buffer) => {
      let req: ProduceStreamRequest;
      try {
        req = stream.decode(bytes);
      } catch (e) {
        finish(e);
        return;
      }
      inflight++;
      if (inflight >= max && !call.isPaused()) {
        call.pause();
        deps.metrics.streamPauses.inc();
        guard ??= setInterval(() => {
          const unread = unreadBytes(call);
          if (unread !== undefined && unread > unreadMax) {
            const message = `the client sent ${unread} bytes past grpc.stream.max.inflight (${max}) unacknowledged batches without reading acknowledgements`;
            deps.logger.warn("ProduceStream cut off", { unreadBytes: unread });
            finish(new TributaryError("OVERLOADED", message));
          }
        }, PAUSED_CHECK_MS);
      }
      const sequence = req.sequence;
      produceBatch(deps, req).then(
        (results) => sendAck({ sequence, runs: toOffsetRuns(results) }),
        (e: unknown) => {
          const err = gatewayError(e);
          if (err.code === "INTERNAL") deps.logger.error("ProduceStream batch failed", { topic: req.topic, error: e });
          deps.metrics.calls.inc({ method: "ProduceStream/batch", code: err.code });
          sendAck({ sequence, error: { code: err.code, message: err.message, grpcCode: GRPC_STATUS[err.code], retriable: err.retriable } });
        },
      );
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
