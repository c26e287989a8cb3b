/**
 * Crash recovery. On real files: torn and corrupt tails written by hand are cut on reopen and
 * everything before them is intact. On mem-fs: power cuts at random moments under concurrent
 * appends lose nothing that was acknowledged. Seeds are printed on failure and replay exactly.
 */
import { appendFile, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../src/runtime/clock.ts";
import { nodeFileSystem } from "../src/runtime/fs.ts";
import { MemFileSystem } from "../src/runtime/mem-fs.ts";
import { PartitionLog, type LogConfig } from "../src/storage/log.ts";
import { readBatchHeader, splitBatches } from "../src/storage/record-batch.ts";
import { segmentFileName } from "../src/storage/segment.ts";
import { batchesEnd, capturingLogger, logConfig, readAll, realFs, str, valuesBatch } from "./support/log-fixtures.ts";
import { rng } from "./support/random.ts";

describe("recovery of hand-made damage on real files", () => {
  let cleanup: (() => Promise<void>) | null = null;
  afterEach(async () => {
    await cleanup?.();
    cleanup = null;
  });

  async function setup(config: Partial<LogConfig> = {}) {
    const made = await realFs.make();
    cleanup = made.cleanup;
    const clock = new ManualClock();
    const open = async (override: Partial<LogConfig> = config) => {
      const cap = capturingLogger();
      const log = await PartitionLog.open(made.dir, logConfig(override), { fs: nodeFileSystem, clock, logger: cap.logger });
      return { log, lines: cap.lines };
    };
    const { log } = await open();
    for (let i = 0; i < 20; i++) await log.append(valuesBatch(`r${i}`, 3));
    await log.close();
    const segs = (await readdir(made.dir)).filter((n) => n.endsWith(".log")).sort();
    return { dir: made.dir, open, segs, last: join(made.dir, segs[segs.length - 1]!) };
  }

  const expected = Array.from({ length: 20 }, (_, i) => [0, 1, 2].map((j) => `r${i}-${j}`)).flat();

  it("cuts a partial batch at the end", async () => {
    const { open, last } = await setup();
    const sizeBefore = (await stat(last)).size;
    await appendFile(last, valuesBatch("torn", 3).subarray(0, 40));
    const { log, lines } = await open();
    expect(log.logEndOffset).toBe(60);
    expect(log.highWatermark).toBe(60);
    expect((await readAll(log)).map((r) => str(r.value))).toEqual(expected);
    expect((await stat(last)).size).toBe(sizeBefore);
    expect(lines.find((l) => l.msg === "truncated a torn or corrupt tail")).toMatchObject({ level: "warn", bytesDropped: 40 });
    expect((await log.append(valuesBatch("after", 1))).baseOffset).toBe(60);
    await log.close();
  });

  it("cuts a last batch with a flipped bit", async () => {
    const { open, last } = await setup();
    const bytes = new Uint8Array(await readFile(last));
    const lastBatch = splitBatches(bytes).pop()!;
    const at = lastBatch.byteOffset + lastBatch.length - 3;
    bytes[at]! ^= 0x10;
    await writeFile(last, bytes);
    const { log, lines } = await open();
    expect(log.logEndOffset).toBe(57);
    expect((await readAll(log)).map((r) => str(r.value))).toEqual(expected.slice(0, 57));
    expect(lines.find((l) => l.msg === "truncated a torn or corrupt tail")).toMatchObject({ bytesDropped: lastBatch.length });
    await log.close();
  });

  it("cuts random garbage after the last batch", async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const { open, last, dir } = await setup();
      const r = rng(seed);
      const garbage = Uint8Array.from({ length: 1 + Math.floor(r() * 300) }, () => Math.floor(r() * 256));
      await appendFile(last, garbage);
      const { log } = await open();
      expect(log.logEndOffset, `seed ${seed}`).toBe(60);
      expect((await readAll(log)).map((x) => str(x.value)), `seed ${seed}`).toEqual(expected);
      await log.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("never serves a batch whose CRC fails, and truncates a corrupt middle segment on reopen", async () => {
    const { open, dir, segs } = await setup({ segmentBytes: 400 });
    expect(segs.length).toBeGreaterThan(3);
    const victim = join(dir, segs[1]!);
    const bytes = new Uint8Array(await readFile(victim));
    const second = splitBatches(bytes)[1]!;
    bytes[second.byteOffset + second.length - 1]! ^= 0x01;
    await writeFile(victim, bytes);
    const corruptOffset = readBatchHeader(second).baseOffset;

    // Indexes are intact, so open trusts the segment; the read still checks the CRC.
    let { log } = await open();
    await expect(log.read(corruptOffset, 1 << 20)).rejects.toMatchObject({ code: "CORRUPT_RECORD" });
    await expect(readAll(log, corruptOffset - 1, 1 << 20)).rejects.toMatchObject({ code: "CORRUPT_RECORD" });
    await log.close();

    // With its index gone the segment is scanned, found corrupt, and the log cut there.
    await rm(join(dir, segs[1]!.replace(".log", ".index")));
    let lines: Record<string, unknown>[];
    ({ log, lines } = await open({ segmentBytes: 400 }));
    expect(log.logEndOffset).toBe(corruptOffset);
    expect(log.segmentCount).toBe(2);
    expect((await readAll(log)).map((r) => str(r.value))).toEqual(expected.slice(0, corruptOffset));
    const warning = lines.find((l) => l.msg?.toString().startsWith("corrupt segment in the middle"));
    expect(warning).toMatchObject({ level: "warn", segmentsDeleted: segs.length - 2 });
    expect((await readdir(dir)).filter((n) => n.endsWith(".log")).length).toBe(2);
    await log.close();
  });

  it("removes leftovers of interrupted compaction and index writes", async () => {
    const { open, dir, segs } = await setup();
    await writeFile(join(dir, `${segs[0]}.cleaned`), new Uint8Array(10));
    await writeFile(join(dir, `${segmentFileName(0, ".index")}.tmp`), new Uint8Array(3));
    await writeFile(join(dir, segmentFileName(999, ".timeindex")), new Uint8Array(12));
    const { log } = await open();
    expect((await readAll(log)).length).toBe(60);
    expect((await readdir(dir)).sort()).toEqual([segmentFileName(0, ".index"), segmentFileName(0, ".log"), segmentFileName(0, ".timeindex")]);
    await log.close();
  });
});

describe("power cuts on mem-fs under concurrent appends", () => {
  interface Acked {
    offset: number;
    bytes: Uint8Array;
  }

  async function runOnce(seed: number, flush: LogConfig["flush"]): Promise<{ acked: number }> {
    const r = rng(seed);
    const fs = new MemFileSystem();
    const clock = new ManualClock();
    // Preallocation off, small (extensions often) or the default (capped at segment.bytes here):
    // mem-fs undoes a write into synced extended space whole, so torn tails come from the others.
    const preallocateBytes = [0, 256, undefined][seed % 3];
    const config = logConfig({ segmentBytes: 2000 + Math.floor(r() * 4000), indexIntervalBytes: 256, flush, ...(preallocateBytes === undefined ? {} : { preallocateBytes }) });
    const quiet = capturingLogger().logger;
    const acked: Acked[] = [];
    let log = await PartitionLog.open("/d/p", config, { fs, clock, logger: quiet });
    for (let round = 0; round < 3; round++) {
      let stop = false;
      const crashAfter = 5 + Math.floor(r() * 120);
      let settled = 0;
      const producer = async (p: number) => {
        let seq = 0;
        while (!stop) {
          const batch = valuesBatch(`s${seed}r${round}p${p}n${seq++}`, 1 + Math.floor(r() * 5));
          try {
            const { baseOffset } = await log.append(batch);
            if (!stop) acked.push({ offset: baseOffset, bytes: batch.slice() });
          } catch {
            return;
          } finally {
            settled++;
            if (settled === crashAfter && !stop) {
              stop = true;
              fs.crash("power", { random: r, tornTail: r() < 0.7 });
            }
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, (_, p) => producer(p)));
      log = await PartitionLog.open("/d/p", config, { fs, clock, logger: quiet });
      expect(log.highWatermark, `seed ${seed}`).toBe(log.logEndOffset);
      const stored = new Map<number, Uint8Array>();
      let offset = log.logStartOffset;
      while (offset < log.highWatermark) {
        const { batches } = await log.read(offset, 1 << 16);
        for (const b of splitBatches(batches)) {
          const h = readBatchHeader(b);
          stored.set(h.baseOffset, b);
          offset = h.baseOffset + h.lastOffsetDelta + 1;
        }
      }
      for (const a of acked) {
        const got = stored.get(a.offset);
        expect(got, `seed ${seed}: acknowledged batch at ${a.offset} lost`).toBeDefined();
        expect(got, `seed ${seed}: batch at ${a.offset} differs`).toEqual(a.bytes);
      }
    }
    await log.close();
    return { acked: acked.length };
  }

  it("keeps every acknowledged batch byte-equal (flush batch)", async () => {
    let total = 0;
    for (let seed = 1; seed <= 25; seed++) total += (await runOnce(seed, { mode: "batch" })).acked;
    expect(total).toBeGreaterThan(200);
  });

  it("keeps every acknowledged batch byte-equal (flush interval, by bytes)", async () => {
    let total = 0;
    for (let seed = 100; seed <= 110; seed++) total += (await runOnce(seed, { mode: "interval", intervalMs: 1_000_000, bytes: 600 })).acked;
    expect(total).toBeGreaterThan(50);
  });

  it("keeps acknowledged writes through kill -9 even without syncs (flush none)", async () => {
    const fs = new MemFileSystem();
    const clock = new ManualClock();
    const config = logConfig({ flush: { mode: "none" }, segmentBytes: 3000 });
    const log = await PartitionLog.open("/d/p", config, { fs, clock });
    const batches = Array.from({ length: 40 }, (_, i) => valuesBatch(`n${i}`, 2));
    await Promise.all(batches.map((b) => log.append(b)));
    expect(fs.datasyncs).toBeLessThan(10); // roll syncs only
    fs.crash("process");
    const again = await PartitionLog.open("/d/p", config, { fs, clock });
    expect((await readAll(again)).length).toBe(80);
    await again.close();
  });
});

describe("space the active segment is extended by (preallocateBytes)", () => {
  let cleanup: (() => Promise<void>) | null = null;
  afterEach(async () => {
    await cleanup?.();
    cleanup = null;
  });

  /** A log on real files in a fresh dir: `count` batches of `records` values `${prefix}${i}-j`, then closed. */
  async function closedLog(config: LogConfig, prefix: string, count: number, records: number) {
    const made = await realFs.make();
    cleanup = made.cleanup;
    const clock = new ManualClock();
    const log = await PartitionLog.open(made.dir, config, { fs: nodeFileSystem, clock, logger: capturingLogger().logger });
    for (let i = 0; i < count; i++) await log.append(valuesBatch(`${prefix}${i}`, records));
    await log.close();
    /** Open it again, with the recovery lines it logged. */
    const reopen = async () => {
      const cap = capturingLogger();
      return { log: await PartitionLog.open(made.dir, config, { fs: nodeFileSystem, clock, logger: cap.logger }), lines: cap.lines };
    };
    return { dir: made.dir, reopen };
  }

  /** Sizes of a directory's .log files, and of the batches in each (what they must shrink to). */
  async function sizes(dir: string): Promise<{ file: number; batches: number }[]> {
    const out: { file: number; batches: number }[] = [];
    for (const n of (await readdir(dir)).filter((x) => x.endsWith(".log")).sort()) {
      const bytes = new Uint8Array(await readFile(join(dir, n)));
      out.push({ file: bytes.length, batches: batchesEnd(bytes) });
    }
    return out;
  }

  it("extends the active segment ahead of its appends, cuts a segment back when it rolls and the active one on close", async () => {
    const made = await realFs.make();
    cleanup = made.cleanup;
    const clock = new ManualClock();
    const config = logConfig({ segmentBytes: 2048, preallocateBytes: 512 });
    const log = await PartitionLog.open(made.dir, config, { fs: nodeFileSystem, clock, logger: capturingLogger().logger });
    for (let i = 0; i < 60; i++) await log.append(valuesBatch(`p${i}`, 4));
    const open = await sizes(made.dir);
    expect(open.length).toBeGreaterThan(2);
    for (const s of open.slice(0, -1)) expect(s.file).toBe(s.batches);
    const active = open.at(-1)!;
    expect(active.file).toBeGreaterThan(active.batches);
    expect(active.file).toBeLessThanOrEqual(Math.max(active.batches, 2048));
    await log.close();
    for (const s of await sizes(made.dir)) expect(s.file).toBe(s.batches);
  });

  it("reopens after a crash with zeros after the batches: cut without a warning, every batch kept", async () => {
    const fs = new MemFileSystem();
    const clock = new ManualClock();
    const config = logConfig({ preallocateBytes: 8192 });
    const log = await PartitionLog.open("/d/p", config, { fs, clock });
    for (let i = 0; i < 10; i++) await log.append(valuesBatch(`c${i}`, 2));
    const path = `/d/p/${segmentFileName(0, ".log")}`;
    const written = (await fs.readFile(path))!;
    fs.crash("power");
    const onDisk = (await fs.readFile(path))!;
    expect(onDisk.length).toBe(written.length); // the synced extension survived
    const cap = capturingLogger();
    const again = await PartitionLog.open("/d/p", config, { fs, clock, logger: cap.logger });
    expect((await readAll(again)).map((r) => str(r.value))).toEqual(Array.from({ length: 10 }, (_, i) => [`c${i}-0`, `c${i}-1`]).flat());
    expect(cap.lines.filter((l) => l.level === "warn")).toEqual([]);
    const cut = (await fs.readFile(path))!;
    expect(cut.length).toBeLessThan(onDisk.length);
    expect(splitBatches(cut).reduce((a, b) => a + b.length, 0)).toBe(cut.length);
    expect((await again.append(valuesBatch("after", 1))).baseOffset).toBe(20);
    await again.close();
  });

  it("a closed segment with zeros after its batches (its cut lost) keeps every later segment", async () => {
    const { dir, reopen } = await closedLog(logConfig({ segmentBytes: 1024 }), "m", 40, 3);
    const segs = (await readdir(dir)).filter((n) => n.endsWith(".log")).sort();
    expect(segs.length).toBeGreaterThan(2);
    const first = join(dir, segs[0]!);
    const bytes = new Uint8Array(await readFile(first));
    await writeFile(first, new Uint8Array([...bytes, ...new Uint8Array(3000)]));
    // Its index files gone too, so recovery scans it.
    await rm(first.replace(/\.log$/, ".index"));
    await rm(first.replace(/\.log$/, ".timeindex"));
    const { log, lines } = await reopen();
    expect(lines.filter((l) => l.level === "warn")).toEqual([]);
    expect((await readdir(dir)).filter((n) => n.endsWith(".log")).sort()).toEqual(segs);
    expect((await stat(first)).size).toBe(bytes.length);
    expect((await readAll(log)).length).toBe(120);
    await log.close();
  });

  it("a torn batch in the extended space is cut, with the torn-tail warning", async () => {
    const { dir, reopen } = await closedLog(logConfig({ preallocateBytes: 8192 }), "t", 5, 2);
    const last = join(dir, segmentFileName(0, ".log"));
    const bytes = new Uint8Array(await readFile(last));
    const torn = new Uint8Array(8192);
    torn.set(valuesBatch("torn", 3).subarray(0, 50)); // a batch's first 50 bytes, zeros after
    await writeFile(last, new Uint8Array([...bytes, ...torn]));
    const { log: again, lines } = await reopen();
    expect(lines.find((l) => l.msg === "truncated a torn or corrupt tail")).toMatchObject({ level: "warn" });
    expect((await stat(last)).size).toBe(bytes.length);
    expect((await readAll(again)).length).toBe(10);
    await again.close();
  });
});

describe("mem-fs durability model", () => {
  it("drops unsynced bytes and unsynced directory entries on a power cut, and tears tails", async () => {
    const fs = new MemFileSystem();
    await fs.mkdirp("/a");
    const h = await fs.open("/a/f", "create");
    await h.write(Uint8Array.of(1, 2, 3), null);
    await fs.syncDir("/a");
    await h.datasync();
    await h.write(Uint8Array.of(9), 0); // overwrite of synced data: undone
    await h.write(Uint8Array.of(4, 5, 6, 7), null); // unsynced tail
    const g = await fs.open("/a/g", "create"); // entry never synced: gone
    await g.write(Uint8Array.of(1), null);
    await g.datasync();
    await fs.rename("/a/f", "/a/h"); // rename never synced: undone
    fs.crash("power");
    await expect(h.read(new Uint8Array(1), 0, 1, 0)).rejects.toThrow(/crash/);
    expect(await fs.list("/a")).toEqual(["f"]);
    expect(await fs.readFile("/a/f")).toEqual(Uint8Array.of(1, 2, 3));

    const k = await fs.open("/a/f", "write");
    await k.write(Uint8Array.of(4, 5, 6, 7, 8, 9, 10, 11), null);
    fs.crash("power", { random: () => 0.5, tornTail: true });
    expect(await fs.readFile("/a/f")).toEqual(Uint8Array.of(1, 2, 3, 4, 5, 6, 7));
    const m = await fs.open("/a/f", "write");
    await m.truncate(1);
    fs.crash("process");
    expect(await fs.readFile("/a/f")).toEqual(Uint8Array.of(1));
  });
});
