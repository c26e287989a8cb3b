/**
 * What the edge's mirror needs of its broker, as narrow interfaces: the partition logs it reads
 * (raw batches up to the high watermark, bounds, high-watermark listeners, topic changes), the
 * checkpoint topic it writes, the leadership it follows, and the committed offsets of mirrored
 * groups. `src/mirror/broker-host.ts` implements them over the Broker; tests use in-memory twins.
 */
import type { DecodedRecord } from "../storage/record-batch.ts";

export interface SourceTopic {
  readonly name: string;
  /** The topic's random id: a topic deleted and created again is another source. */
  readonly id: string;
  readonly partitions: number;
  readonly config: Readonly<Record<string, string>>;
}

export interface SourceBounds {
  readonly logStartOffset: number;
  readonly highWatermark: number;
  readonly logEndOffset: number;
  /** Bytes of the whole partition log: with the offsets, an estimate of bytes per offset. */
  readonly sizeBytes: number;
}

export interface SourceRead {
  /** Whole batches, concatenated, as stored (CRCs verified), from the one holding the offset; never past the high watermark. */
  readonly batches: Uint8Array;
  readonly highWatermark: number;
  readonly logStartOffset: number;
}

/**
 * The partition logs a link reads. A partition whose bounds are not known (yet) answers null; the
 * host calls its high-watermark listeners once they become known (the link then plans it).
 */
export interface MirrorSourceLog {
  /** Every topic, internal ones included (the link's routing leaves them out). */
  topics(): readonly SourceTopic[];
  bounds(topic: string, partition: number): SourceBounds | null;
  /** At least one batch when there is one at `offset`, else up to `maxBytes`; OFFSET_OUT_OF_RANGE outside [logStart, hw]. */
  read(topic: string, partition: number, offset: number, maxBytes: number): Promise<SourceRead>;
  /** Called with the new high watermark whenever it advances; returns an unsubscribe function. */
  onHighWatermark(topic: string, partition: number, fn: (highWatermark: number) => void): () => void;
  /** Called after topics were created or deleted; returns an unsubscribe function. */
  onTopicsChanged(fn: () => void): () => void;
}

export interface CheckpointRecord {
  readonly key: Uint8Array;
  readonly value: Uint8Array | null;
}

/** The replicated internal topic the checkpoints live in (one partition, compacted). */
export interface CheckpointTopic {
  /** Create it when missing (internal, compacted, replicated); resolves once it exists here. */
  ensure(): Promise<void>;
  /** Append with acks=all: resolves once replicated (committed in a cluster, durable on one node). */
  append(records: readonly CheckpointRecord[]): Promise<void>;
  /** Every record from `fromOffset` (default: the log start) up to the high watermark now, in offset order. */
  readAll(fromOffset?: number): AsyncIterable<DecodedRecord>;
  /**
   * `fn(true)` once this peer leads the topic and has its whole log committed (single node: as
   * soon as it exists), `fn(false)` when it stops leading. Returns an unsubscribe function.
   */
  onLeadership(fn: (leading: boolean) => void): () => void;
}

export interface CommittedGroupOffset {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly metadata: string;
}

export interface GroupOffsetsReader {
  committed(group: string): Promise<readonly CommittedGroupOffset[]>;
  /** Called after offsets were committed (where this peer coordinates groups); returns an unsubscribe function. */
  onCommit(fn: () => void): () => void;
}

/** Everything the edge's mirror takes from its broker. */
export interface MirrorHost {
  readonly source: MirrorSourceLog;
  readonly checkpoints: CheckpointTopic;
  readonly groups: GroupOffsetsReader;
}
