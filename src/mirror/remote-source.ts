/**
 * The mirror's view of partitions this peer holds no replica of (broker-host.ts uses it for them).
 * Reads go to a replica elsewhere (`ReplicaReader`: Broker.readReplica, a forwarded peer call).
 * Bounds are cached per subscribed partition and kept fresh by one long-poll loop per partition,
 * started by the first `onHighWatermark` subscription and stopped by the last unsubscribe: the
 * first poll asks for the bounds at once, every later one waits (POLL_WAIT_MS) until the high
 * watermark passes the cached one. Listeners fire when the bounds first become known (so a link
 * that found none re-plans the partition) and whenever the high watermark advances.
 *
 * Until the first answer `bounds` is null. A failed poll (peer down, election, topic gone) keeps
 * the cached bounds and polls again after a backoff (RETRY_MIN_MS doubling to RETRY_MAX_MS); a
 * failed `read` rejects, which the link treats like every other read failure (it backs off and re-plans).
 * A poll's answer is taken as it is (it comes from the leader, or from a follower that holds the
 * cached high watermark: a follower behind it refuses and the broker asks another replica), so
 * bounds follow a topic deleted and created again; a `read`'s bounds only when they are newer
 * (a read may be answered by a follower that trails).
 *
 * Bounds: one loop and one call in flight per subscribed partition; each read at most the
 * caller's maxBytes (the broker caps it, and the long poll, again).
 */
import type { Clock } from "../runtime/clock.ts";
import type { SourceBounds, SourceRead } from "./source.ts";

/** What a replica answers: raw whole batches from `offset` (empty for maxBytes 0) and the partition's bounds. */
export interface ReplicaRead extends SourceBounds {
  readonly batches: Uint8Array;
}

export interface ReplicaReader {
  readReplica(topic: string, partition: number, offset: number, maxBytes: number, waitMs: number): Promise<ReplicaRead>;
}

/** How long one poll waits at the replica for the high watermark to pass the cached one. */
export const POLL_WAIT_MS = 1000;
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 2000;

interface Entry {
  readonly topic: string;
  readonly partition: number;
  bounds: SourceBounds | null;
  readonly listeners: Set<(highWatermark: number) => void>;
  stopped: boolean;
  cancelTimer: (() => void) | null;
}

export class RemotePartitions {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly reader: ReplicaReader,
    private readonly clock: Clock,
    private readonly pollWaitMs = POLL_WAIT_MS,
  ) {}

  bounds(topic: string, partition: number): SourceBounds | null {
    return this.entries.get(key(topic, partition))?.bounds ?? null;
  }

  async read(topic: string, partition: number, offset: number, maxBytes: number): Promise<SourceRead> {
    const r = await this.reader.readReplica(topic, partition, offset, maxBytes, 0);
    const e = this.entries.get(key(topic, partition));
    if (e) this.learn(e, r, false);
    return { batches: r.batches, highWatermark: r.highWatermark, logStartOffset: r.logStartOffset };
  }

  onHighWatermark(topic: string, partition: number, fn: (highWatermark: number) => void): () => void {
    const k = key(topic, partition);
    let e = this.entries.get(k);
    if (!e) {
      const created: Entry = { topic, partition, bounds: null, listeners: new Set(), stopped: false, cancelTimer: null };
      this.entries.set(k, created);
      void this.poll(created);
      e = created;
    }
    const entry = e;
    // A function subscribed twice must be removable twice: wrap it.
    const listener = (hw: number) => fn(hw);
    entry.listeners.add(listener);
    return () => {
      entry.listeners.delete(listener);
      if (entry.listeners.size > 0 || entry.stopped) return;
      entry.stopped = true;
      entry.cancelTimer?.();
      if (this.entries.get(k) === entry) this.entries.delete(k);
    };
  }

  private async poll(e: Entry): Promise<void> {
    let failures = 0;
    while (!e.stopped) {
      try {
        const known = e.bounds;
        const r = await this.reader.readReplica(e.topic, e.partition, known?.highWatermark ?? 0, 0, known ? this.pollWaitMs : 0);
        failures = 0;
        if (!e.stopped) this.learn(e, r, true);
      } catch {
        await this.sleep(e, Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** failures++));
      }
    }
  }

  private sleep(e: Entry, ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (e.stopped) return resolve();
      e.cancelTimer = this.clock.setTimer(ms, () => {
        e.cancelTimer = null;
        resolve();
      });
      const cancel = e.cancelTimer;
      e.cancelTimer = () => {
        cancel();
        resolve();
      };
    });
  }

  /** Take an answer's bounds (a read's only when newer); tell the listeners when they are the first or the high watermark advanced. */
  private learn(e: Entry, r: SourceBounds, polled: boolean): void {
    const prev = e.bounds;
    if (!polled && prev && r.highWatermark < prev.highWatermark) return;
    e.bounds = { logStartOffset: r.logStartOffset, highWatermark: r.highWatermark, logEndOffset: r.logEndOffset, sizeBytes: r.sizeBytes };
    if (prev && r.highWatermark <= prev.highWatermark) return;
    for (const fn of [...e.listeners]) fn(r.highWatermark);
  }
}

function key(topic: string, partition: number): string {
  return `${topic}/${partition}`;
}
