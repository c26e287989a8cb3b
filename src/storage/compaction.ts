/**
 * Log compaction (cleanup.policy=compact): keep only the newest record of each key in the closed
 * segments, without moving any record to another offset.
 *
 * 1. Map: read the closed segments front to back, remembering the newest offset of every key,
 *    up to COMPACTION_MAX_KEYS keys. Past the cap the map stops growing and only the segments it
 *    covered are cleaned this time; the rule below stays safe for any prefix, since a record is
 *    removed only when a newer record of its key is known to exist (and is itself kept).
 * 2. Clean: each segment with something to remove is rewritten batch by batch into
 *    `<name>.log.cleaned`: a batch whose records all stay is copied byte for byte; one that loses
 *    some is re-encoded with the survivors, at their original offset deltas and with the
 *    original baseOffset, lastOffsetDelta, producer fields and flags, so offsets are never
 *    reused; one that loses all is dropped (or, with `keepEmptyBatches`, kept as an empty batch
 *    of the same offsets, so a replicated log keeps its batch count: its Raft indexes). The file is synced, then handed to `swap`, which
 *    renames it over the segment and rebuilds its indexes.
 *
 * Tombstones (null value) that are the newest of their key are dropped once their record
 * timestamp is older than `deleteRetentionMs`. Kafka counts that time from when the tombstone was
 * first cleaned, which needs a marker stored in the batch; the record timestamp needs no extra
 * state and gives consumers at least the same window for tombstones produced in real time.
 *
 * Records without a key are kept; control batches are copied untouched and their records do not
 * count as keys.
 */
import { TributaryError } from "../errors.ts";
import type { FileSystem } from "../runtime/fs.ts";
import { decodeRecords, encodeBatch, readBatchHeader, type DecodedRecord } from "./record-batch.ts";
import { BatchCursor, type Segment } from "./segment.ts";

/** Bounds the key map's memory (a few hundred bytes per key): about 1 GiB worst case is too much for a gateway, ~100 MiB is not. */
export const COMPACTION_MAX_KEYS = 500_000;
/** Output is written in chunks of about this size. */
const WRITE_CHUNK_BYTES = 1 << 20;

export interface CompactionStats {
  segmentsCleaned: number;
  recordsRemoved: number;
  bytesBefore: number;
  bytesAfter: number;
}

export interface CompactionContext {
  fs: FileSystem;
  nowMs: number;
  deleteRetentionMs: number;
  maxKeys?: number;
  /** A batch that loses every record stays as an empty batch (same offsets, flags, epoch). */
  keepEmptyBatches?: boolean;
  /** Checked between batches: true stops the work (the log is closing). */
  shouldStop: () => boolean;
  /** Rename `segment.cleanedPath` over the segment and take the new file into use. */
  swap: (segment: Segment) => Promise<void>;
}

function keyString(key: Uint8Array): string {
  let s = "";
  for (let i = 0; i < key.length; i++) s += String.fromCharCode(key[i]!);
  return s;
}

async function forEachBatch(
  segment: Segment,
  ctx: CompactionContext,
  fn: (bytes: Uint8Array, records: DecodedRecord[] | null) => boolean | void | Promise<void>,
): Promise<boolean> {
  const cursor = new BatchCursor(segment.handle, 0, segment.readableBytes, { bodies: true, verifyCrc: true, windowBytes: 1 << 20 });
  for (;;) {
    if (ctx.shouldStop()) return false;
    const b = await cursor.next();
    if (!b) {
      if (cursor.problem) throw new TributaryError("CORRUPT_RECORD", `compaction stopped at ${segment.logPath}: ${cursor.problem}`);
      return true;
    }
    const records = b.header.isControl ? null : decodeRecords(b.bytes!);
    const r = fn(b.bytes!, records);
    if (r === false) return false;
    if (r instanceof Promise) await r;
  }
}

/** Compact `segments` (closed and sealed, oldest first). */
export async function compactSegments(segments: readonly Segment[], ctx: CompactionContext): Promise<CompactionStats> {
  const stats: CompactionStats = { segmentsCleaned: 0, recordsRemoved: 0, bytesBefore: 0, bytesAfter: 0 };
  const maxKeys = ctx.maxKeys ?? COMPACTION_MAX_KEYS;
  const newest = new Map<string, number>();
  let covered = 0;
  for (const segment of segments) {
    segment.acquire();
    try {
      const complete = await forEachBatch(segment, ctx, (_bytes, records) => {
        for (const r of records ?? []) {
          if (r.key === null) continue;
          const k = keyString(r.key);
          if (newest.size >= maxKeys && !newest.has(k)) return false;
          newest.set(k, r.offset);
        }
      });
      covered++;
      if (!complete) break;
    } finally {
      segment.release();
    }
  }
  if (ctx.shouldStop()) return stats;

  const tombstoneHorizon = ctx.nowMs - ctx.deleteRetentionMs;
  const keep = (r: DecodedRecord): boolean => {
    if (r.key === null) return true;
    const latest = newest.get(keyString(r.key));
    if (latest === undefined || latest < r.offset) return true; // beyond the map: nothing newer known
    if (latest > r.offset) return false;
    return !(r.value === null && r.timestamp < tombstoneHorizon);
  };

  for (const segment of segments.slice(0, covered)) {
    if (ctx.shouldStop()) break;
    const result = await cleanSegment(segment, keep, ctx);
    if (!result) continue;
    stats.segmentsCleaned++;
    stats.recordsRemoved += result.recordsRemoved;
    stats.bytesBefore += result.bytesBefore;
    stats.bytesAfter += result.bytesAfter;
  }
  return stats;
}

/** Rewrite one segment without the records `keep` rejects; null when nothing would change. */
async function cleanSegment(
  segment: Segment,
  keep: (r: DecodedRecord) => boolean,
  ctx: CompactionContext,
): Promise<{ recordsRemoved: number; bytesBefore: number; bytesAfter: number } | null> {
  segment.acquire();
  try {
    let removable = 0;
    const counted = await forEachBatch(segment, ctx, (_bytes, records) => {
      for (const r of records ?? []) if (!keep(r)) removable++;
    });
    if (!counted || removable === 0) return null;

    const out = await ctx.fs.open(segment.cleanedPath, "create");
    let bytesAfter = 0;
    let position = 0;
    let chunk: Uint8Array[] = [];
    let chunkBytes = 0;
    const writeChunk = async () => {
      if (chunkBytes === 0) return;
      const buf = new Uint8Array(chunkBytes);
      let at = 0;
      for (const c of chunk) {
        buf.set(c, at);
        at += c.length;
      }
      await out.write(buf, position);
      position += chunkBytes;
      chunk = [];
      chunkBytes = 0;
    };
    let recordsRemoved = 0;
    let done: boolean;
    try {
      const emit = async (b: Uint8Array) => {
        chunk.push(b);
        chunkBytes += b.length;
        bytesAfter += b.length;
        if (chunkBytes >= WRITE_CHUNK_BYTES) await writeChunk();
      };
      done = await forEachBatch(segment, ctx, async (bytes, records) => {
        // `bytes` is a view into the cursor's window: copy what is kept.
        if (records === null) return emit(bytes.slice());
        const kept = records.filter(keep);
        recordsRemoved += records.length - kept.length;
        if (kept.length === records.length) return emit(bytes.slice());
        if (kept.length > 0 || ctx.keepEmptyBatches) return emit(reencode(bytes, kept));
      });
      await writeChunk();
      if (done) await out.datasync();
    } finally {
      await out.close();
    }
    if (!done) {
      await ctx.fs.remove(segment.cleanedPath);
      return null;
    }
    const bytesBefore = segment.size;
    await ctx.swap(segment);
    return { recordsRemoved, bytesBefore, bytesAfter };
  } finally {
    segment.release();
  }
}

function reencode(original: Uint8Array, kept: DecodedRecord[]): Uint8Array {
  const h = readBatchHeader(original);
  return encodeBatch(
    kept.map((r) => ({ key: r.key, value: r.value, headers: r.headers, timestamp: r.timestamp, offsetDelta: r.offset - h.baseOffset })),
    {
      baseOffset: h.baseOffset,
      partitionLeaderEpoch: h.partitionLeaderEpoch,
      producerId: h.producerId,
      producerEpoch: h.producerEpoch,
      baseSequence: h.baseSequence,
      compression: h.compression,
      timestamp: h.firstTimestamp,
      lastOffsetDelta: h.lastOffsetDelta,
      isTransactional: h.isTransactional,
      isControl: h.isControl,
    },
  );
}
