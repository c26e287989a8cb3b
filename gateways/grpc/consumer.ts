/**
 * ConsumerService: Fetch (unary, optionally a long poll) and Subscribe (a live tail).
 *
 * A long poll never outlives the call: its wait is capped by the call's deadline (less a margin
 * so the empty answer arrives before the client gives up) and by maxWaitMs, and the call's
 * signal wakes it when the client cancels. Subscribe loops on broker.fetch with a long wait,
 * reading at most grpc.subscribe.max.bytes of batches at a time, and writes what it read as
 * messages of at most max_records records and grpc.subscribe.max.bytes encoded bytes (a larger
 * record alone), waiting for the transport to take each before the next (the bridge's
 * StreamWriter), so a slow reader slows the tail instead of growing memory. Both write their
 * replies straight into wire bytes (record-replies.ts), not through protobuf-es messages.
 */
import { FETCH_DEFAULT_MAX_BYTES, FETCH_DEFAULT_MAX_RECORDS, FETCH_MAX_RECORDS_LIMIT, type Broker } from "../../src/broker.ts";
import { TributaryError } from "../../src/errors.ts";
import type { AutoOffsetReset } from "../../src/groups/types.ts";
import type { CallContext, ServiceHandlers } from "./bridge.ts";
import type { GrpcDeps } from "./deps.ts";
import { ConsumerService, StartPosition, type SubscribeRequest } from "./gen/tributary/v1/consumer_pb.ts";
import { EncodedMessage } from "./proto-wire.ts";
import { encodeFetchResponse, subscribeResponses } from "./record-replies.ts";
import { safeNumber } from "./records.ts";

type Methods = typeof ConsumerService extends { method: infer M } ? M : never;

/** Longest wait of one fetch inside a subscription; the loop then simply fetches again. */
export const SUBSCRIBE_WAIT_MS = 15_000;
/**
 * Answer a long poll this long before the deadline, so the reply is not lost to it: a fifth of
 * the time left, between 100 ms and 1 s. A fixed 50 ms was missed on a busy 2-core box (an event
 * loop turn or a collection late), and the client then got DEADLINE_EXCEEDED instead of an empty
 * answer.
 */
function deadlineMarginMs(leftMs: number): number {
  return Math.min(1_000, Math.max(100, Math.ceil(leftMs / 5)));
}

function partitionBounds(broker: Broker, topic: string, partition: number): { logStartOffset: number; highWatermark: number } {
  const d = broker.describeTopic(topic);
  const p = Number.isSafeInteger(partition) ? d.partitions[partition] : undefined;
  if (!p) throw new TributaryError("PARTITION_NOT_FOUND", `topic ${topic} has partitions 0 to ${d.partitions.length - 1}, not ${partition}`);
  return p;
}

function waitBudgetMs(asked: number | undefined, ctx: CallContext, maxWaitMs: number): number {
  if (asked === undefined || asked <= 0) return 0;
  const left = ctx.deadlineMs - Date.now();
  const untilDeadline = Number.isFinite(left) ? left - deadlineMarginMs(left) : Infinity;
  return Math.max(0, Math.floor(Math.min(asked, maxWaitMs, untilDeadline)));
}

export function consumerHandlers(deps: GrpcDeps): ServiceHandlers<Methods> {
  const { broker, limits } = deps;
  // Leave room in a reply for the framing around the records.
  const replyBytesMax = Math.max(1, Math.floor(limits.maxMessageBytes / 2));
  return {
    async fetch(req, ctx) {
      const offset = req.offset !== undefined ? safeNumber(req.offset, "offset") : partitionBounds(broker, req.topic, req.partition).logStartOffset;
      const waitMs = waitBudgetMs(req.waitMs, ctx, limits.maxWaitMs);
      const release = waitMs > 0 ? deps.longPolls.acquire() : () => {};
      try {
        const r = await broker.fetch(req.topic, req.partition, offset, {
          maxRecords: req.maxRecords,
          maxBytes: Math.min(req.maxBytes ?? FETCH_DEFAULT_MAX_BYTES, replyBytesMax),
          waitMs,
          signal: ctx.signal,
        });
        return new EncodedMessage(encodeFetchResponse(r.records, r.nextOffset, r.highWatermark, r.logStartOffset));
      } finally {
        release();
      }
    },

    async subscribe(req, send, ctx) {
      const release = deps.subscriptions.acquire();
      try {
        const perMessage = { maxRecords: recordsPerMessage(req.maxRecords), maxBytes: limits.subscribeMaxBytes };
        let offset = await startOffset(broker, req);
        // A read of about one message's bytes; every record read is sent (in more messages when
        // a batch is larger), so nothing read is thrown away and read again.
        const options = { maxRecords: FETCH_MAX_RECORDS_LIMIT, maxBytes: perMessage.maxBytes, signal: ctx.signal };
        // Not waiting: proves topic, partition and offset before the stream is accepted.
        let r = await broker.fetch(req.topic, req.partition, offset, options);
        ctx.sendHeaders();
        for (;;) {
          for (const bytes of subscribeResponses(r.records, r.nextOffset, r.highWatermark, perMessage)) await send(new EncodedMessage(bytes));
          offset = r.nextOffset;
          if (ctx.signal.aborted) return;
          r = await broker.fetch(req.topic, req.partition, offset, { ...options, waitMs: SUBSCRIBE_WAIT_MS });
          if (ctx.signal.aborted) return;
        }
      } finally {
        release();
      }
    },
  };
}

/** max_records of a SubscribeRequest, checked as broker.fetch checks its maxRecords. */
function recordsPerMessage(asked: number | undefined): number {
  if (asked === undefined) return FETCH_DEFAULT_MAX_RECORDS;
  if (!Number.isSafeInteger(asked) || asked < 1) throw new TributaryError("INVALID_REQUEST", `max_records must be an integer of at least 1, got ${asked}`);
  return Math.min(asked, FETCH_MAX_RECORDS_LIMIT);
}

function reset(p: StartPosition): AutoOffsetReset {
  return p === StartPosition.EARLIEST ? "earliest" : "latest";
}

async function startOffset(broker: Broker, req: SubscribeRequest): Promise<number> {
  const at = (p: StartPosition) => {
    const b = partitionBounds(broker, req.topic, req.partition);
    return p === StartPosition.EARLIEST ? b.logStartOffset : b.highWatermark;
  };
  switch (req.start.case) {
    case "offset":
      return safeNumber(req.start.value, "offset");
    case "timestampMs": {
      const found = await broker.offsetForTimestamp(req.topic, req.partition, safeNumber(req.start.value, "timestamp_ms"));
      return found ?? at(req.fallback);
    }
    case "groupId":
      partitionBounds(broker, req.topic, req.partition);
      return broker.groups.startOffset(req.start.value, req.topic, req.partition, reset(req.fallback));
    case "position":
      return at(req.start.value);
    case undefined:
      return at(StartPosition.LATEST);
  }
}
