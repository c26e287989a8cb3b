/**
 * The central's receiving side on one broker with real files (src/mirror/central.ts through the
 * broker's mirror methods): binding, admission (replays, gaps, straddles, corruption, zip bombs),
 * the position rebuilt after a restart, targets read-only to producers, the retention floor, and
 * group offset translation. The gRPC service and sink: mirror-grpc.test.ts; a cluster:
 * mirror-cluster.test.ts.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { Broker } from "../src/broker.ts";
import { defaultConfig, type SettingKey } from "../src/config.ts";
import { silentLogger } from "../src/logger.ts";
import { commitMetadata } from "../src/mirror/central-groups.ts";
import type { PartitionLog } from "../src/storage/log.ts";
import { encodeBatch } from "../src/storage/record-batch.ts";
import { binding, centralSend, sourceBatch, sourceLog, targetRecords, targetValues, type SourceBatch } from "./support/mirror-fixtures.ts";
import { codeOf } from "./support/errors.ts";

const dirs: string[] = [];
const brokers: Broker[] = [];

async function open(overrides: Partial<Record<SettingKey, string>> = {}, dir?: string): Promise<{ broker: Broker; dir: string }> {
  const d = dir ?? (await mkdtemp(join(tmpdir(), "tributary-mirror-central-")));
  if (!dir) dirs.push(d);
  const broker = await Broker.open(defaultConfig({ "data.dir": d, "mirror.central": "true", "grpc.max.message.bytes": "65536", ...overrides }), { logger: silentLogger });
  brokers.push(broker);
  return { broker, dir: d };
}

afterEach(async () => {
  await Promise.all(brokers.splice(0).map((b) => b.close()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

const values = (batches: readonly SourceBatch[]) => batches.flatMap((b) => b.values);

async function bound(broker: Broker, partitions = 1): Promise<void> {
  const [w] = await broker.mirrorOpen({ link: "l", cluster: "site7", topics: [binding("t", "site7.t", partitions)] });
  expect(w).toMatchObject({ ok: true, positions: new Array(partitions).fill(null) });
}

describe("open", () => {
  it("creates the target with the source's partition count and config, bound to its source, and answers null positions", async () => {
    const { broker } = await open();
    const [w] = await broker.mirrorOpen({ link: "l", cluster: "site7", topics: [binding("t", "site7.t", 3, "id0", { "retention.ms": "3600000" })] });
    expect(w).toMatchObject({ sourceTopic: "t", ok: true, positions: [null, null, null] });
    const d = broker.describeTopic("site7.t");
    expect(d.partitions).toHaveLength(3);
    expect(d.config).toMatchObject({ "retention.ms": "3600000", "mirror.source": "site7/t/id0" });
    // Opening again binds the same target and answers the same.
    const [again] = await broker.mirrorOpen({ link: "l", cluster: "site7", topics: [binding("t", "site7.t", 3)] });
    expect(again).toMatchObject({ ok: true, targetTopicId: w!.ok ? w!.targetTopicId : "", positions: [null, null, null] });
  });

  it("refuses, per topic, a target bound to another source, an unbound topic of that name, a second target for one source, and a partition count that changed", async () => {
    const { broker } = await open();
    await broker.createTopic("plain", 1);
    await bound(broker);
    const welcome = await broker.mirrorOpen({
      link: "l",
      cluster: "site7",
      topics: [
        binding("t", "site7.t", 1, "id1"), // the edge topic was deleted and created again
        binding("u", "plain"),
        binding("t", "other.t", 1, "id0"),
        binding("v", "site7.v", 2),
      ],
    });
    expect(welcome.map((w) => (w.ok ? "ok" : w.code))).toEqual(["INVALID_CONFIG", "TOPIC_EXISTS", "INVALID_CONFIG", "ok"]);
    const [another] = await broker.mirrorOpen({ link: "l2", cluster: "site8", topics: [binding("t", "site7.t")] });
    expect(another).toMatchObject({ ok: false, code: "INVALID_CONFIG" });
    const [resized] = await broker.mirrorOpen({ link: "l", cluster: "site7", topics: [binding("v", "site7.v", 3)] });
    expect(resized).toMatchObject({ ok: false, code: "INVALID_PARTITIONS" });
    expect(broker.listTopics().map((t) => t.name)).toEqual(["plain", "site7.t", "site7.v"]);
  });

  it("is refused on a broker that is not a central", async () => {
    const { broker } = await open({ "mirror.central": "false" });
    expect(await codeOf(broker.mirrorOpen({ link: "l", cluster: "site7", topics: [] }))).toBe("INVALID_REQUEST");
  });
});

describe("append", () => {
  it("writes a send's batches with their stamps and acks the position; a replay writes nothing and acks the same", async () => {
    const { broker } = await open();
    await bound(broker);
    const src = sourceLog([3, 2, 4]);
    expect(await broker.mirrorAppend(centralSend("site7", "t", 0, src.slice(0, 2)))).toBe(5);
    expect(await broker.mirrorAppend(centralSend("site7", "t", 0, src.slice(0, 2)))).toBe(5);
    // A replay overlapping new data: the old batch skipped, the new one written.
    expect(await broker.mirrorAppend(centralSend("site7", "t", 0, src.slice(1)))).toBe(9);
    expect(await targetValues(broker, "site7.t", 0)).toEqual(values(src));
    expect((await broker.mirrorPositions("site7"))[0]).toMatchObject({ sourceTopic: "t", target: "site7.t", positions: [9] });
    const [w] = await broker.mirrorOpen({ link: "l", cluster: "site7", topics: [binding("t", "site7.t")] });
    expect(w).toMatchObject({ ok: true, positions: [9] });
  });

  it("takes an uncompressed send too", async () => {
    const { broker } = await open();
    await bound(broker);
    expect(await broker.mirrorAppend(centralSend("site7", "t", 0, sourceLog([2]), { gzip: false }))).toBe(2);
  });

  it("refuses a send from above the position without declared gaps (OUT_OF_ORDER_SEQUENCE) and takes it with them", async () => {
    const { broker } = await open();
    await bound(broker);
    const src = sourceLog([2, 2, 2]);
    await broker.mirrorAppend(centralSend("site7", "t", 0, src.slice(0, 1)));
    expect(await codeOf(broker.mirrorAppend(centralSend("site7", "t", 0, src.slice(2))))).toBe("OUT_OF_ORDER_SEQUENCE");
    const gaps = [{ from: 2, to: 4, reason: "disk-budget" as const }];
    expect(await broker.mirrorAppend(centralSend("site7", "t", 0, src.slice(2), { gaps }))).toBe(6);
    expect(await targetValues(broker, "site7.t", 0)).toEqual([...src[0]!.values, ...src[2]!.values]);
  });

  it("refuses a batch straddling the position (INVALID_REQUEST): the source's batches changed", async () => {
    const { broker } = await open();
    await bound(broker);
    await broker.mirrorAppend(centralSend("site7", "t", 0, sourceLog([3])));
    expect(await codeOf(broker.mirrorAppend(centralSend("site7", "t", 0, [sourceBatch(2, ["x", "y"])])))).toBe("INVALID_REQUEST");
    expect(await targetValues(broker, "site7.t", 0)).toEqual(["v0", "v1", "v2"]);
  });

  it("refuses a corrupt batch (CORRUPT_RECORD), an unstamped one, and a payload that is not gzip, writing nothing", async () => {
    const { broker } = await open();
    await bound(broker);
    const bytes = sourceLog([3])[0]!.bytes();
    bytes[bytes.length - 1]! ^= 0xff;
    const send = { source: { cluster: "site7", topic: "t", partition: 0 }, fromOffset: 0, gaps: [] };
    expect(await codeOf(broker.mirrorAppend({ ...send, payload: new Uint8Array(gzipSync(bytes)), compression: "gzip" }))).toBe("CORRUPT_RECORD");
    expect(await codeOf(broker.mirrorAppend({ ...send, payload: bytes.subarray(0, 30), compression: "none" }))).toBe("CORRUPT_RECORD");
    expect(await codeOf(broker.mirrorAppend({ ...send, payload: new Uint8Array([1, 2, 3]), compression: "gzip" }))).toBe("CORRUPT_RECORD");
    const unstamped = encodeBatch([{ key: null, value: new Uint8Array([1]) }], { timestamp: 1 });
    expect(await codeOf(broker.mirrorAppend({ ...send, payload: unstamped, compression: "none" }))).toBe("INVALID_REQUEST");
    expect(await targetValues(broker, "site7.t", 0)).toEqual([]);
  });

  it("refuses a zip bomb: a payload that inflates past grpc.max.message.bytes x 8 (RECORD_TOO_LARGE)", async () => {
    const { broker } = await open(); // grpc.max.message.bytes 65536: at most 512 KiB inflated
    await bound(broker);
    const bomb = new Uint8Array(gzipSync(new Uint8Array(64 << 20)));
    expect(bomb.length).toBeLessThan(65536);
    const send = { source: { cluster: "site7", topic: "t", partition: 0 }, fromOffset: 0, gaps: [], payload: bomb, compression: "gzip" as const };
    expect(await codeOf(broker.mirrorAppend(send))).toBe("RECORD_TOO_LARGE");
    // Just under the cap inflates (and then fails on its bytes, not its size).
    const under = { ...send, payload: new Uint8Array(gzipSync(new Uint8Array(500 << 10))) };
    expect(await codeOf(broker.mirrorAppend(under))).toBe("CORRUPT_RECORD");
  });

  it("refuses a send for a source that is not bound, or a partition the target does not have", async () => {
    const { broker } = await open();
    await bound(broker);
    expect(await codeOf(broker.mirrorAppend(centralSend("site7", "nope", 0, sourceLog([1]))))).toBe("TOPIC_NOT_FOUND");
    expect(await codeOf(broker.mirrorAppend(centralSend("site7", "t", 1, sourceLog([1]))))).toBe("PARTITION_NOT_FOUND");
  });

  it("admits concurrent sends of one source in log order: each later one is checked against the earlier ones still in flight", async () => {
    const { broker } = await open();
    await bound(broker);
    const src = sourceLog([1, 1, 1, 1, 1, 1, 1, 1]);
    // All at once: in order they all fit; replays of them in between are dropped.
    const results = await Promise.all([...src.map((b) => broker.mirrorAppend(centralSend("site7", "t", 0, [b]))), broker.mirrorAppend(centralSend("site7", "t", 0, src.slice(0, 3)))]);
    expect(results.slice(0, 8)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(results[8]).toBe(8);
    expect(await targetValues(broker, "site7.t", 0)).toEqual(values(src));
  });

  it("rebuilds the position from the log after a restart: a replay writes nothing, the next send goes on", async () => {
    const { broker, dir } = await open({ "segment.bytes": "4096" });
    await bound(broker);
    const src = sourceLog(Array.from({ length: 40 }, () => 5));
    for (const b of src.slice(0, 30)) await broker.mirrorAppend(centralSend("site7", "t", 0, [b]));
    await broker.close();
    const { broker: again } = await open({ "segment.bytes": "4096" }, dir);
    expect((await again.mirrorPositions("site7", ["t"]))[0]!.positions).toEqual([150]);
    expect(await again.mirrorAppend(centralSend("site7", "t", 0, src.slice(25, 30)))).toBe(150);
    expect(await again.mirrorAppend(centralSend("site7", "t", 0, src.slice(25)))).toBe(200);
    expect(await targetValues(again, "site7.t", 0)).toEqual(values(src));
  });

  it("makes targets read-only to producers, and lets an admin delete one", async () => {
    const { broker } = await open();
    await bound(broker);
    const err = await broker.produce("site7.t", [{ key: null, value: new Uint8Array([1]) }]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "INVALID_REQUEST", message: expect.stringContaining("mirror target of site7/t") });
    const id = await broker.initProducerId();
    expect(await codeOf(broker.produce("site7.t", [{ key: null, value: null, partition: 0 }], 1, { ...id, baseSequence: 0 }))).toBe("INVALID_REQUEST");
    await broker.deleteTopic("site7.t");
    expect(await codeOf(broker.mirrorAppend(centralSend("site7", "t", 0, sourceLog([1]))))).toBe("TOPIC_NOT_FOUND");
    // A create request cannot bind a topic itself.
    expect(await codeOf(broker.createTopic("fake", 1, { "mirror.source": "site7/t/id0" }))).toBe("INVALID_CONFIG");
  });
});

describe("the retention floor", () => {
  it("keeps the segment holding the newest stamped batch when only control batches follow it, so the position survives retention and compaction", async () => {
    const settings = { "segment.bytes": "4096", "retention.bytes": "1", "cleanup.policy": "compact,delete" } as const;
    const { broker, dir } = await open(settings);
    await bound(broker);
    const src = sourceLog(Array.from({ length: 40 }, () => 10)).map((b) => sourceBatch(b.from, b.values, (v) => v));
    for (const b of src) await broker.mirrorAppend(centralSend("site7", "t", 0, [b]));
    // What a Raft leader's empty entries look like in a target: control batches, here enough to fill segments.
    const log = internalLog(broker, "site7.t", 0);
    const control = () => encodeBatch([{ key: null, value: null }], { timestamp: 1, isControl: true, lastOffsetDelta: 0 });
    while (log.segmentCount < 4) await log.append(control());
    const newestAt = (await targetRecords(broker, "site7.t", 0)).at(-1)!.offset;
    await broker.runMaintenance();
    expect(log.logStartOffset).toBeGreaterThan(0);
    expect(log.logStartOffset).toBeLessThanOrEqual(newestAt);
    expect((await targetRecords(broker, "site7.t", 0)).at(-1)).toEqual({ offset: newestAt, value: "v399" });
    // More sends and control batches: the floor follows the newest stamped batch (scanned from where it looked last).
    const more = sourceLog(Array.from({ length: 10 }, () => 10), 400).map((b) => sourceBatch(b.from, b.values, (v) => v));
    for (const b of more) await broker.mirrorAppend(centralSend("site7", "t", 0, [b]));
    const target = log.segmentCount + 3;
    while (log.segmentCount < target) await log.append(control());
    const newerAt = (await targetRecords(broker, "site7.t", 0)).at(-1)!.offset;
    await broker.runMaintenance();
    expect(log.logStartOffset).toBeGreaterThan(newestAt);
    expect(log.logStartOffset).toBeLessThanOrEqual(newerAt);
    await broker.close();
    const { broker: again } = await open(settings, dir);
    expect((await again.mirrorPositions("site7"))[0]!.positions).toEqual([500]);
  });
});

describe("group offsets", () => {
  it("translate exactly inside a batch, to the next batch's start between batches, and are pending beyond the position", async () => {
    const { broker } = await open();
    await bound(broker);
    // Source batches at 10..14, 20..22, 28..31: the offsets between them held batches without records.
    const src = sourceLog([5, 3, 4], 10, 5);
    for (const [i, b] of src.entries()) await broker.mirrorAppend(centralSend("site7", "t", 0, [b], { fromOffset: i === 0 ? b.from : src[i - 1]!.to }));
    const central = await targetRecords(broker, "site7.t", 0);
    const centralOf = (v: string) => central.find((r) => r.value === v)!.offset;
    const commit = (sourceOffset: number) => ({ group: "g", sourceTopic: "t", partition: 0, sourceOffset, metadata: "edge" });
    const results = await broker.mirrorCommitGroupOffsets("site7", [commit(12), commit(15), commit(20), commit(0), commit(32), commit(33)]);
    expect(results.map((r) => (r.ok ? r.targetOffset : r.pending ? "pending" : r.code))).toEqual([
      centralOf("v12"),
      centralOf("v20"),
      centralOf("v20"),
      centralOf("v10"),
      centralOf("v31") + 1,
      "pending",
    ]);
    const committed = await broker.groups.fetchCommittedOffsets("g");
    expect(committed).toHaveLength(1);
    // The last commit of the call wins: the one for source offset 32, the position.
    expect(committed[0]).toMatchObject({ topic: "site7.t", partition: 0, offset: centralOf("v31") + 1 });
    expect(JSON.parse(committed[0]!.metadata)).toEqual({ source: { cluster: "site7", topic: "t", partition: 0, offset: 32 }, metadata: "edge" });
    const [unknown] = await broker.mirrorCommitGroupOffsets("site7", [{ ...commit(1), sourceTopic: "nope" }]);
    expect(unknown).toMatchObject({ ok: false, pending: false, code: "TOPIC_NOT_FOUND" });
  });

  it("translate any source offset to where a consumer continues without a gap or a repeat (random logs)", async () => {
    const { broker } = await open({ "segment.bytes": "4096" });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 3 })), { minLength: 1, maxLength: 30 }), fc.integer({ min: 0, max: 1000 }), async (shape, pick) => {
        const topic = `t${run++}`;
        await broker.mirrorOpen({ link: "l", cluster: "site7", topics: [binding(topic, `site7.${topic}`)] });
        let at = 0;
        const src: SourceBatch[] = [];
        for (const [n, skip] of shape) {
          at += skip;
          src.push(sourceBatch(at, Array.from({ length: n }, (_, i) => `v${at + i}`)));
          at += n;
        }
        for (const b of src) await broker.mirrorAppend(centralSend("site7", topic, 0, [b], { fromOffset: b.from, gaps: b.from > 0 ? [{ from: 0, to: b.from, reason: "retention" }] : [] }));
        const sourceOffset = pick % (at + 1);
        const [r] = await broker.mirrorCommitGroupOffsets("site7", [{ group: "g", sourceTopic: topic, partition: 0, sourceOffset, metadata: "" }]);
        if (!r?.ok) throw new Error(`not committed: ${JSON.stringify(r)}`);
        // What a consumer reads from the translated offset is exactly the source records at or after sourceOffset.
        const rest = (await targetRecords(broker, `site7.${topic}`, 0)).filter((x) => x.offset >= r.targetOffset).map((x) => x.value);
        expect(rest).toEqual(src.flatMap((b) => b.values).filter((v) => Number(v.slice(1)) >= sourceOffset));
      }),
      { numRuns: 25, seed: 6 },
    );
  });

  it("keep the commit metadata within 4096 characters", () => {
    const m = commitMetadata("site7", { group: "g", sourceTopic: "t", partition: 0, sourceOffset: 1, metadata: "x".repeat(5000) });
    expect(m.length).toBeLessThanOrEqual(4096);
    expect(JSON.parse(m).source.offset).toBe(1);
  });
});

/** A target partition's log, reached inside the broker: the test stands in for a Raft leader appending its control batches. */
function internalLog(broker: Broker, topic: string, partition: number): PartitionLog {
  const topics = (broker as unknown as { topics: Map<string, { partitions: { log: PartitionLog }[] }> }).topics;
  return topics.get(topic)!.partitions[partition]!.log;
}
