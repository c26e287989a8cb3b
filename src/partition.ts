/**
 * One partition of a topic on this broker: its log, and the readers waiting for records beyond
 * the high watermark (long polls and live streams).
 *
 * Waiting is bounded: at most `maxWaiters` readers per partition wait at once; one more gets
 * OVERLOADED instead of a promise that would pile up in memory.
 */
import { TributaryError } from "./errors.ts";
import type { PartitionLog } from "./storage/log.ts";
import type { Clock } from "./runtime/clock.ts";
import { rebuildProducerState, type ProducerStateTable } from "./idempotence/producer-state.ts";
import type { PartitionReplica } from "./cluster/partition-replica.ts";

export const MAX_WAITERS_PER_PARTITION = 10_000;

interface Waiter {
  offset: number;
  resolve: () => void;
}

export class Partition {
  private readonly waiters = new Set<Waiter>();
  private readonly unsubscribe: () => void;
  private producers: Promise<ProducerStateTable> | null = null;
  /** In a cluster: this partition's replica (its Raft group); null on a single node. */
  replica: PartitionReplica | null = null;

  constructor(
    readonly topic: string,
    readonly index: number,
    readonly log: PartitionLog,
    private readonly clock: Clock,
    private readonly maxWaiters = MAX_WAITERS_PER_PARTITION,
  ) {
    this.unsubscribe = log.onHighWatermark((hw) => {
      for (const w of this.waiters) {
        if (hw > w.offset) {
          this.waiters.delete(w);
          w.resolve();
        }
      }
    });
  }

  /**
   * Resolve once the high watermark passes `offset`, `timeoutMs` elapses, or `signal` aborts,
   * whichever is first. Never rejects on timeout: the caller reads again and finds what is there.
   */
  waitForRecords(offset: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.log.highWatermark > offset || timeoutMs <= 0 || signal?.aborted) return Promise.resolve();
    if (this.waiters.size >= this.maxWaiters) {
      throw new TributaryError("OVERLOADED", `too many readers waiting on ${this.topic}/${this.index}; retry later`);
    }
    return new Promise<void>((resolve) => {
      const done = () => {
        cancelTimer();
        signal?.removeEventListener("abort", done);
        this.waiters.delete(waiter);
        resolve();
      };
      const waiter: Waiter = { offset, resolve: done };
      const cancelTimer = this.clock.setTimer(timeoutMs, done);
      signal?.addEventListener("abort", done, { once: true });
      this.waiters.add(waiter);
    });
  }

  /**
   * The idempotent-producer state, rebuilt from the log on first use (so opening a broker with
   * large logs does not scan them unless an idempotent producer writes there).
   */
  producerState(seen: (producerId: number) => void): Promise<ProducerStateTable> {
    if (!this.producers) {
      this.producers = rebuildProducerState(this.log, seen);
      this.producers.catch(() => {
        this.producers = null;
      });
    }
    return this.producers;
  }

  /** Forget the producer state: rebuilt from the log on next use (a new leader must not trust a deposed one's table). */
  resetProducerState(): void {
    this.producers = null;
  }

  /** Wake every waiter (on close or delete) and stop listening to the log. */
  release(): void {
    this.unsubscribe();
    for (const w of [...this.waiters]) w.resolve();
    this.waiters.clear();
  }
}
