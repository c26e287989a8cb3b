/**
 * Produce and fetch:
 *   POST /v1/topics/:topic/records?acks=0|1|all          {"records": [...], "producerId"?, "producerEpoch"?, "baseSequence"?} -> {"offsets": [...]}
 *   POST /v1/producers                                    -> {"producerId", "producerEpoch"} (an idempotent producer id)
 *   GET  /v1/topics/:topic/partitions/:partition/records
 *        ?offset=&maxRecords=&maxBytes=&waitMs=&encoding=auto|base64
 *        -> {"records": [...], "nextOffset", "highWatermark", "logStartOffset"}
 *
 * The produce reply is sent only once broker.produce resolves, that is once the records are as
 * durable as `acks` asked. A fetch with waitMs > 0 is a long poll: it holds one of
 * maxLongPolls slots (503 OVERLOADED when none is free) for up to min(waitMs, maxWaitMs).
 */
import type { Context, Hono } from "hono";
import type { Broker } from "../../src/broker.ts";
import { TributaryError } from "../../src/errors.ts";
import type { GatewayDeps } from "./deps.ts";
import { decodeBody, negotiate, readBody, reply, requestFormat } from "./media.ts";
import { parseAcks, parseIntParam, requireIntParam } from "./params.ts";
import { parseProduceBody, parseProduceIdempotence, recordFor, type BytesEncoding } from "./records.ts";

export function parseEncoding(raw: string | undefined): BytesEncoding {
  if (raw === undefined || raw === "" || raw === "auto") return "auto";
  if (raw === "base64") return "base64";
  throw new TributaryError("INVALID_REQUEST", `encoding must be auto or base64, got ${JSON.stringify(raw)}`);
}

/** A query parameter, with `?name=` (empty) read as absent. */
export function query(c: Context, name: string): string | undefined {
  const v = c.req.query(name);
  return v === "" ? undefined : v;
}

/** Where a partition's stored records start and end now; the partition check is left to fetch. */
export function partitionBounds(broker: Broker, topic: string, partition: number): { logStartOffset: number; highWatermark: number } {
  const p = broker.describeTopic(topic).partitions.find((x) => x.partition === partition);
  return p ?? { logStartOffset: 0, highWatermark: 0 };
}

export function recordRoutes(app: Hono, { broker, options, longPolls }: GatewayDeps): void {
  app.post("/v1/topics/:topic/records", async (c) => {
    const format = requestFormat(c.req.raw);
    const out = negotiate(c.req.raw, format);
    const acks = parseAcks(query(c, "acks"));
    const body = decodeBody(await readBody(c.req.raw, options.maxRequestBytes), format);
    const records = parseProduceBody(body, format);
    const results = await broker.produce(c.req.param("topic"), records, acks, parseProduceIdempotence(body));
    return reply(out, 200, { offsets: results.map((r) => ({ partition: r.partition, offset: r.offset })) });
  });

  app.post("/v1/producers", async (c) => {
    const out = negotiate(c.req.raw);
    return reply(out, 200, await broker.initProducerId());
  });

  app.get("/v1/topics/:topic/partitions/:partition/records", async (c) => {
    const out = negotiate(c.req.raw);
    const topic = c.req.param("topic");
    const partition = requireIntParam(c.req.param("partition"), "partition");
    const maxRecords = parseIntParam(query(c, "maxRecords"), "maxRecords", 1);
    const maxBytes = parseIntParam(query(c, "maxBytes"), "maxBytes", 1);
    const waitMs = Math.min(parseIntParam(query(c, "waitMs"), "waitMs") ?? 0, options.maxWaitMs);
    const encoding = parseEncoding(query(c, "encoding"));
    const offset = parseIntParam(query(c, "offset"), "offset") ?? partitionBounds(broker, topic, partition).logStartOffset;
    const release = waitMs > 0 ? longPolls.acquire() : () => {};
    try {
      const r = await broker.fetch(topic, partition, offset, { maxRecords, maxBytes, waitMs, signal: c.req.raw.signal });
      return reply(out, 200, {
        records: r.records.map(recordFor(out, encoding)),
        nextOffset: r.nextOffset,
        highWatermark: r.highWatermark,
        logStartOffset: r.logStartOffset,
      });
    } finally {
      release();
    }
  });
}
