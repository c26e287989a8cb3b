/**
 * ProducerService: Produce (unary), ProduceStream (the fast path), InitProducerId.
 *
 * ProduceStream is flow-controlled as acked-stream.ts describes: at most grpc.stream.max.inflight
 * batches unacknowledged, past that the server stops reading the stream (and on Bun, where HTTP/2
 * flow control does not hold a paused stream back, ends it with OVERLOADED once it holds more
 * than grpc.max.message.bytes + 1 MiB unread).
 */
import type { ProduceResult } from "../../src/broker.ts";
import { serveAckedStream } from "./acked-stream.ts";
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

const UNREAD_SLACK_BYTES = 1024 * 1024;

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
  deps.metrics.produceStreams.inc(undefined, 1);
  return serveAckedStream(stream, ctx, {
    maxInflight: deps.limits.streamMaxInflight,
    maxUnreadBytes: deps.limits.maxMessageBytes + UNREAD_SLACK_BYTES,
    logger: deps.logger,
    what: "ProduceStream",
    onPause: () => deps.metrics.streamPauses.inc(),
    answer: (req) =>
      produceBatch(deps, req).then(
        (results) => ({ sequence: req.sequence, runs: toOffsetRuns(results) }),
        (e: unknown) => {
          const err = gatewayError(e);
          if (err.code === "INTERNAL") deps.logger.error("ProduceStream batch failed", { topic: req.topic, error: e });
          deps.metrics.calls.inc({ method: "ProduceStream/batch", code: err.code });
          return { sequence: req.sequence, error: { code: err.code, message: err.message, grpcCode: GRPC_STATUS[err.code], retriable: err.retriable } };
        },
      ),
  }).finally(() => deps.metrics.produceStreams.inc(undefined, -1));
}
