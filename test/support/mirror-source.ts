/**
 * In-memory twins of what the edge's mirror takes from its broker (src/mirror/source.ts): partition
 * logs of real RecordBatch v2 bytes (offsets assigned as the log does, a high watermark that moves
 * on `commit`, listeners, control batches, retention from the front), a checkpoint topic that keeps
 * every record appended (replayed by a new leader), and a committed-offsets table. A mock stands
 * in only for the broker here; the batches, stamps and admission are the real code.
 */
import { TributaryError } from "../../src/errors.ts";
import type { CheckpointRecord, CheckpointTopic, CommittedGroupOffset, GroupOffsetsReader, MirrorHost, MirrorSourceLog, SourceBounds, SourceRead, SourceTopic } from "../../src/mirror/source.ts";
import { decodeRecords, encodeBatch, readBatchHeader, setBatchBaseOffset, type DecodedRecord } from "../../src/storage/record-batch.ts";

const enc = new TextEncoder();

class MemPartition {
  batches: Uint8Array[] = [];
  logStart = 0;
  logEnd = 0;
  hw = 0;
  readonly listeners = new Set<(hw: number) => void>();

  append(batch: Uint8Array): void {
    setBatchBaseOffset(batch, this.logEnd);
    this.batches.push(batch);
    this.logEnd += readBatchHeader(batch).lastOffsetDelta + 1;
  }

  commit(to = this.logEnd): void {
    if (to <= this.hw) return;
    this.hw = to;
    for (const l of this.listeners) l(to);
  }

  get sizeBytes(): number {
    return this.batches.reduce((n, b) => n + b.length, 0);
  }
}

export class MemSourceLog implements MirrorSourceLog {
  private readonly topicMap = new Map<string, { topic: SourceTopic; parts: MemPartition[] }>();
  private readonly topicListeners = new Set<() => void>();
  private nextId = 1;
  /** Reads made, for tests of bounds. */
  reads = 0;

  createTopic(name: string, partitions: number, config: Record<string, string> = {}): void {
    this.topicMap.set(name, { topic: { name, id: `topic-${this.nextId++}`, partitions, config }, parts: Array.from({ length: partitions }, () => new MemPartition()) });
    for (const l of this.topicListeners) l();
  }

  /** Append `n` records (values `${topic}/${p}/${offset}`) as one batch, committed unless told otherwise. */
  append(topic: string, partition: number, n: number, options: { timestampMs?: number; commit?: boolean; valueBytes?: number } = {}): void {
    const p = this.part(topic, partition);
    const ts = options.timestampMs ?? 1_700_000_000_000;
    const pad = "x".repeat(options.valueBytes ?? 0);
    const records = Array.from({ length: n }, (_, i) => ({ key: enc.encode(`k${i}`), value: enc.encode(`${topic}/${partition}/${p.logEnd + i}${pad}`), timestamp: ts }));
    p.append(encodeBatch(records, { timestamp: ts }));
    if (options.commit !== false) p.commit();
  }

  /** A control batch (a Raft no-op of a new leader), committed. */
  appendControl(topic: string, partition: number): void {
    const p = this.part(topic, partition);
    p.append(encodeBatch([{ key: enc.encode("raft:noop"), value: null }], { timestamp: 0, isControl: true }));
    p.commit();
  }

  commit(topic: string, partition: number, to?: number): void {
    this.part(topic, partition).commit(to);
  }

  /** Retention: drop whole batches below `offset`. */
  deleteBelow(topic: string, partition: number, offset: number): void {
    const p = this.part(topic, partition);
    while (p.batches.length > 1) {
      const h = readBatchHeader(p.batches[0]!);
      if (h.baseOffset + h.lastOffsetDelta + 1 > offset) break;
      p.batches.shift();
      p.logStart = h.baseOffset + h.lastOffsetDelta + 1;
    }
  }

  /** Every record up to the high watermark, control batches left out. */
  records(topic: string, partition: number): DecodedRecord[] {
    const p = this.part(topic, partition);
    return p.batches.filter((b) => !readBatchHeader(b).isControl && readBatchHeader(b).baseOffset < p.hw).flatMap((b) => decodeRecords(b));
  }

  topics(): readonly SourceTopic[] {
    return [...this.topicMap.values()].map((t) => t.topic);
  }

  bounds(topic: string, partition: number): SourceBounds | null {
    const p = this.topicMap.get(topic)?.parts[partition];
    return p ? { logStartOffset: p.logStart, highWatermark: p.hw, logEndOffset: p.logEnd, sizeBytes: p.sizeBytes } : null;
  }

  async read(topic: string, partition: number, offset: number, maxBytes: number): Promise<SourceRead> {
    this.reads++;
    const p = this.part(topic, partition);
    if (offset < p.logStart || offset > p.hw) throw new TributaryError("OFFSET_OUT_OF_RANGE", `offset ${offset} outside [${p.logStart}, ${p.hw}]`);
    const out: Uint8Array[] = [];
    let bytes = 0;
    for (const b of p.batches) {
      const h = readBatchHeader(b);
      const end = h.baseOffset + h.lastOffsetDelta + 1;
      if (end <= offset) continue;
      if (end > p.hw) break;
      if (out.length > 0 && bytes + b.length > maxBytes) break;
      out.push(b);
      bytes += b.length;
    }
    const all = new Uint8Array(bytes);
    let at = 0;
    for (const b of out) {
      all.set(b, at);
      at += b.length;
    }
    return { batches: all, highWatermark: p.hw, logStartOffset: p.logStart };
  }

  onHighWatermark(topic: string, partition: number, fn: (hw: number) => void): () => void {
    const p = this.topicMap.get(topic)?.parts[partition];
    if (!p) return () => {};
    p.listeners.add(fn);
    return () => p.listeners.delete(fn);
  }

  onTopicsChanged(fn: () => void): () => void {
    this.topicListeners.add(fn);
    return () => this.topicListeners.delete(fn);
  }

  private part(topic: string, partition: number): MemPartition {
    const p = this.topicMap.get(topic)?.parts[partition];
    if (!p) throw new Error(`test: no partition ${topic}/${partition}`);
    return p;
  }
}

/** The checkpoint topic: every record kept (a compacted topic replays to the same last-per-key view). */
export class MemCheckpointTopic implements CheckpointTopic {
  readonly records: CheckpointRecord[] = [];
  failAppends = 0;
  failEnsures = 0;
  private leading = true;
  private readonly listeners = new Set<(leading: boolean) => void>();

  async ensure(): Promise<void> {
    if (this.failEnsures > 0) {
      this.failEnsures--;
      throw new TributaryError("NOT_READY", "no quorum yet (simulated)");
    }
  }

  async append(records: readonly CheckpointRecord[]): Promise<void> {
    if (this.failAppends > 0) {
      this.failAppends--;
      throw new TributaryError("REQUEST_TIMED_OUT", "checkpoint append failed (simulated)");
    }
    this.records.push(...records);
  }

  async *readAll(fromOffset = 0): AsyncIterable<DecodedRecord> {
    const records = [...this.records];
    for (let offset = fromOffset; offset < records.length; offset++) {
      const r = records[offset]!;
      yield { offset, timestamp: 0, key: r.key, value: r.value, headers: [] };
    }
  }

  onLeadership(fn: (leading: boolean) => void): () => void {
    this.listeners.add(fn);
    fn(this.leading);
    return () => this.listeners.delete(fn);
  }

  setLeading(leading: boolean): void {
    this.leading = leading;
    for (const l of this.listeners) l(leading);
  }
}

export class MemGroupOffsets implements GroupOffsetsReader {
  readonly offsets = new Map<string, CommittedGroupOffset[]>();
  private readonly listeners = new Set<() => void>();

  /** A group commits: the offsets change and the listeners hear of it. */
  commit(group: string, offsets: CommittedGroupOffset[]): void {
    this.offsets.set(group, offsets);
    for (const l of this.listeners) l();
  }

  onCommit(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  async committed(group: string): Promise<readonly CommittedGroupOffset[]> {
    return this.offsets.get(group) ?? [];
  }
}

export function memHost(): MirrorHost & { source: MemSourceLog; checkpoints: MemCheckpointTopic; groups: MemGroupOffsets } {
  return { source: new MemSourceLog(), checkpoints: new MemCheckpointTopic(), groups: new MemGroupOffsets() };
}
