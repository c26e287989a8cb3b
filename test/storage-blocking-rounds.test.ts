/**
 * Blocking rounds (storage/flusher.ts): a lone append is written and synced on the event loop,
 * and anything that shows concurrency (several appends in a round, another log on the thread
 * pool or blocking just now, a slow disk) sends rounds back through the pool.
 *
 * The policy runs against a recording FlushTarget and a manual clock; then on real files, where
 * the handles' blocking calls must keep everything a lone append was acknowledged for.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TributaryError } from "../src/errors.ts";
import { ManualClock } from "../src/runtime/clock.ts";
import { nodeFileSystem } from "../src/runtime/fs.ts";
import { BlockingRounds, GroupCommit, type FlushTarget, type PendingAppend } from "../src/storage/flusher.ts";
import { PartitionLog, type LogConfig } from "../src/storage/log.ts";
import { CountingFileSystem } from "./support/counting-fs.ts";
import { capturingLogger, logConfig, readAll, realFs, str, valuesBatch } from "./support/log-fixtures.ts";

const STREAK = BlockingRounds.STREAK;

/** Records how each round went; `blockingMs` is what its blocking rounds report the disk took. */
class RecordingTarget implements FlushTarget {
  readonly rounds: ("pool" | "blocking")[] = [];
  readonly events: string[] = [];
  blockingMs = 0.5;
  failBlocking = false;
  /** While set, pool writes wait for it (a round held on the thread pool). */
  hold: Promise<void> | null = null;
  failure: unknown = null;

  async write(items: PendingAppend[]): Promise<void> {
    this.rounds.push("pool");
    this.events.push(`pool write ${items.length}`);
    if (this.hold) await this.hold;
  }
  async sync(): Promise<void> {}
  writeSyncNow(items: PendingAppend[]): number | null {
    this.events.push(`blocking ${items.length}`);
    if (this.failBlocking) throw Object.assign(new Error("EIO: simulated failure"), { code: "EIO" });
    this.rounds.push("blocking");
    return this.blockingMs;
  }
  durable(): void {}
  failed(e: unknown): void {
    this.failure = e;
  }
}

function commit(target: FlushTarget, clock: ManualClock, rounds: BlockingRounds): GroupCommit {
  return new GroupCommit(target, clock, () => ({ flush: { mode: "batch" }, maxPendingBytes: 1 << 20 }), rounds);
}

/** `n` appends one after another, each waiting for the last: every round holds one. */
/** Two logs of one process: one clock, one shared BlockingRounds, a recording target each. */
function twoLogs() {
  const clock = new ManualClock();
  const rounds = new BlockingRounds(clock, async () => {});
  const a = new RecordingTarget();
  const b = new RecordingTarget();
  return { clock, a, b, logA: commit(a, clock, rounds), logB: commit(b, clock, rounds) };
}

async function lone(gc: GroupCommit, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await gc.enqueue(new Uint8Array(10), i, i, 0);
}

describe("blocking rounds: the policy", () => {
  it("blocks once a log has had STREAK lone rounds, and goes back to the pool for a round of several", async () => {
    const clock = new ManualClock();
    const target = new RecordingTarget();
    const gc = commit(target, clock, new BlockingRounds(clock, async () => {}));
    await lone(gc, STREAK + 3);
    expect(target.rounds).toEqual([...Array(STREAK).fill("pool"), "blocking", "blocking", "blocking"]);
    target.rounds.length = 0;
    await Promise.all([0, 1, 2, 3].map((i) => gc.enqueue(new Uint8Array(10), i, i, 0)));
    await lone(gc, STREAK + 1);
    // the round of four went through the pool and restarted the streak
    expect(target.rounds).toEqual(["pool", ...Array(STREAK).fill("pool"), "blocking"]);
  });

  it("puts appends that arrive in the turn before a blocking round into the round, which then goes through the pool", async () => {
    const clock = new ManualClock();
    let gc!: GroupCommit;
    let arriving = 0;
    const joined: Promise<void>[] = [];
    // the event loop's extra turn: `arriving` requests that were waiting get parsed and appended
    const rounds = new BlockingRounds(clock, async () => {
      for (; arriving > 0; arriving--) joined.push(gc.enqueue(new Uint8Array(10), 100 + arriving, 100 + arriving, 0));
    });
    const target = new RecordingTarget();
    gc = commit(target, clock, rounds);
    await lone(gc, STREAK);
    target.events.length = 0;
    arriving = 3;
    await gc.enqueue(new Uint8Array(10), 50, 50, 0);
    await Promise.all(joined);
    expect(target.events).toEqual(["pool write 4"]);
    await lone(gc, STREAK + 1); // the round of four restarted the streak
    expect(target.rounds.slice(-(STREAK + 1))).toEqual([...Array(STREAK).fill("pool"), "blocking"]);
  });

  it("does not block while another log's round is on the thread pool", async () => {
    const { a: busy, b: quiet, logA: busyLog, logB: quietLog } = twoLogs();
    let release!: () => void;
    busy.hold = new Promise((r) => (release = r));
    const held = Promise.all([0, 1].map((i) => busyLog.enqueue(new Uint8Array(10), i, i, 0)));
    await lone(quietLog, STREAK + 3);
    expect(quiet.rounds).toEqual(Array(STREAK + 3).fill("pool"));
    release();
    await held;
    quiet.rounds.length = 0;
    await lone(quietLog, 1);
    expect(quiet.rounds).toEqual(["blocking"]);
  });

  it("does not block within SPACING_MS of another log's blocking round", async () => {
    const { clock, a, b, logA, logB } = twoLogs();
    await lone(logA, STREAK + 1);
    expect(a.rounds.at(-1)).toBe("blocking");
    await lone(logB, STREAK + 2);
    expect(b.rounds).toEqual(Array(STREAK + 2).fill("pool"));
    clock.advance(BlockingRounds.SPACING_MS);
    await lone(logB, 1);
    expect(b.rounds.at(-1)).toBe("blocking");
    // and now A is the one that waits its turn
    await lone(logA, 1);
    expect(a.rounds.at(-1)).toBe("pool");
  });

  it("backs off for BACKOFF_MS after SLOW_ROUNDS slow blocking rounds, and again after one more slow round", async () => {
    const clock = new ManualClock();
    const target = new RecordingTarget();
    const gc = commit(target, clock, new BlockingRounds(clock, async () => {}));
    await lone(gc, STREAK);
    target.rounds.length = 0;
    target.blockingMs = BlockingRounds.SLOW_MS;
    await lone(gc, BlockingRounds.SLOW_ROUNDS - 1);
    target.blockingMs = 0.5; // a fast round between slow ones: not a slow disk yet
    await lone(gc, 1);
    target.blockingMs = BlockingRounds.SLOW_MS;
    await lone(gc, BlockingRounds.SLOW_ROUNDS + 2);
    const slow = BlockingRounds.SLOW_ROUNDS;
    expect(target.rounds).toEqual([...Array(slow).fill("blocking"), ...Array(slow).fill("blocking"), "pool", "pool"]);
    target.rounds.length = 0;
    clock.advance(BlockingRounds.BACKOFF_MS - 1);
    await lone(gc, 1);
    expect(target.rounds).toEqual(["pool"]);
    clock.advance(1);
    await lone(gc, 3); // the first round after the backoff blocks, is slow, and backs off again
    expect(target.rounds).toEqual(["pool", "blocking", "pool", "pool"]);
  });

  it("runs the before-block hooks before the blocking write", async () => {
    const clock = new ManualClock();
    const rounds = new BlockingRounds(clock, async () => {});
    const target = new RecordingTarget();
    const unhook = rounds.onBeforeBlock(() => target.events.push("hook"));
    await lone(commit(target, clock, rounds), STREAK + 1);
    expect(target.events.slice(-2)).toEqual(["hook", "blocking 1"]);
    unhook();
  });

  it("fails the log when a blocking write throws: the append and everything after it are refused", async () => {
    const clock = new ManualClock();
    const target = new RecordingTarget();
    const gc = commit(target, clock, new BlockingRounds(clock, async () => {}));
    await lone(gc, STREAK);
    target.failBlocking = true;
    await expect(gc.enqueue(new Uint8Array(10), 9, 9, 0)).rejects.toMatchObject({ code: "STORAGE_ERROR" });
    expect(target.failure).toBeInstanceOf(TributaryError);
    await expect(gc.enqueue(new Uint8Array(10), 10, 10, 0)).rejects.toMatchObject({ code: "STORAGE_ERROR" });
  });
});

describe("blocking rounds on real files", () => {
  let cleanup: (() => Promise<void>) | null = null;
  let dir = "";
  let fs: CountingFileSystem;
  const clock = new ManualClock();
  beforeEach(async () => {
    const made = await realFs.make();
    ({ dir, cleanup } = made);
    fs = new CountingFileSystem(nodeFileSystem, { blocking: true });
  });
  afterEach(async () => {
    await cleanup?.();
    cleanup = null;
  });

  function openLog(config: Partial<LogConfig> = {}): Promise<PartitionLog> {
    return PartitionLog.open(dir, logConfig({ flush: { mode: "batch" }, ...config }), { fs, clock, logger: capturingLogger().logger, blockingRounds: new BlockingRounds(clock, async () => {}) });
  }

  it("writes and syncs lone appends with blocking calls, and keeps every acknowledged one across reopen", async () => {
    let log = await openLog();
    const n = 20;
    for (let i = 0; i < n; i++) await log.append(valuesBatch(`v${i}`, 1));
    // Every append after the first STREAK blocks, unless the disk is slow right now (other tests
    // sync too): then SLOW_ROUNDS of them block before the log backs off to the pool.
    expect(fs.blockingWrites).toBeGreaterThanOrEqual(BlockingRounds.SLOW_ROUNDS);
    expect(fs.blockingWrites).toBeLessThanOrEqual(n - STREAK);
    expect(fs.blockingSyncs).toBe(fs.blockingWrites);
    const expected = Array.from({ length: n }, (_, i) => `v${i}-0`);
    expect((await readAll(log)).map((r) => str(r.value))).toEqual(expected);
    await log.close();
    log = await openLog();
    expect((await readAll(log)).map((r) => str(r.value))).toEqual(expected);
    await log.close();
  });

  it("rolls a segment through the pool: a lone append that does not fit the active segment is not written blocking", async () => {
    const log = await openLog({ segmentBytes: 300 });
    for (let i = 0; i < 12; i++) await log.append(valuesBatch(`v${i}`, 1));
    expect(fs.blockingWrites).toBeGreaterThan(0);
    expect(fs.blockingWrites).toBeLessThan(12 - STREAK); // the rolls went through the pool
    expect(log.segmentInfos().length).toBeGreaterThan(2);
    expect((await readAll(log)).map((r) => str(r.value))).toEqual(Array.from({ length: 12 }, (_, i) => `v${i}-0`));
    await log.close();
  });

  it("fails the log on a failed blocking sync, acknowledging nothing it did not sync", async () => {
    const log = await openLog();
    for (let i = 0; i < STREAK; i++) await log.append(valuesBatch(`v${i}`, 1));
    fs.failSyncs = true;
    await expect(log.append(valuesBatch("lost", 1))).rejects.toMatchObject({ code: "STORAGE_ERROR" });
    expect(log.highWatermark).toBe(STREAK);
    await expect(log.append(valuesBatch("after", 1))).rejects.toMatchObject({ code: "STORAGE_ERROR" });
    fs.failSyncs = false;
    await log.close().catch(() => {});
  });
});
