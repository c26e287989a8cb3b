import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Broker, type ProduceRecord } from "../src/broker.ts";
import { defaultConfig, type SettingKey } from "../src/config.ts";
import { TributaryError } from "../src/errors.ts";
import { silentLogger } from "../src/logger.ts";
import { ProducerStateTable } from "../src/idempotence/producer-state.ts";
import { ProducerIdAllocator } from "../src/idempotence/producer-ids.ts";
import { MemFileSystem } from "../src/runtime/mem-fs.ts";
import { codeOf } from "./support/errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const recs = (n: number, tag: string, partition = 0): ProduceRecord[] =>
  Array.from({ length: n }, (_, i) => ({ key: null, value: enc.encode(`${tag}-${i}`), partition }));

let dir: string;
let broker: Broker | null = null;

async function open(overrides: Partial<Record<SettingKey, string>> = {}): Promise<Broker> {
  broker = await Broker.open(defaultConfig({ "data.dir": dir, ...overrides }), { logger: silentLogger });
  return broker;
}

async function values(b: Broker, topic: string, partition = 0): Promise<string[]> {
  const r = await b.fetch(topic, partition, 0, { maxRecords: 10_000 });
  return r.records.map((x) => dec.decode(x.value!));
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tributary-idem-"));
});
afterEach(async () => {
  await broker?.close();
  broker = null;
  await rm(dir, { recursive: true, force: true });
});

describe("idempotent producer", () => {
  it("hands out producer ids that stay unique across restarts", async () => {
    let b = await open();
    const a = await b.initProducerId();
    const c = await b.initProducerId();
    expect(a).toEqual({ producerId: 0, producerEpoch: 0 });
    expect(c.producerId).toBe(1);
    await b.close();
    b = await open();
    expect((await b.initProducerId()).producerId).toBe(2);
  });

  it("answers a retried batch with its original offsets and stores it once; the next sequence goes on", async () => {
    const b = await open();
    await b.createTopic("t", 2);
    const id = await b.initProducerId();
    const first = await b.produce("t", recs(3, "a"), 1, { ...id, baseSequence: 0 });
    expect(first.map((r) => r.offset)).toEqual([0, 1, 2]);
    const retry = await b.produce("t", recs(3, "a"), 1, { ...id, baseSequence: 0 });
    expect(retry).toEqual(first);
    const next = await b.produce("t", recs(2, "b"), 1, { ...id, baseSequence: 3 });
    expect(next.map((r) => r.offset)).toEqual([3, 4]);
    // A retry of the first batch is still among the last 5.
    expect(await b.produce("t", recs(3, "a"), 1, { ...id, baseSequence: 0 })).toEqual(first);
    expect(await values(b, "t")).toEqual(["a-0", "a-1", "a-2", "b-0", "b-1"]);
    // Sequences are per partition: partition 1 starts at 0.
    expect((await b.produce("t", recs(1, "p1", 1), 1, { ...id, baseSequence: 0 }))[0]).toEqual({ partition: 1, offset: 0 });
  });

  it("checks concurrent sends of one producer in call order: duplicates in flight get the same offsets", async () => {
    const b = await open();
    await b.createTopic("t", 1);
    const id = await b.initProducerId();
    const calls: Promise<{ offset: number }[]>[] = [];
    for (let seq = 0; seq < 20; seq++) {
      // Each batch sent three times at once, as a producer with retries and a flaky link would.
      for (let copy = 0; copy < 3; copy++) calls.push(b.produce("t", recs(1, `r${seq}`), 1, { ...id, baseSequence: seq }));
    }
    const results = await Promise.all(calls);
    for (let seq = 0; seq < 20; seq++) {
      const offsets = results.slice(seq * 3, seq * 3 + 3).map((r) => r[0]!.offset);
      expect(offsets).toEqual([seq, seq, seq]);
    }
    expect(await values(b, "t")).toEqual(Array.from({ length: 20 }, (_, i) => `r${i}-0`));
  });

  it("refuses gaps, old batches beyond the last 5, older epochs, unknown ids and calls spanning partitions", async () => {
    const b = await open();
    await b.createTopic("t", 2);
    const id = await b.initProducerId();
    expect(await codeOf(b.produce("t", recs(1, "x"), 1, { ...id, baseSequence: 5 }))).toBe("UNKNOWN_PRODUCER_ID");
    for (let seq = 0; seq < 7; seq++) await b.produce("t", recs(1, `s${seq}`), 1, { ...id, baseSequence: seq });
    expect(await codeOf(b.produce("t", recs(1, "gap"), 1, { ...id, baseSequence: 9 }))).toBe("OUT_OF_ORDER_SEQUENCE");
    expect(await codeOf(b.produce("t", recs(1, "old"), 1, { ...id, baseSequence: 1 }))).toBe("OUT_OF_ORDER_SEQUENCE");
    // A retry whose record count differs from the original is not the same batch.
    expect(await codeOf(b.produce("t", recs(2, "odd"), 1, { ...id, baseSequence: 6 }))).toBe("OUT_OF_ORDER_SEQUENCE");
    // A newer epoch starts at 0 and fences the old one.
    await b.produce("t", recs(1, "e1"), 1, { producerId: id.producerId, producerEpoch: 1, baseSequence: 0 });
    expect(await codeOf(b.produce("t", recs(1, "stale"), 1, { ...id, baseSequence: 7 }))).toBe("PRODUCER_FENCED");
    expect(await codeOf(b.produce("t", recs(1, "x"), 1, { producerId: 999, producerEpoch: 0, baseSequence: 0 }))).toBe("UNKNOWN_PRODUCER_ID");
    const spread = [...recs(1, "p0", 0), ...recs(1, "p1", 1)];
    const err = await b.produce("t", spread, 1, { ...id, producerEpoch: 1, baseSequence: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TributaryError);
    expect((err as TributaryError).code).toBe("INVALID_REQUEST");
    expect((err as TributaryError).message).toMatch(/one partition/);
    expect(await values(b, "t")).toEqual(["s0-0", "s1-0", "s2-0", "s3-0", "s4-0", "s5-0", "s6-0", "e1-0"]);
  });

  it("rebuilds producer state from the log after a restart: a retry is still recognised and the sequence goes on", async () => {
    let b = await open();
    await b.createTopic("t", 1);
    const id = await b.initProducerId();
    const first = await b.produce("t", recs(2, "a"), 1, { ...id, baseSequence: 0 });
    const second = await b.produce("t", recs(2, "b"), 1, { ...id, baseSequence: 2 });
    await b.close();
    b = await open();
    expect(await b.produce("t", recs(2, "b"), 1, { ...id, baseSequence: 2 })).toEqual(second);
    expect(await b.produce("t", recs(2, "a"), 1, { ...id, baseSequence: 0 })).toEqual(first);
    expect(await codeOf(b.produce("t", recs(1, "gap"), 1, { ...id, baseSequence: 7 }))).toBe("OUT_OF_ORDER_SEQUENCE");
    expect((await b.produce("t", recs(1, "c"), 1, { ...id, baseSequence: 4 }))[0]!.offset).toBe(4);
    expect(await values(b, "t")).toEqual(["a-0", "a-1", "b-0", "b-1", "c-0"]);
    // The id counter survives as well, and a fresh id is never one found in the log.
    expect((await b.initProducerId()).producerId).toBe(id.producerId + 1);
  });
});

describe("ProducerIdAllocator", () => {
  it("makes its meta/ directory itself: a cluster peer's data dir has none (its metadata is in cluster/meta/)", async () => {
    const fs = new MemFileSystem();
    await fs.mkdirp("/data");
    const ids = await ProducerIdAllocator.open(fs, "/data");
    expect(await ids.allocate()).toBe(0);
    expect(await (await ProducerIdAllocator.open(fs, "/data")).allocate()).toBe(1);
  });
});

describe("ProducerStateTable bounds", () => {
  it("keeps the last 5 batches per producer and forgets the least recently used producer beyond its bound", () => {
    const t = new ProducerStateTable(2);
    const done = Promise.resolve();
    for (let s = 0; s < 7; s++) t.record(1, 0, { firstSeq: s, lastSeq: s, baseOffset: s, lastOffset: s, done });
    expect(t.check(1, 0, 2, 2).kind).toBe("duplicate");
    expect(() => t.check(1, 0, 1, 1)).toThrow(/OUT_OF_ORDER|repeats/);
    t.record(2, 0, { firstSeq: 0, lastSeq: 0, baseOffset: 10, lastOffset: 10, done });
    t.record(1, 0, { firstSeq: 7, lastSeq: 7, baseOffset: 11, lastOffset: 11, done }); // 1 is now the most recent
    t.record(3, 0, { firstSeq: 0, lastSeq: 0, baseOffset: 12, lastOffset: 12, done }); // evicts 2
    expect(t.size).toBe(2);
    expect(() => t.check(2, 0, 1, 1)).toThrow(/no state/);
    expect(t.check(1, 0, 8, 8).kind).toBe("append");
  });
});
