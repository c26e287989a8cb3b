/**
 * ReplicaLog: a partition's Raft log kept in its partition log. Round trips across reopen on
 * mem-fs and real files, conflicting suffixes, power cuts with torn tails, control entries, cache
 * misses, retention moving the anchor (and a crash in between), snapshot install (and a crash in
 * between), compaction keeping ordinals, the replicated mode of PartitionLog, and the broker's
 * fetch skipping control batches. The model test and the RaftNode loop are in
 * replica-log-model.test.ts.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Broker } from "../src/broker.ts";
import { ReplicaLog } from "../src/cluster/replica-log.ts";
import { defaultConfig } from "../src/config.ts";
import { silentLogger } from "../src/logger.ts";
import { EntryType, decodeConfChange } from "../src/raft/index.ts";
import { ManualClock } from "../src/runtime/clock.ts";
import { nodeFileSystem } from "../src/runtime/fs.ts";
import { MemFileSystem } from "../src/runtime/mem-fs.ts";
import { PartitionLog } from "../src/storage/log.ts";
import { encodeBatch, readBatchHeader, splitBatches } from "../src/storage/record-batch.ts";
import { batchOf, capturingLogger, logConfig, memFs, readAll, realFs, str, text, valuesBatch, type FsKind } from "./support/log-fixtures.ts";
import { rng } from "./support/random.ts";
import { TestFs, REPLICATED, closeReplica, conf, noop, normal, openReplica, readEntries, show } from "./support/replica-fixtures.ts";

const SMALL_SEGMENTS = { segmentBytes: 400 };

describe.each([memFs, realFs] as FsKind[])("on $name", (kind) => {
  it("keeps entries of several terms, their offsets and bytes across a reopen", async () => {
    const { fs, dir, cleanup } = await kind.make();
    try {
      let r = await openReplica(fs, dir, { config: SMALL_SEGMENTS });
      expect([r.store.firstIndex(), r.store.lastIndex(), r.store.term(0)]).toEqual([1, 0, 0]);
      const ents = [noop(1, 1), normal(2, 1, 3), normal(3, 1), conf(4, 2, [1, 2, 3, 4]), noop(5, 3), normal(6, 3, 1), normal(7, 3, 4)];
      await r.store.persist(ents.slice(0, 3), { term: 1, vote: 1, commit: 0 }, undefined);
      await r.store.persist(ents.slice(3), { term: 3, vote: 2, commit: 2 }, undefined);
      r.store.commitTo(5);
      const before = (await readEntries(r.store)).map(show);
      const offsets = [1, 2, 3, 4, 5, 6, 7].map((i) => r.store.offsetsOf(i));
      expect(offsets[0]).toEqual({ baseOffset: 0, lastOffset: 0 });
      expect(offsets[1]).toEqual({ baseOffset: 1, lastOffset: 3 });
      expect(r.log.segmentCount).toBeGreaterThan(1);
      await closeReplica(r);

      r = await openReplica(fs, dir, { config: SMALL_SEGMENTS });
      expect([r.store.firstIndex(), r.store.lastIndex()]).toEqual([1, 7]);
      expect([1, 2, 3, 4, 5, 6, 7].map((i) => r.store.term(i))).toEqual([1, 1, 1, 2, 3, 3, 3]);
      expect([1, 2, 3, 4, 5, 6, 7].map((i) => r.store.offsetsOf(i))).toEqual(offsets);
      expect((await readEntries(r.store)).map(show)).toEqual(before);
      expect(before).toEqual(ents.map(show)); // the leader's bytes, stamped in place
      expect(r.store.initialState()).toEqual({ hardState: { term: 3, vote: 2, commit: 5 }, confState: { voters: [1, 2, 3] } });
      expect(r.store.appliedHint).toBe(5);
      expect(r.log.highWatermark).toBe(offsets[4]!.lastOffset + 1);
      expect(await r.store.indexOfOffset(2)).toBe(2);
      expect(await r.store.indexOfOffset(offsets[6]!.lastOffset)).toBe(7);
      expect(await r.store.indexOfOffset(offsets[6]!.lastOffset + 1)).toBeUndefined();
      await closeReplica(r);
    } finally {
      await cleanup();
    }
  });

  it("cuts a conflicting suffix and replaces it, durably", async () => {
    const { fs, dir, cleanup } = await kind.make();
    try {
      let r = await openReplica(fs, dir, { config: SMALL_SEGMENTS });
      await r.store.persist([1, 2, 3, 4, 5, 6].map((i) => normal(i, 1)), { term: 1, vote: 1, commit: 0 }, undefined);
      r.store.commitTo(3);
      const replacement = [noop(4, 2), normal(5, 2, 5)];
      await r.store.persist(replacement, { term: 2, vote: 2, commit: 3 }, undefined);
      expect(r.store.lastIndex()).toBe(5);
      expect([3, 4, 5].map((i) => r.store.term(i))).toEqual([1, 2, 2]);
      expect(r.store.offsetsOf(4).baseOffset).toBe(r.store.offsetsOf(3).lastOffset + 1);
      expect(r.log.logEndOffset).toBe(r.store.offsetsOf(5).lastOffset + 1);
      const shown = (await readEntries(r.store)).map(show);
      await closeReplica(r);
      r = await openReplica(fs, dir, { config: SMALL_SEGMENTS });
      expect(r.store.lastIndex()).toBe(5);
      expect((await readEntries(r.store)).map(show)).toEqual(shown);
      expect(shown.slice(3)).toEqual(replacement.map(show));
      await closeReplica(r);
    } finally {
      await cleanup();
    }
  });
});

describe("crashes", () => {
  it("keeps every entry whose persist resolved through power cuts with torn tails, and drops the torn ones", async () => {
    const survivors = new Set<number>();
    for (let seed = 1; seed <= 30; seed++) {
      const random = rng(seed);
      const mem = new MemFileSystem();
      const fs = new TestFs(mem);
      // Odd seeds never sync on their own (interval flush, a clock that stands still): the
      // in-flight entries are written and wait unsynced for the power cut, which tears them.
      const config = seed % 2 ? { ...SMALL_SEGMENTS, segmentBytes: 1 << 20, flush: { mode: "interval" as const, intervalMs: 1e9, bytes: 1e9 } } : SMALL_SEGMENTS;
      let r = await openReplica(fs, "/p", { config });
      const durable = [1, 2, 3, 4].map((i) => normal(i, 1, 1 + (i % 3)));
      await Promise.all([r.store.persist(durable, { term: 1, vote: 1, commit: 0 }, undefined), r.log.flush()]);
      const inFlight = [5, 6, 7, 8, 9].map((i) => normal(i, 2, 2));
      // Never settles on odd seeds (the sync it waits for never comes), and is lost on the others.
      void r.store.persist(inFlight, { term: 2, vote: 2, commit: 0 }, undefined).catch(() => "lost");
      if (seed % 2) await new Promise((go) => setTimeout(go, 5));
      else for (let i = Math.floor(random() * 150); i > 0; i--) await null;
      fs.kill();
      mem.crash("power", { random, tornTail: true });
      r = await openReplica(mem, "/p", { config });
      const got = (await readEntries(r.store)).map(show);
      expect(got.slice(0, 4), `seed ${seed}`).toEqual(durable.map(show));
      expect(got.slice(4), `seed ${seed}`).toEqual(inFlight.slice(0, got.length - 4).map(show));
      survivors.add(got.length - 4);
      const { term, vote } = r.store.initialState().hardState;
      expect([[1, 1], [2, 2]], `seed ${seed}`).toContainEqual([term, vote]);
      // Appending goes on where the survivors end.
      await Promise.all([r.store.persist([normal(r.store.lastIndex() + 1, 3)], { term: 3, vote: 0, commit: 0 }, undefined), r.log.flush()]);
      await closeReplica(r);
    }
    // The seeds cut at different points: none, some and all of the in-flight entries survived.
    expect(survivors.has(0) && survivors.has(5) && [1, 2, 3, 4].some((n) => survivors.has(n)), [...survivors].join()).toBe(true);
  });
});

describe("entries", () => {
  it("stores no-ops and membership changes as control batches and gives the same entries back", async () => {
    const fs = new MemFileSystem();
    let r = await openReplica(fs, "/p");
    const ents = [noop(1, 4), conf(2, 4, [1, 2, 3, 7])];
    await r.store.persist(ents, { term: 4, vote: 1, commit: 0 }, undefined);
    await closeReplica(r);
    r = await openReplica(fs, "/p");
    const [a, b] = await readEntries(r.store);
    expect(a).toEqual({ index: 1, term: 4, type: EntryType.Normal, data: new Uint8Array(0) });
    expect(b!.type).toBe(EntryType.ConfChange);
    expect(decodeConfChange(b!.data).voters).toEqual([1, 2, 3, 7]);
    const { batches } = await r.log.readDurable(0, 1 << 20);
    const headers = splitBatches(batches).map((x) => readBatchHeader(x));
    expect(headers.map((h) => [h.isControl, h.partitionLeaderEpoch, h.baseOffset, h.recordCount, h.maxTimestamp, h.producerId])).toEqual([
      [true, 4, 0, 1, 0, -1],
      [true, 4, 1, 1, 0, -1],
    ]);
    await closeReplica(r);
  });

  it("answers null for entries evicted from the cache, records the miss, and load() brings them back", async () => {
    const fs = new MemFileSystem();
    const r = await openReplica(fs, "/p", { cacheBytes: 600 });
    const ents = Array.from({ length: 10 }, (_, i) => normal(i + 1, 1, 3));
    await r.store.persist(ents, { term: 1, vote: 1, commit: 0 }, undefined);
    // Nothing is evicted above the applied index, whatever the budget.
    expect(r.store.entries(1, 11, 1 << 20)?.length).toBe(10);
    r.store.commitTo(10);
    expect(r.store.entries(1, 3, 1 << 20)).toBeNull();
    expect(r.store.entries(2, 3, 1 << 20)).toBeNull();
    expect(r.store.takeMisses()).toEqual([1, 2]);
    expect(r.store.takeMisses()).toEqual([]);
    const tail = r.store.entries(10, 11, 1 << 20);
    expect(tail?.map(show)).toEqual([show(ents[9]!)]);
    expect(r.store.term(1)).toBe(1); // terms never miss
    await r.store.load(1);
    expect(r.store.entries(1, 11, 1 << 20)?.map(show)).toEqual(ents.map(show));
    // maxBytes cuts, but at least one entry comes back.
    expect(r.store.entries(1, 11, 1)?.length).toBe(1);
    await closeReplica(r);
  });

  it("asserts when a follower's log would put a leader-stamped batch at another offset", async () => {
    const r = await openReplica(new MemFileSystem(), "/p");
    const stamped = valuesBatch("x", 1);
    new DataView(stamped.buffer).setBigInt64(0, 42n);
    await expect(r.store.persist([{ index: 1, term: 1, type: EntryType.Normal, data: stamped }], undefined, undefined)).rejects.toThrow(/diverged/);
    await closeReplica(r);
  });

  it("checks the CRC of a batch from a peer once, and not again for the leader's own batch it checked when proposing", async () => {
    const r = await openReplica(new MemFileSystem(), "/p");
    const fromPeer = valuesBatch("x", 1);
    fromPeer[fromPeer.length - 1]! ^= 1; // a byte inside the CRC's coverage
    await expect(r.store.persist([{ index: 1, term: 1, type: EntryType.Normal, data: fromPeer }], undefined, undefined)).rejects.toMatchObject({ code: "CORRUPT_RECORD" });
    // The same flip in a batch marked as checked is not looked for: the proof that no second pass runs.
    const own = valuesBatch("y", 1);
    own[own.length - 1]! ^= 1;
    r.store.trustCrc(own);
    await r.store.persist([{ index: 1, term: 1, type: EntryType.Normal, data: own }], undefined, undefined);
    expect(r.store.lastIndex()).toBe(1);
    await closeReplica(r);
  });
});

describe("a batch index with small limits", () => {
  const LIMITS = { exactBatches: 4, maxSamples: 3 };
  const N = 300;

  it("serves old entries, offsets and retention from samples and the disk, and stays within its limits across a reopen", async () => {
    const fs = new MemFileSystem();
    const opts = { config: { segmentBytes: 2000, retentionBytes: 12_000 }, cacheBytes: 500, indexLimits: LIMITS };
    let r = await openReplica(fs, "/p", opts);
    // every batch holds 2 records: entry i starts at offset 2(i - 1)
    const ents = Array.from({ length: N }, (_, i) => normal(i + 1, 1 + Math.floor(i / 100), 2));
    for (let i = 0; i < N; i += 25) {
      await r.store.persist(ents.slice(i, i + 25), { term: 3, vote: 1, commit: 0 }, undefined);
      r.store.commitTo(Math.max(0, i - 10));
    }
    r.store.commitTo(N - 5);
    const held = r.store.indexHeld;
    expect(held.firstExactIndex).toBeGreaterThan(N - 2 * LIMITS.exactBatches - 6);
    expect(held.firstExactIndex).toBeLessThanOrEqual(N - 5);
    expect(held.offsets).toBeLessThanOrEqual(2 * LIMITS.exactBatches + LIMITS.maxSamples + 5);
    const check = async (from: number) => {
      for (let i = from; i <= N; i++) expect(await r.store.baseOffsetOf(i), `first offset of ${i}`).toBe(2 * (i - 1));
      for (const i of [from, from + 1, Math.floor((from + N) / 2), N]) expect(await r.store.indexOfOffset(2 * (i - 1) + 1)).toBe(i);
      expect((await readEntries(r.store, from)).map(show)).toEqual(ents.slice(from - 1).map(show));
      expect([from, N].map((i) => r.store.term(i))).toEqual([ents[from - 1]!.term, ents[N - 1]!.term]);
    };
    await check(1);
    expect(() => r.store.offsetsOf(2)).toThrow(/below the batch index's exact window/);

    // retention cuts below the exact window: the anchor is found by counting headers from a sample;
    // a load queued behind that pass, of an entry it deletes, finds the log changed and loads nothing
    const pass = r.log.enforceRetention();
    const late = r.store.load(3);
    expect(await pass).toBeGreaterThan(0);
    await late;
    expect(r.store.firstIndex()).toBeGreaterThan(3);
    const first = r.store.firstIndex();
    expect(first).toBeGreaterThan(2);
    expect(first).toBeLessThan(held.firstExactIndex);
    expect(r.log.logStartOffset).toBe(2 * (first - 1));
    expect(r.store.term(first - 1)).toBe(ents[first - 2]!.term);
    await check(first);

    await closeReplica(r);
    r = await openReplica(fs, "/p", opts);
    expect(r.store.firstIndex()).toBe(first);
    expect(r.store.indexHeld.offsets).toBeLessThanOrEqual(2 * LIMITS.exactBatches + LIMITS.maxSamples + 5);
    await check(first);
    await closeReplica(r);
  });
});

describe("retention and snapshots", () => {
  const retained = { segmentBytes: 300, retentionBytes: 600 };

  async function filled(fs: TestFs | MemFileSystem, dir: string) {
    const r = await openReplica(fs, dir, { config: retained });
    const ents = Array.from({ length: 12 }, (_, i) => normal(i + 1, 1 + Math.floor(i / 5), 2));
    await r.store.persist(ents, { term: 3, vote: 1, commit: 0 }, undefined);
    return { r, ents };
  }

  it("only deletes applied segments, and moves the anchor first", async () => {
    const fs = new MemFileSystem();
    const { r, ents } = await filled(fs, "/p");
    expect(await r.log.enforceRetention()).toBe(0); // nothing applied yet
    r.store.commitTo(12);
    expect(await r.log.enforceRetention()).toBeGreaterThan(0);
    const first = r.store.firstIndex();
    expect(first).toBeGreaterThan(1);
    expect(r.log.logStartOffset).toBe(r.store.offsetsOf(first).baseOffset);
    const snap = r.store.snapshot();
    expect(snap.meta).toEqual({ index: first - 1, term: ents[first - 2]!.term, confState: { voters: [1, 2, 3] } });
    expect(r.store.term(first - 1)).toBe(ents[first - 2]!.term);
    expect(r.store.term(first - 2)).toBeUndefined();
    const raft = JSON.parse(new TextDecoder().decode((await fs.readFile("/p/raft.json"))!));
    expect(raft.anchor).toEqual({ index: first - 1, term: ents[first - 2]!.term, nextOffset: r.log.logStartOffset });
    await closeReplica(r);
    const again = await openReplica(fs, "/p", { config: retained });
    expect([again.store.firstIndex(), again.store.lastIndex()]).toEqual([first, 12]);
    expect((await readEntries(again.store)).map(show)).toEqual(ents.slice(first - 1).map(show));
    await closeReplica(again);
  });

  it("opens correctly after a crash between the anchor write and the segment deletes", async () => {
    const mem = new MemFileSystem();
    const fs = new TestFs(mem);
    const { r, ents } = await filled(fs, "/p");
    r.store.commitTo(12);
    fs.failRemove = (path) => path.endsWith(".log");
    await expect(r.log.enforceRetention()).rejects.toThrow(/injected/);
    const first = r.store.firstIndex();
    expect(first).toBeGreaterThan(1);
    mem.crash("power");
    const { logger, lines } = capturingLogger();
    const log = await PartitionLog.open("/p", logConfig(retained), { fs: mem, clock: new ManualClock(), logger }, REPLICATED);
    expect(log.logStartOffset).toBe(0); // the old segments are still there
    const store = await ReplicaLog.open("/p", log, { fs: mem, logger }, { voters: [1, 2, 3], cacheBytes: 1 << 20 });
    expect(lines.some((l) => l.msg === "finished a retention pass a crash interrupted")).toBe(true);
    expect([store.firstIndex(), store.lastIndex()]).toEqual([first, 12]);
    expect(log.logStartOffset).toBe(store.offsetsOf(first).baseOffset);
    expect((await readEntries(store)).map(show)).toEqual(ents.slice(first - 1).map(show));
    await closeReplica({ log, store });
  });

  it("installs a leader's snapshot on a follower, which then takes the entries after it", async () => {
    const leaderFs = new MemFileSystem();
    const { r: leader, ents } = await filled(leaderFs, "/leader");
    leader.store.commitTo(12);
    await leader.log.enforceRetention();
    const snap = leader.store.snapshot();
    expect(snap.meta.index).toBeGreaterThan(0);

    const fs = new MemFileSystem();
    let f = await openReplica(fs, "/f", { config: retained });
    await f.store.persist([normal(1, 1), normal(2, 1)], { term: 1, vote: 0, commit: 0 }, undefined); // stale entries, to be replaced
    await f.store.persist([], { term: 3, vote: 0, commit: snap.meta.index }, snap);
    expect([f.store.firstIndex(), f.store.lastIndex(), f.store.term(snap.meta.index)]).toEqual([snap.meta.index + 1, snap.meta.index, snap.meta.term]);
    expect([f.log.logStartOffset, f.log.logEndOffset, f.log.highWatermark]).toEqual([leader.log.logStartOffset, leader.log.logStartOffset, leader.log.logStartOffset]);
    const rest = await readEntries(leader.store, snap.meta.index + 1);
    await f.store.persist(rest, undefined, undefined);
    f.store.commitTo(12);
    await closeReplica(f);
    f = await openReplica(fs, "/f", { config: retained });
    expect((await readEntries(f.store)).map(show)).toEqual(ents.slice(snap.meta.index).map(show));
    expect(f.store.snapshot().meta).toEqual(snap.meta);
    expect(f.store.appliedHint).toBe(12);
    await closeReplica(f);
    await closeReplica(leader);
  });

  it("finishes an interrupted snapshot install at open", async () => {
    const { r: leader } = await filled(new MemFileSystem(), "/leader");
    leader.store.commitTo(12);
    await leader.log.enforceRetention();
    const snap = leader.store.snapshot();
    const mem = new MemFileSystem();
    const fs = new TestFs(mem);
    const f = await openReplica(fs, "/f", { config: retained });
    await f.store.persist([1, 2, 3].map((i) => normal(i, 1)), { term: 1, vote: 0, commit: 0 }, undefined);
    fs.failRemove = (path) => path.endsWith(".log");
    await expect(f.store.persist([], { term: 3, vote: 0, commit: snap.meta.index }, snap)).rejects.toThrow(/injected/);
    mem.crash("power");
    const again = await openReplica(mem, "/f", { config: retained });
    expect([again.store.firstIndex(), again.store.lastIndex()]).toEqual([snap.meta.index + 1, snap.meta.index]);
    expect([again.log.logStartOffset, again.log.logEndOffset]).toEqual([leader.log.logStartOffset, leader.log.logStartOffset]);
    expect(again.store.initialState().confState.voters).toEqual([1, 2, 3]);
    await closeReplica(again);
    await closeReplica(leader);
  });
});

describe("compaction", () => {
  it("keeps every batch of a replicated log, emptied ones included, so the Raft indexes stay", async () => {
    const compacted = { segmentBytes: 300, cleanupPolicy: "compact" as const };
    const fs = new MemFileSystem();
    let r = await openReplica(fs, "/p", { config: compacted });
    const keyed = (i: number) => ({ index: i, term: 1, type: EntryType.Normal, data: batchOf([{ key: "k", value: `v${i}` }]) });
    const ents = Array.from({ length: 10 }, (_, i) => keyed(i + 1));
    await r.store.persist(ents, { term: 1, vote: 1, commit: 0 }, undefined);
    r.store.commitTo(10);
    const offsets = ents.map((e) => r.store.offsetsOf(e.index));
    const stats = await r.log.compact();
    expect(stats.recordsRemoved).toBeGreaterThan(0);
    await closeReplica(r);
    r = await openReplica(fs, "/p", { config: compacted });
    expect(r.store.lastIndex()).toBe(10);
    expect(ents.map((e) => r.store.offsetsOf(e.index))).toEqual(offsets);
    const back = await readEntries(r.store);
    expect(back.map((e) => readBatchHeader(e.data).recordCount).slice(0, stats.recordsRemoved)).toEqual(new Array(stats.recordsRemoved).fill(0));
    expect(back.map((e) => e.term)).toEqual(new Array(10).fill(1));
    const values = (await readAll(r.log)).map((x) => str(x.value));
    expect(values).toEqual(ents.slice(stats.recordsRemoved).map((e) => `v${e.index}`)); // the active segment is never compacted
    await closeReplica(r);

    // The same log without keepEmptyBatches drops the emptied batches: the option is what keeps them.
    const plain = await PartitionLog.open("/q", logConfig(compacted), { fs, clock: new ManualClock(), logger: capturingLogger().logger });
    for (let i = 1; i <= 10; i++) await plain.append(batchOf([{ key: "k", value: `v${i}` }]));
    await plain.compact();
    const { batches } = await plain.read(0, 1 << 20);
    expect(splitBatches(batches).length).toBeLessThan(10);
    await plain.close();
  });
});

describe("PartitionLog in replicated mode", () => {
  it("moves the high watermark only on commitTo, reads up to it for consumers and up to the durable end for replication", async () => {
    const log = await PartitionLog.open("/p", logConfig(), { fs: new MemFileSystem(), clock: new ManualClock(), logger: capturingLogger().logger }, REPLICATED);
    const seen: number[] = [];
    log.onHighWatermark((hw) => seen.push(hw));
    await log.append(valuesBatch("a", 2));
    await log.append(valuesBatch("b", 3));
    expect([log.highWatermark, log.durableEnd, log.logEndOffset]).toEqual([0, 5, 5]);
    expect((await log.read(0, 1 << 20)).batches.length).toBe(0);
    expect(splitBatches((await log.readDurable(0, 1 << 20)).batches).length).toBe(2);
    expect(() => log.commitTo(6)).toThrow(/beyond the durable end/);
    log.commitTo(2);
    log.commitTo(1); // monotonic: ignored
    expect(seen).toEqual([2]);
    expect(splitBatches((await log.read(0, 1 << 20)).batches).length).toBe(1);
    // Truncation above the high watermark works and leaves it alone.
    await log.truncateTo(2);
    expect([log.highWatermark, log.durableEnd, log.logEndOffset]).toEqual([2, 2, 2]);
    await log.resetTo(100);
    expect([log.logStartOffset, log.highWatermark, log.durableEnd, log.logEndOffset]).toEqual([100, 100, 100, 100]);
    expect((await log.append(valuesBatch("c", 1))).baseOffset).toBe(100);
    expect(seen).toEqual([2, 100]);
    await log.close();
  });
});

describe("readers", () => {
  it("skip control batches: the broker's fetch returns the records around them and moves past them", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tributary-replica-"));
    try {
      const cfg = defaultConfig({ "data.dir": dir });
      let broker = await Broker.open(cfg, { logger: silentLogger });
      await broker.createTopic("t", 1);
      await broker.produce("t", [{ key: null, value: text("a") }, { key: null, value: text("b") }]);
      await broker.close();
      const topicDir = (await readdir(join(dir, "topics"))).find((n) => n.startsWith("t~"))!;
      const log = await PartitionLog.open(join(dir, "topics", topicDir, "0"), logConfig(), { fs: nodeFileSystem, clock: new ManualClock(), logger: capturingLogger().logger });
      await log.append(encodeBatch([{ key: text("raft:noop"), value: null }], { timestamp: 0, isControl: true }));
      await log.close();
      broker = await Broker.open(cfg, { logger: silentLogger });
      await broker.produce("t", [{ key: null, value: text("c") }]);
      const all = await broker.fetch("t", 0, 0);
      expect(all.records.map((x) => [x.offset, str(x.value)])).toEqual([[0, "a"], [1, "b"], [3, "c"]]);
      expect(all.nextOffset).toBe(4);
      const atControl = await broker.fetch("t", 0, 2, { maxRecords: 1 });
      expect(atControl.records.map((x) => x.offset)).toEqual([3]);
      expect(await broker.offsetForTimestamp("t", 0, 0)).toBe(0);
      await broker.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
