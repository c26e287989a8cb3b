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
import type { Clock } from "../runtime/clock.ts";
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
  /** These items are durable per the policy: advance the high watermark past them. */
  durable(items: PendingAppend[]): void;
  /** A write or sync failed: the log refuses everything from now on. */
  failed(error: unknown): void;
}

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

  constructor(
    private readonly target: FlushTarget,
    private readonly clock: Clock,
    private readonly settings: () => { flush: FlushPolicy; maxPendingBytes: number },
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
