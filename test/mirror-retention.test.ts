/**
 * Mirror-aware retention and the disk budget in the broker (src/mirror/retention-driver.ts over
 * retention-policy.ts), on real files, on the in-memory disk where power cuts matter, and in an
 * in-process 3-broker cluster.
 *
 * `FakeMirrorSource` stands in for the edge's mirror checkpoints (built elsewhere): the test sets
 * each partition's mirrored position, and its "ledger" is an array, which stands for the
 * replicated checkpoint topic (durable once recordDropped resolves, whatever happens to the
 * broker's disk).
 *
 * Layout used throughout: segment.bytes 4096 and one record of VALUE_BYTES per produce call, so
 * each segment holds two batches (two offsets) and the third batch rolls: offsets 0-1, 2-3, ...
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Broker } from "../src/broker.ts";
import { defaultConfig, type SettingKey } from "../src/config.ts";
import { silentLogger, type Logger } from "../src/logger.ts";
import type { DroppedRange, MirrorRetentionSource } from "../src/mirror/types.ts";
import { ManualClock } from "../src/runtime/clock.ts";
import type { FileSystem } from "../src/runtime/fs.ts";
import { MemFileSystem, type CrashMode } from "../src/runtime/mem-fs.ts";
import { createHttpApp } from "../gateways/http/app.ts";
import { codeOf } from "./support/errors.ts";
import { waitFor } from "./support/wait.ts";

const VALUE_BYTES = 1500;
const SEGMENT = { "segment.bytes": "4096" } as const;
const OLD_TS = 1_000; // far older than any retention.ms used here

interface LedgerEntry {
  topic: string;
  partition: number;
  ranges: DroppedRange[];
}

class FakeMirrorSource implements MirrorRetentionSource {
  readonly positions = new Map<string, number | null>();
  readonly ledger: LedgerEntry[] = [];
  /** Runs after the ledger entry is kept and before recordDropped resolves (checks, crashes). */
  onRecord: ((e: LedgerEntry) => Promise<void> | void) | null = null;

  set(topic: string, partition: number, position: number | null): void {
    this.positions.set(`${topic}/${partition}`, position);
  }
  mirroredBelow(topic: string, partition: number): number | null {
    return this.positions.get(`${topic}/${partition}`) ?? null;
  }
  async recordDropped(topic: string, partition: number, ranges: readonly DroppedRange[]): Promise<void> {
    const e = { topic, partition, ranges: ranges.map((r) => ({ ...r })) };
    this.ledger.push(e);
    await this.onRecord?.(e);
  }
  ranges(topic: string, partition = 0): DroppedRange[] {
    return this.ledger.filter((e) => e.topic === topic && e.partition === partition).flatMap((e) => e.ranges);
  }
}

const value = (i: number) => new TextEncoder().encode(String(i).padStart(VALUE_BYTES, "x"));

async function fill(b: Broker, topic: string, from: number, to: number, timestamp?: number): Promise<void> {
  for (let i = from; i < to; i++) await b.produce(topic, [{ key: null, value: value(i), partition: 0, ...(timestamp === undefined ? {} : { timestamp }) }]);
}

async function offsets(b: Broker, topic: string, partition = 0): Promise<number[]> {
  const d = b.describeTopic(topic).partitions[partition]!;
  const out: number[] = [];
  let at = d.logStartOffset;
  while (at < d.highWatermark) {
    const r = await b.fetch(topic, partition, at, { maxRecords: 1000 });
    out.push(...r.records.map((x) => x.offset));
    at = r.nextOffset;
  }
  return out;
}

const startOf = (b: Broker, topic: string) => b.describeTopic(topic).partitions[0]!.logStartOffset;
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

function metric(b: Broker, line: string): number | undefined {
  const found = b.metrics.render().split("\n").find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

/** A logger that keeps warn lines, to check each dropped range is logged. */
function keepingWarnings(): { logger: Logger; warnings: { msg: string; fields: Record<string, unknown> }[] } {
  const warnings: { msg: string; fields: Record<string, unknown> }[] = [];
  const logger: Logger = { ...silentLogger, warn: (msg: string, fields?: Record<string, unknown>) => void warnings.push({ msg, fields: fields ?? {} }) };
  return { logger, warnings };
}

describe("mirror-aware retention on one broker (real files)", () => {
  let dir: string;
  let broker: Broker | null = null;

  async function open(overrides: Partial<Record<SettingKey, string>> = {}, logger: Logger = silentLogger): Promise<Broker> {
    broker = await Broker.open(defaultConfig({ "data.dir": dir, ...SEGMENT, ...overrides }), { logger });
    return broker;
  }

  async function segmentFiles(topic: string): Promise<string[]> {
    const topicDir = (await readdir(join(dir, "topics"))).find((d) => d.startsWith(`${topic}~`))!;
    return (await readdir(join(dir, "topics", topicDir, "0"))).filter((f) => f.endsWith(".log")).sort();
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "tributary-mirror-ret-"));
  });
  afterEach(async () => {
    await broker?.close();
    broker = null;
    await rm(dir, { recursive: true, force: true });
  });

  it("lays segments out two records each (the layout the other cases count on)", async () => {
    const b = await open();
    await b.createTopic("t", 1);
    await fill(b, "t", 0, 10);
    expect(await segmentFiles("t")).toEqual([0, 2, 4, 6, 8].map((o) => `${String(o).padStart(20, "0")}.log`));
  });

  it("without a source, time retention deletes every expired closed segment, as before", async () => {
    const b = await open();
    await b.createTopic("t", 1, { "retention.ms": 60_000 });
    await fill(b, "t", 0, 10, OLD_TS);
    await b.runMaintenance();
    expect(startOf(b, "t")).toBe(8);
  });

  it("time retention keeps unmirrored segments and deletes mirrored ones; the ledger is not touched", async () => {
    const b = await open();
    await b.createTopic("t", 1, { "retention.ms": 60_000 });
    await fill(b, "t", 0, 10, OLD_TS);
    const source = new FakeMirrorSource();
    source.set("t", 0, 5); // 0-4 at the central: segments 0-1 and 2-3 may go, 4-5 holds 5
    b.setMirrorRetention(source);
    await b.runMaintenance();
    expect(startOf(b, "t")).toBe(4);
    expect(await offsets(b, "t")).toEqual(range(4, 10));
    expect(source.ledger).toEqual([]);
    source.set("t", 0, 10);
    await b.runMaintenance();
    expect(startOf(b, "t")).toBe(8); // the active segment stays, as always
  });

  it("size retention likewise stops at the first unmirrored segment", async () => {
    const b = await open();
    await b.createTopic("t", 1, { "retention.bytes": 4096 });
    await fill(b, "t", 0, 10);
    const source = new FakeMirrorSource();
    source.set("t", 0, 2);
    b.setMirrorRetention(source);
    await b.runMaintenance();
    expect(startOf(b, "t")).toBe(2);
    b.setMirrorRetention(null); // removed: retention as before
    await b.runMaintenance();
    expect(startOf(b, "t")).toBe(8);
  });

  it("a topic with mirror.aware=false is retained as without mirroring, and what it deletes unmirrored is recorded, counted and logged", async () => {
    const { logger, warnings } = keepingWarnings();
    const b = await open({}, logger);
    await b.createTopic("t", 1, { "retention.ms": 60_000, "mirror.aware": "false" });
    expect(b.describeTopic("t").config["mirror.aware"]).toBe("false");
    expect(await codeOf(b.createTopic("u", 1, { "mirror.aware": "maybe" }))).toBe("INVALID_CONFIG");
    await fill(b, "t", 0, 10, OLD_TS);
    const source = new FakeMirrorSource();
    source.set("t", 0, 3);
    b.setMirrorRetention(source);
    await b.runMaintenance();
    expect(startOf(b, "t")).toBe(8);
    expect(source.ranges("t")).toEqual([
      { from: 3, to: 4, reason: "retention" },
      { from: 4, to: 6, reason: "retention" },
      { from: 6, to: 8, reason: "retention" },
    ]);
    expect(metric(b, 'tributary_mirror_dropped_offsets_total{topic="t",reason="retention"}')).toBe(5);
    expect(warnings.filter((w) => w.fields.topic === "t").map((w) => [w.fields.from, w.fields.to])).toEqual([[3, 4], [4, 6], [6, 8]]);
  });

  it("refuse: at the budget produce gets a retriable OVERLOADED naming the budget (internal topics go on); once the position moves, writes are accepted again", async () => {
    const b = await open({ "mirror.disk.budget.bytes": String(5 * VALUE_BYTES), "mirror.disk.full.policy": "refuse" });
    await b.createTopic("t", 1);
    const source = new FakeMirrorSource();
    source.set("t", 0, 0);
    b.setMirrorRetention(source);
    // No maintenance pass: produce itself notices the disk reaching the budget and re-plans.
    let accepted = 0;
    const refusal = await waitFor("produce to be refused", async () => {
      try {
        await fill(b, "t", accepted, accepted + 1);
        accepted++;
        expect(accepted).toBeLessThan(50);
        return undefined;
      } catch (e) {
        return e as { code: string; retriable: boolean; message: string };
      }
    });
    expect(refusal.code).toBe("OVERLOADED");
    expect(refusal.retriable).toBe(true);
    expect(refusal.message).toMatch(/mirror\.disk\.budget\.bytes 7500/);
    expect(b.mirrorWritesRefused).toBe(true);
    expect(metric(b, "tributary_mirror_writes_refused")).toBe(1);
    expect(metric(b, "tributary_mirror_disk_used_bytes")).toBeGreaterThanOrEqual(5 * VALUE_BYTES);
    expect(await offsets(b, "t")).toEqual(range(0, accepted)); // nothing unmirrored went
    // A gateway maps it through its one table: HTTP answers 503 with the message.
    const app = createHttpApp(b, { maxRequestBytes: 1 << 20, maxWaitMs: 1000, maxLongPolls: 1, maxStreams: 1, logger: silentLogger });
    const res = await app.request("/v1/topics/t/records", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ records: [{ value: "v" }] }) });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: "OVERLOADED", message: expect.stringMatching(/disk budget/) });
    expect(source.ledger).toEqual([]);
    // The group coordinator still writes __consumer_offsets.
    await b.groups.commitOffsets({ groupId: "g", memberId: "", generationId: -1, offsets: [{ topic: "t", partition: 0, offset: 1 }] });
    // A maintenance pass does not lift the refusal while nothing moved.
    await b.runMaintenance();
    expect(await codeOf(fill(b, "t", accepted, accepted + 1))).toBe("OVERLOADED");
    // The mirror catches up: mirrored segments go and writes resume at once.
    source.set("t", 0, accepted);
    await b.mirrorPositionsMoved();
    expect(b.mirrorWritesRefused).toBe(false);
    expect(metric(b, "tributary_mirror_writes_refused")).toBe(0);
    expect(startOf(b, "t")).toBeGreaterThan(0);
    await fill(b, "t", accepted, accepted + 1);
    expect(source.ledger).toEqual([]);
    expect(metric(b, 'tributary_mirror_dropped_offsets_total{topic="t",reason="disk-budget"}')).toBeUndefined();
  });

  it("the budget takes mirrored segments of any topic before it refuses", async () => {
    const b = await open({ "mirror.disk.budget.bytes": String(9 * VALUE_BYTES) });
    await b.createTopic("a", 1);
    await b.createTopic("b", 1);
    await fill(b, "a", 0, 6);
    await fill(b, "b", 0, 4);
    const source = new FakeMirrorSource();
    source.set("a", 0, 6);
    source.set("b", 0, 0);
    b.setMirrorRetention(source);
    await b.runMaintenance();
    expect(startOf(b, "a")).toBeGreaterThan(0);
    expect(startOf(b, "b")).toBe(0);
    expect(b.mirrorWritesRefused).toBe(false);
  });

  it("drop-oldest: the oldest unmirrored segments go, each range recorded before its files are deleted, counted and logged", async () => {
    const { logger, warnings } = keepingWarnings();
    const b = await open({ "mirror.disk.budget.bytes": String(5 * VALUE_BYTES), "mirror.disk.full.policy": "drop-oldest" }, logger);
    await b.createTopic("t", 1);
    await fill(b, "t", 0, 10);
    const source = new FakeMirrorSource();
    source.set("t", 0, 1);
    const filesAtRecord: string[][] = [];
    source.onRecord = async () => void filesAtRecord.push(await segmentFiles("t"));
    b.setMirrorRetention(source);
    await b.runMaintenance();
    // ~16 KB in five segments, budget 7500: three segments go (the first is partly mirrored).
    expect(startOf(b, "t")).toBe(6);
    expect(await offsets(b, "t")).toEqual(range(6, 10));
    expect(source.ranges("t")).toEqual([
      { from: 1, to: 2, reason: "disk-budget" },
      { from: 2, to: 4, reason: "disk-budget" },
      { from: 4, to: 6, reason: "disk-budget" },
    ]);
    expect(filesAtRecord).toEqual([[0, 2, 4, 6, 8].map((o) => `${String(o).padStart(20, "0")}.log`)]);
    expect(metric(b, 'tributary_mirror_dropped_offsets_total{topic="t",reason="disk-budget"}')).toBe(5);
    expect(warnings.filter((w) => w.fields.reason === "disk-budget").map((w) => [w.fields.from, w.fields.to])).toEqual([[1, 2], [2, 4], [4, 6]]);
    expect(b.mirrorWritesRefused).toBe(false);
    await fill(b, "t", 10, 11);
  });

  it("a broker closes while a ledger write hangs (no checkpoint leader), and deletes nothing after it", async () => {
    const b = await open({ "mirror.disk.budget.bytes": String(5 * VALUE_BYTES), "mirror.disk.full.policy": "drop-oldest" });
    await b.createTopic("t", 1);
    await fill(b, "t", 0, 10);
    const source = new FakeMirrorSource();
    source.set("t", 0, 0);
    let release!: () => void;
    source.onRecord = () => new Promise<void>((r) => (release = r));
    b.setMirrorRetention(source);
    const maintenance = b.runMaintenance();
    await waitFor("the ledger write", () => source.ledger.length > 0);
    await b.close();
    await maintenance;
    release();
    const again = await open();
    expect(await offsets(again, "t")).toEqual(range(0, 10));
  });

  it("reads its settings: a budget in bytes or -1, refuse or drop-oldest", () => {
    expect(defaultConfig().mirrorRetention).toEqual({ diskBudgetBytes: -1, diskFullPolicy: "refuse" });
    expect(defaultConfig({ "mirror.disk.budget.bytes": "1000", "mirror.disk.full.policy": "drop-oldest" }).mirrorRetention).toEqual({ diskBudgetBytes: 1000, diskFullPolicy: "drop-oldest" });
    expect(() => defaultConfig({ "mirror.disk.budget.bytes": "0" })).toThrow(/at least 1/);
    expect(() => defaultConfig({ "mirror.disk.full.policy": "shred" })).toThrow(/refuse, drop-oldest/);
    expect(defaultConfig().topicDefaults.mirrorAware).toBe(true);
    expect(defaultConfig({ "mirror.aware": "false" }).topicDefaults.mirrorAware).toBe(false);
  });

  it("a ledger that cannot be written keeps the files", async () => {
    const b = await open({ "mirror.disk.budget.bytes": String(5 * VALUE_BYTES), "mirror.disk.full.policy": "drop-oldest" });
    await b.createTopic("t", 1);
    await fill(b, "t", 0, 10);
    const source = new FakeMirrorSource();
    source.set("t", 0, 0);
    source.onRecord = () => Promise.reject(new Error("the checkpoint topic has no leader"));
    b.setMirrorRetention(source);
    await b.runMaintenance();
    expect(startOf(b, "t")).toBe(0);
    expect(await offsets(b, "t")).toEqual(range(0, 10));
    expect(metric(b, 'tributary_mirror_dropped_offsets_total{topic="t",reason="disk-budget"}')).toBeUndefined();
  });
});

/**
 * A MemFileSystem that crashes at a chosen point: after `removesLeft` more file removals it
 * crashes (kill -9 or a power cut) and every later call (and the one that hit it) never settles,
 * as nothing runs after a crash.
 */
class CrashingFileSystem implements FileSystem {
  removesLeft = Infinity;
  dead = false;
  constructor(
    readonly inner: MemFileSystem,
    private readonly mode: CrashMode,
  ) {}
  private hang<T>(): Promise<T> {
    return new Promise<T>(() => {});
  }
  crashNow(): void {
    this.dead = true;
    this.inner.crash(this.mode);
  }
  open(path: string, mode: Parameters<FileSystem["open"]>[1]) {
    return this.dead ? this.hang<never>() : this.inner.open(path, mode);
  }
  list(dir: string) {
    return this.dead ? this.hang<string[]>() : this.inner.list(dir);
  }
  mkdirp(dir: string) {
    return this.dead ? this.hang<void>() : this.inner.mkdirp(dir);
  }
  async remove(path: string) {
    if (this.dead) return this.hang<void>();
    await this.inner.remove(path);
    if (--this.removesLeft <= 0) {
      this.crashNow();
      return this.hang<void>();
    }
  }
  rename(from: string, to: string) {
    return this.dead ? this.hang<void>() : this.inner.rename(from, to);
  }
  exists(path: string) {
    return this.dead ? this.hang<boolean>() : this.inner.exists(path);
  }
  readFile(path: string) {
    return this.dead ? this.hang<Uint8Array | null>() : this.inner.readFile(path);
  }
  syncDir(dir: string) {
    return this.dead ? this.hang<void>() : this.inner.syncDir(dir);
  }
}

describe("mirror-aware retention through power cuts (in-memory disk)", () => {
  const config = () => defaultConfig({ "data.dir": "/data", ...SEGMENT, "mirror.disk.budget.bytes": String(5 * VALUE_BYTES), "mirror.disk.full.policy": "drop-oldest" });

  /** Every offset the log no longer holds is mirrored or in the ledger: nothing lost unrecorded. */
  function lostUnrecorded(held: number[], end: number, mirroredBelow: number, ledger: readonly DroppedRange[]): number[] {
    const have = new Set(held);
    return range(mirroredBelow, end).filter((o) => !have.has(o) && !ledger.some((r) => r.from <= o && o < r.to));
  }

  // Each segment removal is three file removals (.log, .index, .timeindex), then one syncDir for
  // all: crash before any, then at several. A power cut undoes the unsynced unlinks; kill -9 keeps them.
  const points = (["process", "power"] as const).flatMap((mode) => [0, 1, 2, 3, 4, 5, 7, 9].map((removes) => ({ mode, removes })));
  for (const { mode, removes } of points) {
    it(`${mode === "power" ? "a power cut" : "kill -9"} ${removes === 0 ? "right after the ledger write" : `after ${removes} file removals`} loses nothing the ledger does not name, and the next pass finishes the job`, async () => {
      const mem = new MemFileSystem();
      const fs = new CrashingFileSystem(mem, mode);
      const clock = new ManualClock();
      const b = await Broker.open(config(), { fs, clock, logger: silentLogger });
      await b.createTopic("t", 1);
      await fill(b, "t", 0, 10);
      const source = new FakeMirrorSource();
      source.set("t", 0, 1);
      source.onRecord = () => {
        if (removes > 0) return;
        fs.crashNow();
        return new Promise<void>(() => {});
      };
      // Counted from here, whatever comes first: the ledger write must.
      if (removes > 0) fs.removesLeft = removes;
      b.setMirrorRetention(source);
      void b.runMaintenance();
      await waitFor("the crash", () => fs.dead);
      // The broker is gone with its process; a new one starts on what the disk kept.
      const again = await Broker.open(config(), { fs: mem, clock, logger: silentLogger });
      try {
        const held = await offsets(again, "t");
        expect(held[held.length - 1]).toBe(9);
        expect(lostUnrecorded(held, 10, 1, source.ranges("t"))).toEqual([]);
        expect(source.ranges("t").length).toBeGreaterThan(0);
        again.setMirrorRetention(source);
        source.onRecord = null;
        await again.runMaintenance();
        expect(await offsets(again, "t")).toEqual(range(6, 10));
      } finally {
        await again.close();
      }
    });
  }
});
