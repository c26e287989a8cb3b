/**
 * Fetch and Subscribe replies written by hand (gateways/grpc/record-replies.ts): records encoded
 * into a batch and decoded back, as the broker reads them, come out of protobuf-es's decoder
 * exactly (fast-check: keys, values and header values null, empty or not, unicode header keys,
 * negative and large timestamps and offsets), in the very bytes toBinary writes. A Subscribe read
 * is cut into messages within max_records and the byte cap, one oversized record alone. Then the
 * gateway in process: a Subscribe over many 1 KiB records, and the byte-bounded StreamWriter
 * against a stream that takes its time.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Broker } from "../src/broker.ts";
import { defaultConfig } from "../src/config.ts";
import { silentLogger } from "../src/logger.ts";
import { decodeRecords, encodeBatch, setBatchBaseOffset, type DecodedRecord, type RecordInput } from "../src/storage/record-batch.ts";
import { encoder, methodPath } from "../gateways/grpc/bridge.ts";
import { connect } from "../gateways/grpc/client.ts";
import { startGrpcGateway, type RunningGateway } from "../gateways/grpc/index.ts";
import { encodeFetchResponse, subscribeResponses } from "../gateways/grpc/record-replies.ts";
import { StreamWriter, type WritableCall } from "../gateways/grpc/stream-writer.ts";
import { EncodedMessage } from "../gateways/grpc/proto-wire.ts";
import { chargeReply } from "../gateways/grpc/quota.ts";
import { Metrics } from "../src/metrics.ts";
import { ManualClock } from "../src/runtime/clock.ts";
import { QuotaEnforcer } from "../src/security/quotas.ts";
import { ConsumerService, FetchResponseSchema, SubscribeRequestSchema, SubscribeResponseSchema, type SubscribeResponse } from "../gateways/grpc/gen/tributary/v1/consumer_pb.ts";
import type { StoredRecordSchema } from "../gateways/grpc/gen/tributary/v1/records_pb.ts";
import { codeOf } from "./support/errors.ts";
import { waitFor } from "./support/wait.ts";

// Plain objects, as the codec takes them (fast-check may otherwise give null-prototype ones).
const plain = { noNullPrototype: true } as const;
const nullableBytes = fc.option(fc.uint8Array({ maxLength: 40 }), { nil: null, freq: 3 });
const header = fc.record({ key: fc.string({ unit: "binary", maxLength: 8 }), value: nullableBytes }, plain);
const timestamp = fc.integer({ min: -(2 ** 45), max: 2 ** 45 });
const record = fc.record({ key: nullableBytes, value: nullableBytes, headers: fc.array(header, { maxLength: 3 }), timestamp }, plain);
const batchOf = fc.record({ records: fc.array(record, { minLength: 1, maxLength: 20 }), baseOffset: fc.integer({ min: 0, max: 2 ** 52 }) }, plain);

/** Decoded from a plain Uint8Array copy (from a Buffer, protobuf-es's bytes fields would be Buffers). */
function decode<T extends typeof FetchResponseSchema | typeof SubscribeResponseSchema>(schema: T, bytes: Uint8Array) {
  return fromBinary(schema, new Uint8Array(bytes));
}

/** The records as the broker reads them back: encoded into a batch at baseOffset, decoded. */
function readBack(records: RecordInput[], baseOffset: number): DecodedRecord[] {
  const batch = encodeBatch(records, { timestamp: 0 });
  setBatchBaseOffset(batch, baseOffset);
  return decodeRecords(batch);
}

/** The protobuf-es reference: what a StoredRecord message built field by field holds. */
function storedRecord(r: DecodedRecord): MessageInitShape<typeof StoredRecordSchema> {
  return {
    offset: BigInt(r.offset),
    timestampMs: BigInt(r.timestamp),
    headers: r.headers.map((h) => (h.value === null ? { key: h.key } : { key: h.key, value: h.value })),
    ...(r.key === null ? {} : { key: r.key }),
    ...(r.value === null ? {} : { value: r.value }),
  };
}

/** A decoded StoredRecord as plain fields: absent optionals stay undefined, unlike empty bytes. */
function fields(r: SubscribeResponse["records"][number]) {
  return { offset: r.offset, timestampMs: r.timestampMs, key: r.key, value: r.value, headers: r.headers.map((h) => ({ key: h.key, value: h.value })) };
}

function expected(r: DecodedRecord) {
  return {
    offset: BigInt(r.offset),
    timestampMs: BigInt(r.timestamp),
    key: r.key ?? undefined,
    value: r.value ?? undefined,
    headers: r.headers.map((h) => ({ key: h.key, value: h.value ?? undefined })),
  };
}

describe("hand-encoded replies", () => {
  it("a FetchResponse decodes exactly and is the bytes protobuf-es writes", () => {
    fc.assert(
      fc.property(batchOf, fc.maxSafeNat(), fc.maxSafeNat(), (b, highWatermark, logStart) => {
        const records = readBack(b.records, b.baseOffset);
        const next = records.at(-1)!.offset + 1;
        const bytes = encodeFetchResponse(records, next, highWatermark, logStart);
        const decoded = decode(FetchResponseSchema, bytes);
        expect(decoded.records.map(fields)).toEqual(records.map(expected));
        expect([decoded.nextOffset, decoded.highWatermark, decoded.logStartOffset]).toEqual([BigInt(next), BigInt(highWatermark), BigInt(logStart)]);
        const reference = toBinary(FetchResponseSchema, create(FetchResponseSchema, { records: records.map(storedRecord), nextOffset: BigInt(next), highWatermark: BigInt(highWatermark), logStartOffset: BigInt(logStart) }));
        expect(Buffer.from(bytes).equals(Buffer.from(reference))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("Subscribe messages hold every record once, in order, within max_records and the byte cap", () => {
    const limits = fc.record({ maxRecords: fc.integer({ min: 1, max: 8 }), maxBytes: fc.integer({ min: 1, max: 400 }) }, plain);
    fc.assert(
      fc.property(batchOf, limits, fc.nat(5), (b, lim, gap) => {
        const records = readBack(b.records, b.baseOffset);
        // The read may end past its last record (a compaction gap, a control batch).
        const nextOffset = records.at(-1)!.offset + 1 + gap;
        const messages = [...subscribeResponses(records, nextOffset, nextOffset + 7, lim)].map((bytes) => ({ bytes, m: decode(SubscribeResponseSchema, bytes) }));
        expect(messages.flatMap(({ m }) => m.records.map(fields))).toEqual(records.map(expected));
        messages.forEach(({ bytes, m }, i) => {
          expect(m.records.length).toBeGreaterThan(0);
          expect(m.records.length).toBeLessThanOrEqual(lim.maxRecords);
          if (m.records.length > 1) expect(bytes.length).toBeLessThanOrEqual(lim.maxBytes);
          const last = i === messages.length - 1;
          expect(m.nextOffset).toBe(last ? BigInt(nextOffset) : m.records.at(-1)!.offset + 1n);
          expect(m.highWatermark).toBe(BigInt(nextOffset + 7));
        });
        // Greedy: a message is cut only where the next record would break a limit.
        for (let i = 0; i + 1 < messages.length; i++) {
          const { bytes, m } = messages[i]!;
          const nextRecord = toBinary(SubscribeResponseSchema, create(SubscribeResponseSchema, { records: [storedRecord(records[messages.slice(0, i + 1).reduce((n, x) => n + x.m.records.length, 0)]!)] })).length;
          expect(m.records.length === lim.maxRecords || bytes.length + nextRecord > lim.maxBytes).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("sends nothing for a read without records", () => {
    expect([...subscribeResponses([], 42, 42, { maxRecords: 500, maxBytes: 1024 })]).toEqual([]);
  });

  it("a fetch quota charges a hand-encoded reply its bytes, as it does a protobuf-es message", () => {
    const quotas = new QuotaEnforcer(() => [{ principal: "p", fetchBytesPerSec: 1000 }], new Metrics(), new ManualClock());
    const q = { principal: "p", quotas };
    const subscribe = "/tributary.v1.ConsumerService/Subscribe";
    const records = readBack([{ key: null, value: new Uint8Array(1200) }], 5);
    const [bytes] = [...subscribeResponses(records, 6, 6, { maxRecords: 500, maxBytes: 1 << 20 })];
    // The burst is one second's worth (1000 B): the debt past it is the delay, in ms.
    expect(chargeReply(q, subscribe, SubscribeResponseSchema, new EncodedMessage(bytes!))).toBe(bytes!.length - 1000);
    const same = fromBinary(SubscribeResponseSchema, bytes!);
    expect(chargeReply(q, subscribe, SubscribeResponseSchema, same)).toBe(2 * bytes!.length - 1000);
  });
});

/** A stream whose writes complete only when the test says so, like a client that stopped reading. */
class HeldStream implements WritableCall {
  readonly pending: { bytes: number; done: () => void }[] = [];
  private drain: (() => void) | null = null;
  constructor(private readonly highWaterMark: number) {}

  write(message: unknown, callback: () => void): boolean {
    this.pending.push({ bytes: (message as Uint8Array).length, done: callback });
    return this.pending.length < this.highWaterMark;
  }
  once(_event: "drain", listener: () => void): void {
    this.drain = listener;
  }
  /** The transport takes the oldest message. */
  take(): void {
    this.pending.shift()!.done();
    if (this.pending.length === 0 && this.drain) {
      const d = this.drain;
      this.drain = null;
      d();
    }
  }
}

describe("StreamWriter", () => {
  async function settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  }

  it("waits while more than its bound of bytes is not yet written, at least one message always going out", async () => {
    const stream = new HeldStream(1000);
    const out = new StreamWriter(stream, new AbortController().signal, 1000);
    let sent = 0;
    const sender = (async () => {
      for (let i = 0; i < 20; i++) {
        await out.write(new Uint8Array(300), 300);
        sent++;
      }
    })();
    for (let step = 0; step < 200 && sent < 20; step++) {
      await settle();
      // Handed over and not written: never more than the bound plus the message that crossed it.
      expect(out.queuedBytes).toBeLessThanOrEqual(1000 + 300);
      expect(stream.pending.length).toBeLessThanOrEqual(4);
      if (stream.pending.length > 0) stream.take();
    }
    await sender;
    expect(sent).toBe(20);
    // One message larger than the bound still goes, and the next waits until it is written.
    const big = out.write(new Uint8Array(5000), 5000);
    let bigDone = false;
    void big.then(() => (bigDone = true));
    await settle();
    expect(bigDone).toBe(false);
    while (stream.pending.length > 0) stream.take();
    await big;
    expect(out.queuedBytes).toBe(0);
  });

  it("waits for 'drain' when grpc-js's own queue is full, and gives up when the call ends", async () => {
    const stream = new HeldStream(2);
    const abort = new AbortController();
    const out = new StreamWriter(stream, abort.signal, 1 << 20);
    await out.write(new Uint8Array(1), 1);
    const second = out.write(new Uint8Array(1), 1);
    let resolved = false;
    void second.then(() => (resolved = true));
    await settle();
    expect(resolved).toBe(false);
    stream.take();
    await settle();
    expect(resolved).toBe(false); // one still queued: no 'drain' yet
    stream.take();
    await second;
    await out.write(new Uint8Array(1), 1);
    const stuck = out.write(new Uint8Array(1), 1);
    abort.abort();
    expect(await codeOf(stuck)).toBe("NOT_READY");
    expect(await codeOf(out.write(new Uint8Array(1), 1))).toBe("NOT_READY");
  });
});

describe("Subscribe over the gateway, byte-capped", () => {
  const CAP = 16 * 1024;
  let dir = "";
  let broker: Broker;
  let gateway: RunningGateway;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tributary-grpc-replies-"));
    broker = await Broker.open(defaultConfig({ "data.dir": dir }), { logger: silentLogger });
    gateway = await startGrpcGateway(broker, { host: "127.0.0.1", port: 0, maxMessageBytes: 1 << 20, streamMaxInflight: 8, subscribeMaxBytes: CAP, logger: silentLogger });
    await broker.createTopic("kib", 1);
    const value = new Uint8Array(1024).fill(7);
    // Batches of 100 records (~100 KiB, each larger than the cap), then one record of 40 KiB alone.
    for (let i = 0; i < 10; i++) await broker.produce("kib", Array.from({ length: 100 }, () => ({ key: null, value })));
    await broker.produce("kib", [{ key: null, value: new Uint8Array(40 * 1024).fill(9) }]);
    await broker.produce("kib", Array.from({ length: 30 }, () => ({ key: null, value })));
  });
  afterAll(async () => {
    await broker?.close();
    await gateway?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("yields messages of at most the cap, the one larger record alone, every record once in order", async () => {
    const client = connect(`127.0.0.1:${gateway.port}`);
    const raw: Buffer[] = [];
    const call = client.makeServerStreamRequest(
      methodPath(ConsumerService.method.subscribe),
      encoder(SubscribeRequestSchema),
      (b: Buffer) => b,
      create(SubscribeRequestSchema, { topic: "kib", partition: 0, start: { case: "offset", value: 0n } }),
      new grpc.Metadata(),
      {},
    );
    let count = 0;
    call.on("data", (b: Buffer) => {
      raw.push(b);
      count += fromBinary(SubscribeResponseSchema, b).records.length;
    });
    call.on("error", () => {});
    await waitFor("every record", () => count >= 1031);
    call.cancel();
    client.close();
    const messages = raw.map((b) => ({ size: b.length, m: fromBinary(SubscribeResponseSchema, b) }));
    expect(messages.flatMap(({ m }) => m.records.map((r) => Number(r.offset)))).toEqual(Array.from({ length: 1031 }, (_, i) => i));
    // Over the cap: exactly one message, the 40 KiB record's, alone.
    const over = messages.filter(({ size }) => size > CAP);
    expect(over.map(({ m }) => m.records.map((r) => r.value?.length))).toEqual([[40 * 1024]]);
    // 1 KiB records: 15 fit in 16 KiB with their framing, so messages are full, not one per record.
    expect(messages.length).toBeLessThan(1031 / 10);
  });

  it("refuses a max_records below 1 before the stream starts", async () => {
    const client = connect(`127.0.0.1:${gateway.port}`);
    const call = client.makeServerStreamRequest(
      methodPath(ConsumerService.method.subscribe),
      encoder(SubscribeRequestSchema),
      (b: Buffer) => b,
      create(SubscribeRequestSchema, { topic: "kib", partition: 0, start: { case: "offset", value: 0n }, maxRecords: 0 }),
      new grpc.Metadata(),
      {},
    );
    const error = await new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
    client.close();
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});
