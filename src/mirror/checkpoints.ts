/**
 * The edge's mirror checkpoints: the internal topic `__mirror_checkpoints` (one partition,
 * compacted, replicated like `__consumer_offsets`, written with acks=all) and the in-memory view
 * of it that the links and edge retention read. Records, JSON as in groups/offsets-store.ts:
 *
 *   key [1, link, topic, partition]  value {"position", "sourceTopicId", "targetTopicId", "updatedAtMs"}
 *                                    the central's last acknowledged position of that link
 *   key [2, topic, partition]        value {"ranges": [[from, to, reason], ...], "droppedOffsets", "droppedBytes"}
 *                                    the drop ledger: ranges the edge deleted unmirrored (at most
 *                                    MAX_LEDGER_RANGES, ranges.ts), per partition: a drop concerns every link
 *
 * Positions are noted in memory on every ack (`acknowledged`) and written at most once per
 * `intervalMs` (one flush of every changed key), and by `flush()` at shutdown: a lost or stale
 * checkpoint costs nothing but a note in the next resume plan, since the central's position is
 * the truth. The ledger is written at once, with acks=all, before retention deletes anything.
 * On becoming leader the edge replays the topic (`load`): one record per key, the last wins.
 * A peer that does not lead tails its local replica instead (`refresh`, from the offset the last
 * replay or refresh reached), so its `mirroredBelow` follows the leader's positions as they
 * replicate, and its own mirror-aware retention deletes what the central holds.
 *
 * Retention (`MirrorRetentionSource`): `mirroredBelow(topic, p)` is the lowest, over the links
 * carrying the topic, of the newer of the checkpoint and the acknowledged position (0 for a link
 * that has neither: nothing is known mirrored); null when no link carries the topic.
 *
 * @example
 *   const cps = new MirrorCheckpoints(host.checkpoints, clock, { intervalMs: 1000, logger });
 *   await cps.load();
 *   cps.acknowledged("to-dc", "telemetry", 0, 1200, ids);   // written within a second
 */
import { assert } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { Clock } from "../runtime/clock.ts";
import { addToLedger } from "./ranges.ts";
import type { LinkCheckpoints } from "./runner.ts";
import type { CheckpointRecord, CheckpointTopic } from "./source.ts";
import type { DroppedRange, MirrorRetentionSource } from "./types.ts";

export const CHECKPOINTS_TOPIC = "__mirror_checkpoints";
/** Compacted, small segments so compaction reaches old positions soon (as the offsets topic). */
export const CHECKPOINTS_TOPIC_CONFIG: Record<string, string | number> = {
  "cleanup.policy": "compact",
  "segment.bytes": 8 * 1024 * 1024,
  "delete.retention.ms": 86_400_000,
};
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 1000;

export interface StoredPosition {
  readonly position: number;
  readonly sourceTopicId: string;
  readonly targetTopicId: string;
  readonly updatedAtMs: number;
}

export interface Ledger {
  readonly ranges: readonly DroppedRange[];
  readonly droppedOffsets: number;
  readonly droppedBytes: number;
}

export type CheckpointEntry =
  | { readonly kind: "position"; readonly link: string; readonly topic: string; readonly partition: number; readonly value: StoredPosition | null }
  | { readonly kind: "ledger"; readonly topic: string; readonly partition: number; readonly value: Ledger | null };

const enc = new TextEncoder();
const dec = new TextDecoder();
const REASONS = ["disk-budget", "retention"] as const;

export function encodePositionRecord(link: string, topic: string, partition: number, v: StoredPosition): CheckpointRecord {
  return {
    key: enc.encode(JSON.stringify([1, link, topic, partition])),
    value: enc.encode(JSON.stringify({ position: v.position, sourceTopicId: v.sourceTopicId, targetTopicId: v.targetTopicId, updatedAtMs: v.updatedAtMs })),
  };
}

export function encodeLedgerRecord(topic: string, partition: number, v: Ledger): CheckpointRecord {
  return {
    key: enc.encode(JSON.stringify([2, topic, partition])),
    value: enc.encode(JSON.stringify({ ranges: v.ranges.map((r) => [r.from, r.to, r.reason]), droppedOffsets: v.droppedOffsets, droppedBytes: v.droppedBytes })),
  };
}

const offset = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

/** A record read back, or null when it is not one of ours (the caller logs and skips it). */
export function decodeCheckpointRecord(key: Uint8Array | null, value: Uint8Array | null): CheckpointEntry | null {
  if (!key) return null;
  try {
    const k = JSON.parse(dec.decode(key)) as unknown[];
    if (!Array.isArray(k)) return null;
    const v = value === null ? null : (JSON.parse(dec.decode(value)) as Record<string, unknown>);
    if (k[0] === 1 && k.length === 4 && typeof k[1] === "string" && typeof k[2] === "string" && offset(k[3])) {
      const base = { kind: "position" as const, link: k[1], topic: k[2], partition: k[3] };
      if (v === null) return { ...base, value: null };
      if (!offset(v.position) || typeof v.sourceTopicId !== "string" || typeof v.targetTopicId !== "string" || !offset(v.updatedAtMs)) return null;
      return { ...base, value: { position: v.position, sourceTopicId: v.sourceTopicId, targetTopicId: v.targetTopicId, updatedAtMs: v.updatedAtMs } };
    }
    if (k[0] === 2 && k.length === 3 && typeof k[1] === "string" && offset(k[2])) {
      const base = { kind: "ledger" as const, topic: k[1], partition: k[2] };
      if (v === null) return { ...base, value: null };
      if (!Array.isArray(v.ranges) || !offset(v.droppedOffsets) || !offset(v.droppedBytes)) return null;
      const ranges: DroppedRange[] = [];
      for (const r of v.ranges as unknown[]) {
        if (!Array.isArray(r) || !offset(r[0]) || !offset(r[1]) || r[1] < r[0] || !(REASONS as readonly unknown[]).includes(r[2])) return null;
        ranges.push({ from: r[0], to: r[1], reason: r[2] as DroppedRange["reason"] });
      }
      return { ...base, value: { ranges, droppedOffsets: v.droppedOffsets, droppedBytes: v.droppedBytes } };
    }
    return null;
  } catch {
    return null;
  }
}

interface PositionState {
  /** As stored in the topic. */
  stored: StoredPosition | null;
  /** Newest acknowledged, not yet written. */
  pending: StoredPosition | null;
}

export interface CheckpointOptions {
  readonly intervalMs: number;
  readonly logger: Logger;
  /** Called when an acknowledged position moves. */
  readonly onMoved?: () => void;
}

const pkey = (link: string, topic: string, partition: number) => JSON.stringify([link, topic, partition]);
const lkey = (topic: string, partition: number) => `${topic}/${partition}`;

export class MirrorCheckpoints implements LinkCheckpoints, MirrorRetentionSource {
  private readonly positions = new Map<string, PositionState>();
  private readonly ledgers = new Map<string, Ledger>();
  /** Links and what they carry, for mirroredBelow. */
  private readonly links = new Map<string, (topic: string) => boolean>();
  private cancelFlush: (() => void) | null = null;
  private flushing: Promise<void> = Promise.resolve();
  private lastFlushMs = -Infinity;
  private closed = false;
  /** Where the next `refresh` reads from: past the last record a replay or refresh applied. */
  private nextOffset = 0;
  /** Bumped by every `load`: a refresh running across one stops applying. */
  private generation = 0;

  constructor(
    private readonly topic: CheckpointTopic,
    private readonly clock: Clock,
    private readonly o: CheckpointOptions,
  ) {
    assert(o.intervalMs > 0, "a checkpoint interval is positive");
  }

  /** Replay the topic: every key's last record wins. Replaces what was in memory. */
  async load(): Promise<void> {
    const generation = ++this.generation;
    this.positions.clear();
    this.ledgers.clear();
    this.nextOffset = 0;
    await this.replay(generation);
  }

  /**
   * Apply what the topic holds beyond the last replay (a peer that does not lead: its local
   * replica, as it replicates). Positions stored there replace the ones in memory.
   */
  async refresh(): Promise<void> {
    await this.replay(this.generation);
  }

  private async replay(generation: number): Promise<void> {
    let skipped = 0;
    for await (const r of this.topic.readAll(this.nextOffset)) {
      if (generation !== this.generation) return;
      this.nextOffset = Math.max(this.nextOffset, r.offset + 1);
      const e = decodeCheckpointRecord(r.key, r.value);
      if (!e) {
        skipped++;
        continue;
      }
      if (e.kind === "position") {
        const k = pkey(e.link, e.topic, e.partition);
        if (e.value === null) this.positions.delete(k);
        else this.positions.set(k, { stored: e.value, pending: this.positions.get(k)?.pending ?? null });
      } else if (e.value === null) this.ledgers.delete(lkey(e.topic, e.partition));
      else this.ledgers.set(lkey(e.topic, e.partition), e.value);
    }
    if (skipped > 0) this.o.logger.warn("mirror: skipped checkpoint records that are not ours", { count: skipped });
  }

  registerLink(link: string, carries: (topic: string) => boolean): void {
    this.links.set(link, carries);
  }

  unregisterLink(link: string): void {
    this.links.delete(link);
  }

  checkpoint(link: string, topic: string, partition: number): number | null {
    return this.positions.get(pkey(link, topic, partition))?.stored?.position ?? null;
  }

  /** The newer of the stored and the acknowledged position. */
  known(link: string, topic: string, partition: number): number | null {
    const s = this.positions.get(pkey(link, topic, partition));
    if (!s) return null;
    return Math.max(s.stored?.position ?? 0, s.pending?.position ?? 0);
  }

  dropped(topic: string, partition: number): readonly DroppedRange[] {
    return this.ledgers.get(lkey(topic, partition))?.ranges ?? [];
  }

  ledger(topic: string, partition: number): Ledger | null {
    return this.ledgers.get(lkey(topic, partition)) ?? null;
  }

  acknowledged(link: string, topic: string, partition: number, position: number, ids: { sourceTopicId: string; targetTopicId: string }): void {
    const k = pkey(link, topic, partition);
    const s = this.positions.get(k) ?? { stored: null, pending: null };
    this.positions.set(k, s);
    const current = s.pending ?? s.stored;
    if (current && current.position === position && current.sourceTopicId === ids.sourceTopicId && current.targetTopicId === ids.targetTopicId) return;
    s.pending = { position, ...ids, updatedAtMs: this.clock.now() };
    this.scheduleFlush();
    this.o.onMoved?.();
  }

  mirroredBelow(topic: string, partition: number): number | null {
    let low: number | null = null;
    for (const [link, carries] of this.links) {
      if (!carries(topic)) continue;
      const p = this.known(link, topic, partition) ?? 0;
      low = low === null ? p : Math.min(low, p);
    }
    return low;
  }

  async recordDropped(topic: string, partition: number, ranges: readonly DroppedRange[]): Promise<void> {
    if (ranges.length === 0) return;
    const k = lkey(topic, partition);
    const before = this.ledgers.get(k) ?? { ranges: [], droppedOffsets: 0, droppedBytes: 0 };
    const added = ranges.reduce((n, r) => n + (r.to - r.from), 0);
    const next: Ledger = {
      ranges: addToLedger(before.ranges, ranges, (a, b) => a.reason === b.reason),
      droppedOffsets: before.droppedOffsets + added,
      // Ranges carry no sizes: bytes are counted by whoever knows them (retention's metrics).
      droppedBytes: before.droppedBytes,
    };
    // Durable before any file goes: the caller deletes only once this resolves.
    await this.topic.append([encodeLedgerRecord(topic, partition, next)]);
    this.ledgers.set(k, next);
  }

  /** Write every changed position now (at shutdown, or when a leader steps down). */
  flush(): Promise<void> {
    this.cancelFlush?.();
    this.cancelFlush = null;
    const run = this.flushing.then(() => this.writePending());
    this.flushing = run.catch(() => {});
    return run;
  }

  close(): void {
    this.closed = true;
    this.cancelFlush?.();
    this.cancelFlush = null;
  }

  private scheduleFlush(): void {
    if (this.cancelFlush || this.closed) return;
    const wait = Math.max(0, this.lastFlushMs + this.o.intervalMs - this.clock.now());
    this.cancelFlush = this.clock.setTimer(wait, () => {
      this.cancelFlush = null;
      this.flush().catch((e: unknown) => {
        this.o.logger.warn("mirror: could not write checkpoints; retried", { error: e });
        this.scheduleFlush();
      });
    });
  }

  private async writePending(): Promise<void> {
    const batch: { s: PositionState; v: StoredPosition; record: CheckpointRecord }[] = [];
    for (const [k, s] of this.positions) {
      if (!s.pending) continue;
      const [link, topic, partition] = JSON.parse(k) as [string, string, number];
      batch.push({ s, v: s.pending, record: encodePositionRecord(link, topic, partition, s.pending) });
    }
    if (batch.length === 0) return;
    this.lastFlushMs = this.clock.now();
    await this.topic.append(batch.map((b) => b.record));
    for (const b of batch) {
      b.s.stored = b.v;
      if (b.s.pending === b.v) b.s.pending = null;
    }
  }
}
