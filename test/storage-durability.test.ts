/**
 * Group commit, backpressure and disk failure, on real files seen through a counting wrapper.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ManualClock } from "../src/runtime/clock.ts";
import { nodeFileSystem } from "../src/runtime/fs.ts";
import { PartitionLog, type LogConfig } from "../src/storage/log.ts";
import { CountingFileSystem } from "./support/counting-fs.ts";
import { capturingLogger, logConfig, readAll, realFs, until, valuesBatch } from "./support/log-fixtures.ts";

describe("group commit, backpressure and disk failures", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let fs: CountingFileSystem;
  const logs: PartitionLog[] = [];

  beforeEach(async () => {
    ({ dir, cleanup } = await realFs.make());
    fs = new CountingFileSystem(nodeFileSystem);
  });
  afterEach(async () => {
    fs.syncGate = null;
    fs.failSyncs = false;
    fs.failWrites = false;
    await Promise.allSettled(logs.splice(0).map((l) => l.close()));
    await cleanup();
  });

  async function open(config: Partial<LogConfig> = {}): Promise<PartitionLog> {
    const log = await PartitionLog.open(dir, logConfig(config), { fs, clock: new ManualClock(), logger: capturingLogger().logger });
    logs.push(log);
    return log;
  }

  it("shares one fdatasync among the appends that arrive while a sync runs", async () => {
    const log = await open();
    const syncsBefore = fs.datasyncs;
    const writesBefore = fs.writes;
    const n = 200;
    const all = await Promise.all(Array.from({ length: n }, (_, i) => log.append(valuesBatch(`g${i}`, 5))));
    expect(all.map((r) => r.baseOffset)).toEqual(Array.from({ length: n }, (_, i) => i * 5));
    const syncs = fs.datasyncs - syncsBefore;
    expect(syncs).toBeGreaterThanOrEqual(1);
    expect(syncs).toBeLessThanOrEqual(3);
    expect(fs.writes - writesBefore).toBeLessThanOrEqual(3); // coalesced
    expect((await readAll(log)).length).toBe(n * 5);
  });

  it("queues appends behind a running sync and flushes them together in the next one", async () => {
    const log = await open();
    let release!: () => void;
    fs.syncGate = new Promise((r) => (release = r));
    const first = log.append(valuesBatch("first", 1));
    await until(() => fs.syncsWaiting === 1, "the first append's sync to start");
    const base = fs.datasyncs;
    const rest = Array.from({ length: 50 }, (_, i) => log.append(valuesBatch(`r${i}`, 1)));
    expect(log.highWatermark).toBe(0);
    release();
    fs.syncGate = null;
    await Promise.all([first, ...rest]);
    expect(fs.datasyncs - base).toBe(2);
    expect(log.highWatermark).toBe(51);
  });

  it("refuses with OVERLOADED past 4x maxPendingBytes, and the accepted appends still land", async () => {
    const log = await open({ maxPendingBytes: 65536 });
    let release!: () => void;
    fs.syncGate = new Promise((r) => (release = r));
    const accepted: Promise<unknown>[] = [];
    let overloaded: unknown = null;
    for (let i = 0; i < 10_000 && overloaded === null; i++) {
      const p = log.append(valuesBatch(`o${i}`, 20));
      p.catch((e: unknown) => (overloaded = e));
      accepted.push(p);
      await Promise.resolve();
    }
    await until(() => overloaded !== null, "an OVERLOADED refusal");
    expect(overloaded).toMatchObject({ code: "OVERLOADED", retriable: true });
    release();
    fs.syncGate = null;
    const results = await Promise.allSettled(accepted);
    const ok = results.filter((r) => r.status === "fulfilled").length;
    expect(ok).toBe(results.length - 1);
    expect(ok * 300).toBeGreaterThan(4 * 65536 * 0.8);
    expect(log.highWatermark).toBe(log.logEndOffset);
  });

  it("rejects every append of a failed sync with STORAGE_ERROR, never advances the high watermark, and refuses more", async () => {
    const log = await open();
    await log.append(valuesBatch("ok", 2));
    fs.failSyncs = true;
    const seen: number[] = [];
    log.onHighWatermark((hw) => seen.push(hw));
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => log.append(valuesBatch(`f${i}`, 1))));
    for (const r of results) expect(r).toMatchObject({ status: "rejected", reason: { code: "STORAGE_ERROR" } });
    expect(log.highWatermark).toBe(2);
    expect(seen).toEqual([]);
    expect(log.isFailed).toBe(true);
    fs.failSyncs = false;
    await expect(log.append(valuesBatch("later", 1))).rejects.toMatchObject({ code: "STORAGE_ERROR" });
    expect((await readAll(log)).length).toBe(2);
    await expect(log.compact()).rejects.toMatchObject({ code: "STORAGE_ERROR" });
  });

  it("rejects appends whose write failed", async () => {
    const log = await open();
    fs.failWrites = true;
    await expect(log.append(valuesBatch("w", 1))).rejects.toMatchObject({ code: "STORAGE_ERROR" });
    expect(log.highWatermark).toBe(0);
    fs.failWrites = false;
    await expect(log.append(valuesBatch("w", 1))).rejects.toMatchObject({ code: "STORAGE_ERROR" });
  });

  it("refuses appends after close with NOT_READY", async () => {
    const log = await open();
    await log.append(valuesBatch("c", 1));
    await log.close();
    await expect(log.append(valuesBatch("c", 1))).rejects.toMatchObject({ code: "NOT_READY" });
  });
});
