import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtemp, rm, readdir, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Broker, type ProduceRecord } from "../src/broker.ts";
import { defaultConfig, type SettingKey } from "../src/config.ts";
import { silentLogger } from "../src/logger.ts";
import { partitionForKey } from "../src/partitioner.ts";
import { codeOf } from "./support/errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const rec = (key: string | null, value: string): ProduceRecord => ({ key: key === null ? null : enc.encode(key), value: enc.encode(value) });

let dir: string;
let broker: Broker | null = null;

async function open(overrides: Partial<Record<SettingKey, string>> = {}): Promise<Broker> {
  broker = await Broker.open(defaultConfig({ "data.dir": dir, ...overrides }), { logger: silentLogger });
  return broker;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tributary-broker-"));
});
afterEach(async () => {
  await broker?.close();
  broker = null;
  await rm(dir, { recursive: true, force: true });
});

describe("topics", () => {
  it("creates, lists, describes and deletes topics, and keeps them across a restart", async () => {
    const b = await open();
    const t = await b.createTopic("telemetry", 3, { "retention.ms": 60000 });
    expect(t.partitions.map((p) => [p.partition, p.logStartOffset, p.highWatermark])).toEqual([[0, 0, 0], [1, 0, 0], [2, 0, 0]]);
    expect(t.config["retention.ms"]).toBe("60000");
    expect(t.config["cleanup.policy"]).toBe("delete");
    await b.createTopic("commands", 1);
    expect(b.listTopics().map((x) => x.name)).toEqual(["commands", "telemetry"]);
    await b.produce("telemetry", [rec("dev-1", "a")]);
    await b.close();

    const again = await open();
    expect(again.listTopics().map((x) => x.name)).toEqual(["commands", "telemetry"]);
    expect(again.describeTopic("telemetry").config["retention.ms"]).toBe("60000");
    await again.deleteTopic("commands");
    expect(await codeOf(() => again.describeTopic("commands"))).toBe("TOPIC_NOT_FOUND");
    await again.close();

    const third = await open();
    expect(third.listTopics().map((x) => x.name)).toEqual(["telemetry"]);
    const total = third.describeTopic("telemetry").partitions.reduce((a, p) => a + p.highWatermark, 0);
    expect(total).toBe(1);
  });

  it("refuses bad names, duplicates, '.'/'_' collisions, bad partition counts and unknown settings", async () => {
    const b = await open();
    expect(await codeOf(b.createTopic("has space", 1))).toBe("INVALID_TOPIC_NAME");
    expect(await codeOf(b.createTopic("..", 1))).toBe("INVALID_TOPIC_NAME");
    expect(await codeOf(b.createTopic("x".repeat(250), 1))).toBe("INVALID_TOPIC_NAME");
    expect(await codeOf(b.createTopic("__internal", 1))).toBe("INVALID_TOPIC_NAME");
    await b.createTopic("a.b", 1);
    expect(await codeOf(b.createTopic("a.b", 1))).toBe("TOPIC_EXISTS");
    expect(await codeOf(b.createTopic("a_b", 1))).toBe("INVALID_TOPIC_NAME");
    expect(await codeOf(b.createTopic("zero", 0))).toBe("INVALID_PARTITIONS");
    expect(await codeOf(b.createTopic("many", 100_000))).toBe("INVALID_PARTITIONS");
    expect(await codeOf(b.createTopic("conf", 1, { "retention.mss": 1 }))).toBe("INVALID_CONFIG");
    expect(b.listTopics().map((t) => t.name)).toEqual(["a.b"]);
  });

  it("removes partition directories that the metadata does not name (a crash during create)", async () => {
    const b = await open();
    await b.createTopic("kept", 1);
    await b.close();
    await mkdir(join(dir, "topics", "ghost~0011223344556677", "0"), { recursive: true });
    await open();
    expect((await readdir(join(dir, "topics"))).filter((d) => d.startsWith("ghost"))).toEqual([]);
  });

  it("answers TOPIC_NOT_FOUND on produce to a missing topic unless auto-create is on", async () => {
    const b = await open();
    expect(await codeOf(b.produce("nope", [rec(null, "x")]))).toBe("TOPIC_NOT_FOUND");
    await b.close();
    const auto = await open({ "topics.auto.create": "true", "default.partitions": "2" });
    await auto.produce("auto", [rec(null, "x")]);
    expect(auto.describeTopic("auto").partitions).toHaveLength(2);
  });
});

describe("produce and fetch", () => {
  it("puts keyed records where Kafka's default partitioner would, and reads them back in order", async () => {
    const b = await open();
    await b.createTopic("t", 4);
    const keys = Array.from({ length: 40 }, (_, i) => `device-${i % 10}`);
    const results = await b.produce("t", keys.map((k, i) => rec(k, `v${i}`)));
    results.forEach((r, i) => expect(r.partition).toBe(partitionForKey(enc.encode(keys[i]!), 4)));
    for (let p = 0; p < 4; p++) {
      const f = await b.fetch("t", p, 0);
      const expected = keys.map((k, i) => ({ k, v: `v${i}` })).filter(({ k }) => partitionForKey(enc.encode(k), 4) === p);
      expect(f.records.map((r) => [dec.decode(r.key!), dec.decode(r.value!)])).toEqual(expected.map(({ k, v }) => [k, v]));
      expect(f.records.map((r) => r.offset)).toEqual(expected.map((_, i) => i));
      expect(f.nextOffset).toBe(expected.length);
      expect(f.highWatermark).toBe(expected.length);
    }
  });

  it("sends each keyless request to one partition, rotating across requests (sticky)", async () => {
    const b = await open();
    await b.createTopic("k", 3);
    const seen = new Set<number>();
    for (let i = 0; i < 6; i++) {
      const r = await b.produce("k", [rec(null, "a"), rec(null, "b"), rec(null, "c")]);
      expect(new Set(r.map((x) => x.partition)).size).toBe(1);
      seen.add(r[0]!.partition);
    }
    expect(seen.size).toBe(3);
  });

  it("spreads keyless records per record with the round-robin partitioner", async () => {
    const b = await open({ "partitioner.keyless": "round-robin" });
    await b.createTopic("k", 3);
    const r = await b.produce("k", [rec(null, "a"), rec(null, "b"), rec(null, "c")]);
    expect(new Set(r.map((x) => x.partition)).size).toBe(3);
  });

  it("honours an explicit partition, and refuses one that does not exist", async () => {
    const b = await open();
    await b.createTopic("p", 2);
    const r = await b.produce("p", [{ ...rec("k", "v"), partition: 1 }]);
    expect(r).toEqual([{ partition: 1, offset: 0 }]);
    expect(await codeOf(b.produce("p", [{ ...rec("k", "v"), partition: 2 }]))).toBe("PARTITION_NOT_FOUND");
    expect(await codeOf(b.fetch("p", 7, 0))).toBe("PARTITION_NOT_FOUND");
  });

  it("keeps headers, null keys, null values and timestamps", async () => {
    const b = await open();
    await b.createTopic("h", 1);
    await b.produce("h", [
      { key: null, value: enc.encode("x"), headers: [{ key: "source", value: enc.encode("mqtt") }, { key: "empty", value: null }], timestamp: 1_700_000_000_123 },
      { key: enc.encode("gone"), value: null },
    ]);
    const f = await b.fetch("h", 0, 0);
    expect(f.records[0]!.key).toBeNull();
    expect(f.records[0]!.timestamp).toBe(1_700_000_000_123);
    expect(f.records[0]!.headers.map((h) => [h.key, h.value && dec.decode(h.value)])).toEqual([["source", "mqtt"], ["empty", null]]);
    expect(f.records[1]!.value).toBeNull();
  });

  it("splits a request larger than max.message.bytes into several batches, and refuses a record that cannot fit", async () => {
    const b = await open();
    await b.createTopic("big", 1, { "max.message.bytes": 4096 });
    const many = Array.from({ length: 50 }, (_, i) => rec(null, `${i}`.padEnd(300, "x")));
    const r = await b.produce("big", many);
    expect(r.map((x) => x.offset)).toEqual(many.map((_, i) => i));
    const all = await b.fetch("big", 0, 0, { maxRecords: 1000 });
    expect(all.records.map((x) => dec.decode(x.value!))).toEqual(many.map((m) => dec.decode(m.value!)));
    expect(await codeOf(b.produce("big", [rec(null, "y".repeat(5000))]))).toBe("RECORD_TOO_LARGE");
    expect(b.describeTopic("big").partitions[0]!.highWatermark).toBe(50);
  });

  it("refuses keyless records on a compacted topic without writing any record of the request", async () => {
    const b = await open();
    await b.createTopic("c", 1, { "cleanup.policy": "compact" });
    expect(await codeOf(b.produce("c", [rec("k", "1"), rec(null, "2")]))).toBe("INVALID_REQUEST");
    expect(b.describeTopic("c").partitions[0]!.highWatermark).toBe(0);
  });

  it("fetches from an offset inside a batch, bounded by maxRecords, and refuses offsets out of range", async () => {
    const b = await open();
    await b.createTopic("r", 1);
    await b.produce("r", Array.from({ length: 10 }, (_, i) => rec(null, String(i))));
    const f = await b.fetch("r", 0, 4, { maxRecords: 3 });
    expect(f.records.map((x) => x.offset)).toEqual([4, 5, 6]);
    expect(f.nextOffset).toBe(7);
    const end = await b.fetch("r", 0, 10);
    expect(end.records).toEqual([]);
    expect(end.nextOffset).toBe(10);
    expect(await codeOf(b.fetch("r", 0, 11))).toBe("OFFSET_OUT_OF_RANGE");
    expect(await codeOf(b.fetch("r", 0, -1))).toBe("INVALID_REQUEST");
    expect(await codeOf(b.fetch("r", 0, 0, { maxRecords: 0 }))).toBe("INVALID_REQUEST");
  });

  it("answers a long poll as soon as a record arrives, and an empty one when the wait runs out", async () => {
    const b = await open();
    await b.createTopic("lp", 1);
    const waiting = b.fetch("lp", 0, 0, { waitMs: 20_000 });
    await b.produce("lp", [rec(null, "wake")]);
    const f = await waiting;
    expect(f.records.map((x) => dec.decode(x.value!))).toEqual(["wake"]);
    const empty = await b.fetch("lp", 0, 1, { waitMs: 30 });
    expect(empty.records).toEqual([]);
    const ac = new AbortController();
    const aborted = b.fetch("lp", 0, 1, { waitMs: 60_000, signal: ac.signal });
    ac.abort();
    expect((await aborted).records).toEqual([]);
  });

  it("acks=0 answers without offsets and the records still land", async () => {
    const b = await open();
    await b.createTopic("z", 1);
    const r = await b.produce("z", [rec(null, "a"), rec(null, "b")], 0);
    expect(r).toEqual([{ partition: 0, offset: -1 }, { partition: 0, offset: -1 }]);
    const f = await b.fetch("z", 0, 0, { waitMs: 10_000 });
    expect(f.records.length).toBeGreaterThan(0);
  });

  it("counts produced records in /metrics text", async () => {
    const b = await open();
    await b.createTopic("m", 1);
    await b.produce("m", [rec(null, "a"), rec(null, "b")]);
    const text = b.metrics.render();
    expect(text).toContain('tributary_records_produced_total{topic="m"} 2');
    expect(text).toContain('tributary_partition_high_watermark{topic="m",partition="0"} 2');
  });

  it("refuses requests once closed", async () => {
    const b = await open();
    await b.createTopic("x", 1);
    await b.close();
    expect(b.ready).toBe(false);
    expect(await codeOf(b.produce("x", [rec(null, "a")]))).toBe("NOT_READY");
  });
});
