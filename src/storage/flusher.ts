/**
 * Group commit: the one writer of a partition log. Appends queue here in offset order; one loop
 * writes everything queued (the log coalesces it into as few write calls as it can), syncs once,
 * then acknowledges all of it. Appends that arrive while a sync runs wait for the next round, so
 * N concurrent appends cost about two fdatasyncs, not N.
 *
 * Flush policies (see FlushPolicy in log.ts):
 * - "batch": write and sync as soon as anything is queued.
 * - "interval": write as things arrive, sync when `intervalMs` has passed since the first unsynced
 *   write or `bytes` (capped by maxPendingBytes) are unsynced, whichever is first; appends are
 *   acknowledged by that sync.
 * - "none": acknowledge once written to the OS; never sync on this path.
 *
 * A failed write or sync rejects everything written in that round and everything queued, and the
 * flusher refuses all later work: the log is failed, and nothing unwritten is ever acknowledged.
 *
 * Pending bytes (queued, being written, or written but not yet synced) are bounded by the log,
 * which refuses appends beyond 4x maxPendingBytes; past 1x they simply wait their turn here.
 */
import { TributaryError, isTributaryError } from "../errors.ts";
import { systemClock, type Clock } from "../runtime/clock.ts";
import type { FlushPolicy } from "./log.ts";

const YIELD_TURNS = 8;

export interface PendingAppend {
  bytes: Uint8Array;
  baseOffset: number;
  lastOffset: number;
  maxTimestamp: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** What the flusher drives: the log's write and sync steps, and what to do once bytes are durable. */
export interface FlushTarget {
  /** Write these, in order, to the OS (rolling segments as needed). */
  write(items: PendingAppend[]): Promise<void>;
  /** fdatasync every file written since the last sync. */
  sync(): Promise<void>;
  /**
   * Write and sync these with blocking calls, if it can (see BlockingRounds); the milliseconds
   * the disk took, or null when it did nothing.
   */
  writeSyncNow?(items: PendingAppend[]): number | null;
  /** These items are durable per the policy: advance the high watermark past them. */
  durable(items: PendingAppend[]): void;
  /** A write or sync failed: the log refuses everything from now on. */
  failed(error: unknown): void;
}

/**
 * When a round may block the event loop. On a lightly used log, an append that waits alone costs
 * two thread-pool round trips (write, then fdatasync), each a wake-up of a sleeping thread and
 * then of the event loop: on the 2-core VM of bench/RESULTS.md that was as long as the fdatasync
 * itself. A lone append is therefore written and synced with blocking calls on the event loop
 * when all of these hold, and through the thread pool otherwise:
 *
 * - the flush mode is batch, and this round and the STREAK rounds before it held one append
 *   each, and no other append arrived when the event loop was given one more turn before the
 *   round (a blocked loop reads nothing, so requests that were waiting show up only there: they
 *   join the round, which then goes through the pool);
 * - no round of any log of the process is on the thread pool (a blocked loop would hold it up),
 *   and no other log ran a blocking round in the last SPACING_MS (two busy logs: their syncs
 *   should overlap on the pool, not queue on the loop);
 * - this log's last SLOW_ROUNDS blocking rounds did not all take SLOW_MS or more: a slow disk
 *   (an SD card) does not block the loop again for BACKOFF_MS, and after that one more slow
 *   round is enough to back off again.
 *
 * One instance is shared by every log of a process (`processBlockingRounds`, on the system
 * clock); the backoff is timed by each log's own clock.
 */
export class BlockingRounds {
  static readonly STREAK = 3;
  static readonly SPACING_MS = 5;
  static readonly SLOW_MS = 2;
  static readonly SLOW_ROUNDS = 3;
  static readonly BACKOFF_MS = 10_000;
  /** Rounds on the thread pool now, over all logs. */
  private pooled = 0;
  private last: { owner: object; atMs: number } | null = null;
  /** Called before a round blocks, so what is ready to leave (the Raft host's outbox) goes first. */
  private readonly beforeBlock = new Set<() => void>();

  /**
   * `nextTurn` resolves after the event loop has polled for I/O once (requests already received
   * but not yet parsed then reach the log): the default is the clock's zero timer, which the
   * system clock runs as the next macrotask.
   */
  constructor(
    private readonly clock: Clock,
    readonly nextTurn: () => Promise<void> = () => new Promise((resolve) => clock.setTimer(0, resolve)),
  ) {}

  /** `fn` runs before every blocking round; returns its removal. */
  onBeforeBlock(fn: () => void): () => void {
    this.beforeBlock.add(fn);
    return () => this.beforeBlock.delete(fn);
  }

  mayBlock(owner: object): boolean {
    if (this.pooled > 0) return false;
    return !(this.last && this.last.owner !== owner && this.clock.now() - this.last.atMs < BlockingRounds.SPACING_MS);
  }

  willBlock(): void {
    for (const fn of this.beforeBlock) fn();
  }

  blocked(owner: object): void {
    this.last = { owner, atMs: this.clock.now() };
  }

  pool(): () => void {
    this.pooled++;
    let done = false;
    return () => {
      if (!done) this.pooled--;
      done = true;
    };
  }
}

export const processBlockingRounds = new BlockingRounds(systemClock);

export class GroupCommit {
  private queue: PendingAppend[] = [];
  /** Written but not yet synced (interval mode). */
  private unsynced: PendingAppend[] = [];
  private unsyncedBytes = 0;
  private syncWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private idleWaiters: (() => void)[] = [];
  private running = false;
  private timerDue = false;
  private cancelTimer: (() => void) | null = null;
  private error: unknown = null;
  /** Bytes appended and not yet durable. */
  pendingBytes = 0;

  /** Rounds of one append in a row, this one included. */
  private lone = 0;
  /** Blocking rounds in a row that took SLOW_MS or more. */
  private slowRounds = 0;
  /** No blocking rounds before this (ms): the last ones found the disk slow. */
  private slowUntilMs = 0;

  constructor(
    private readonly target: FlushTarget,
    private readonly clock: Clock,
    private readonly settings: () => { flush: FlushPolicy; maxPendingBytes: number },
    private readonly blocking: BlockingRounds = processBlockingRounds,
  ) {}

  /** Queue one append (offset already assigned); resolves once durable per the policy. */
  enqueue(bytes: Uint8Array, baseOffset: number, lastOffset: number, maxTimestamp: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.error !== null) {
        reject(this.error);
        return;
      }
      this.queue.push({ bytes, baseOffset, lastOffset, maxTimestamp, resolve, reject });
      this.pendingBytes += bytes.length;
      this.kick();
    });
  }

  /** Write and sync everything queued so far, whatever the policy. */
  syncAll(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.error !== null) {
        reject(this.error);
        return;
      }
      this.syncWaiters.push({ resolve, reject });
      this.kick();
    });
  }

  /** Resolves when nothing is queued, being written or waiting for a sync. */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0 && this.unsynced.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private kick(): void {
    if (this.running || this.error !== null) return;
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    let round: PendingAppend[] = [];
    try {
      for (;;) {
        // Let appends made in reaction to the last acknowledgements (a few promise hops away) join
        // this round, instead of the first one starting a round of its own.
        for (let i = 0; i < YIELD_TURNS; i++) await null;
        const { flush, maxPendingBytes } = this.settings();
        const forced = this.syncWaiters.length > 0;
        if (this.queue.length === 0 && !forced && !(this.timerDue && this.unsynced.length > 0)) break;
        round = this.queue;
        this.queue = [];
        this.lone = round.length === 1 ? this.lone + 1 : 0;
        if (flush.mode === "batch" && this.unsynced.length === 0 && this.mayBlock()) {
          await this.blocking.nextTurn();
          if (this.queue.length === 0 && this.mayBlock() && this.tryBlocking(round)) {
            const waiters = this.syncWaiters;
            this.syncWaiters = [];
            this.acknowledge(round);
            round = [];
            for (const w of waiters) w.resolve();
            continue;
          }
          if (this.queue.length > 0) {
            round = round.concat(this.queue);
            this.queue = [];
            this.lone = 0;
          }
        }
        const pooled = this.blocking.pool();
        try {
          if (round.length > 0) await this.target.write(round);
          if (flush.mode === "none" && !forced) {
            this.acknowledge(round);
            round = [];
            continue;
          }
          if (flush.mode === "interval" && !forced && !this.timerDue) {
            for (const item of round) this.unsyncedBytes += item.bytes.length;
            this.unsynced.push(...round);
            round = [];
            if (this.unsyncedBytes < Math.min(flush.bytes, maxPendingBytes)) {
              this.armTimer(flush.intervalMs);
              continue;
            }
          }
          round = this.unsynced.length > 0 ? this.unsynced.concat(round) : round;
          this.unsynced = [];
          this.unsyncedBytes = 0;
          this.timerDue = false;
          this.cancelTimer?.();
          this.cancelTimer = null;
          const waiters = this.syncWaiters;
          this.syncWaiters = [];
          await this.target.sync();
          this.acknowledge(round);
          round = [];
          for (const w of waiters) w.resolve();
        } finally {
          pooled();
        }
      }
    } catch (e) {
      this.fail(e, round);
    } finally {
      this.running = false;
      if (this.queue.length === 0 && this.unsynced.length === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  /** Whether this round may block (see BlockingRounds), as far as is known before the extra turn. */
  private mayBlock(): boolean {
    if (this.lone <= BlockingRounds.STREAK || !this.target.writeSyncNow) return false;
    return this.clock.now() >= this.slowUntilMs && this.blocking.mayBlock(this);
  }

  /** A lone append written and synced on the event loop (see BlockingRounds); false: it goes through the pool. */
  private tryBlocking(round: PendingAppend[]): boolean {
    if (!this.target.writeSyncNow) return false;
    const now = this.clock.now();
    this.blocking.willBlock();
    const ms = this.target.writeSyncNow(round);
    if (ms === null) return false;
    this.blocking.blocked(this);
    // One slow sync (the first of a file, a journal commit's hiccup) is not a slow disk; SLOW_ROUNDS
    // in a row are, and after the backoff one more slow round is enough to back off again.
    if (ms < BlockingRounds.SLOW_MS) this.slowRounds = 0;
    else if (++this.slowRounds >= BlockingRounds.SLOW_ROUNDS) {
      this.slowUntilMs = now + BlockingRounds.BACKOFF_MS;
      this.slowRounds = BlockingRounds.SLOW_ROUNDS - 1;
    }
    return true;
  }

  private armTimer(intervalMs: number): void {
    if (this.cancelTimer) return;
    this.cancelTimer = this.clock.setTimer(intervalMs, () => {
      this.cancelTimer = null;
      this.timerDue = true;
      this.kick();
    });
  }

  private acknowledge(items: PendingAppend[]): void {
    if (items.length === 0) return;
    for (const item of items) this.pendingBytes -= item.bytes.length;
    this.target.durable(items);
    for (const item of items) item.resolve();
  }

  private fail(cause: unknown, round: PendingAppend[]): void {
    const error =
      isTributaryError(cause) && cause.code === "STORAGE_ERROR"
        ? cause
        : new TributaryError("STORAGE_ERROR", `the disk refused a write or sync; the log takes no more appends: ${String((cause as Error)?.message ?? cause)}`, { cause });
    this.error = error;
    this.cancelTimer?.();
    this.cancelTimer = null;
    const all = [...round, ...this.unsynced, ...this.queue];
    this.queue = [];
    this.unsynced = [];
    const waiters = this.syncWaiters;
    this.syncWaiters = [];
    this.target.failed(error);
    for (const item of all) item.reject(error);
    for (const w of waiters) w.reject(error);
  }
}
