/**
 * CONTRACT STUB — the storage helper replaces the bodies. The exported names and types are what
 * the broker (and later the Raft driver) build against.
 */
import type { Clock } from "../runtime/clock.ts";
import type { FileSystem } from "../runtime/fs.ts";

export type CleanupPolicy = "delete" | "compact" | "compact,delete";

/**
 * When appends become durable, and so when they are acknowledged and visible to readers.
 * - "batch": every append waits for an fdatasync; appends that arrive while one sync runs share
 *   the next one (group commit). The default.
 * - "interval": appends wait for the next sync, started every `intervalMs` or as soon as
 *   `bytes` unsynced bytes have accumulated, whichever comes first. Fewer syncs, higher latency.
 * - "none": never fdatasync; an append is acknowledged once written to the OS (survives kill -9,
 *   not a power cut). For benchmarks and throwaway data.
 */
export type FlushPolicy =
  | { mode: "batch" }
  | { mode: "interval"; intervalMs: number; bytes: number }
  | { mode: "none" };

export interface LogConfig {
  segmentBytes: number; // roll the active segment past this size
  segmentMs: number; // roll the active segment when its first batch is older than this
  indexIntervalBytes: number; // bytes of batches between two sparse offset/time index entries
  retentionMs: number; // delete closed segments whose newest record is older; -1 keeps forever
  retentionBytes: number; // delete oldest closed segments while the log is larger; -1: no limit
  cleanupPolicy: CleanupPolicy;
  deleteRetentionMs: number; // how long compaction keeps a tombstone once it is in a cleaned segment
  maxMessageBytes: number; // largest batch accepted by append
  flush: FlushPolicy;
  /** Appended bytes not yet durable beyond which append waits (backpressure); over 4x, it refuses with OVERLOADED. */
  maxPendingBytes: number;
}

export interface LogDeps {
  fs: FileSystem;
  clock: Clock;
}

export interface AppendResult {
  baseOffset: number;
  lastOffset: number;
}

export interface ReadResult {
  /** Whole batches as they lie on disk, concatenated, starting with the one holding `offset`; CRCs verified. */
  batches: Uint8Array;
  highWatermark: number;
  logStartOffset: number;
}

export interface CompactionStats {
  segmentsCleaned: number;
  recordsRemoved: number;
  bytesBefore: number;
  bytesAfter: number;
}

export class PartitionLog {
  /** Open (creating if needed) and recover the log in `dir`: torn or corrupt tail truncated, indexes rebuilt. */
  static async open(_dir: string, _config: LogConfig, _deps: LogDeps): Promise<PartitionLog> {
    throw new Error("not implemented");
  }

  /** First offset still stored. */
  get logStartOffset(): number {
    throw new Error("not implemented");
  }
  /** Next offset to be assigned. */
  get logEndOffset(): number {
    throw new Error("not implemented");
  }
  /** Offsets below this are durable under the flush policy; readers never see past it. */
  get highWatermark(): number {
    throw new Error("not implemented");
  }
  /** Bytes of all segments. */
  get sizeBytes(): number {
    throw new Error("not implemented");
  }

  /**
   * Append one RecordBatch v2 (the log takes ownership and rewrites its baseOffset in place).
   * Checks CRC (CORRUPT_RECORD) and size (RECORD_TOO_LARGE); resolves once durable per the flush policy.
   */
  append(_batch: Uint8Array): Promise<AppendResult> {
    throw new Error("not implemented");
  }

  /**
   * Whole batches from the one holding `offset`, up to `maxBytes` (but always at least one batch,
   * so a reader can make progress), never past the high watermark. Empty at the high watermark.
   * OFFSET_OUT_OF_RANGE below logStartOffset or above highWatermark.
   */
  read(_offset: number, _maxBytes: number): Promise<ReadResult> {
    throw new Error("not implemented");
  }

  /** The first offset whose record timestamp is >= `timestampMs`, or null if none. */
  offsetForTimestamp(_timestampMs: number): Promise<number | null> {
    throw new Error("not implemented");
  }

  /** Remove every batch at or after the one holding `offset` (Raft truncates a conflicting suffix). */
  truncateTo(_offset: number): Promise<void> {
    throw new Error("not implemented");
  }

  /** Delete closed segments past retention.ms / retention.bytes; returns how many went. */
  enforceRetention(): Promise<number> {
    throw new Error("not implemented");
  }

  /** For cleanupPolicy compact: keep the latest record per key in closed segments; appends go on meanwhile. */
  compact(): Promise<CompactionStats> {
    throw new Error("not implemented");
  }

  /** Called with the new high watermark whenever it advances. Returns an unsubscribe function. */
  onHighWatermark(_listener: (highWatermark: number) => void): () => void {
    throw new Error("not implemented");
  }

  /** Change retention, compaction and segment settings of an open log. */
  updateConfig(_config: LogConfig): void {
    throw new Error("not implemented");
  }

  /** Make everything appended so far durable. */
  flush(): Promise<void> {
    throw new Error("not implemented");
  }

  /** Flush, write indexes, close files. */
  close(): Promise<void> {
    throw new Error("not implemented");
  }
}
