/**
 * One segment of a partition log: a `.log` file of RecordBatch v2 batches and its two sparse
 * indexes, named by the segment's base offset in 20 zero-padded digits (the width of the largest
 * int64), so that a plain sort of the directory listing is offset order:
 *
 *   00000000000000000000.log        batches, exactly the bytes appended (see record-batch.ts for
 *                                   the batch layout); no file header, no padding between batches
 *   00000000000000000000.index      sparse offset index (offset-index.ts)
 *   00000000000000000000.timeindex  sparse time index (time-index.ts)
 *   <name>.log.cleaned              compaction output, renamed over `<name>.log` once synced
 *   <name>.tmp                      an index being replaced atomically (writeFileAtomic)
 *
 * The `.log` file has no header of its own because each batch already carries its offset, length
 * and CRC-32C: a scan from byte 0 can always tell where a batch ends and whether it is intact,
 * and that is all recovery needs. A segment holds at most SEGMENT_MAX_BYTES bytes and
 * SEGMENT_MAX_OFFSETS offsets so that index entries fit in u32 fields.
 *
 * Readers hold a reference (`acquire`/`release`) while they read, so compaction can swap a cleaned
 * file in and retention can delete a segment without closing the handle under a reader: the old
 * handle is closed when the last reader lets go.
 */
import { TributaryError } from "../errors.ts";
import type { FileHandle, FileSystem } from "../runtime/fs.ts";
import { joinPath, writeFileAtomic } from "../runtime/fs.ts";
import { OffsetIndex } from "./offset-index.ts";
import {
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_PREFIX_BYTES,
  batchSizeAt,
  readBatchHeader,
  verifyBatchCrc,
  type BatchHeader,
} from "./record-batch.ts";
import { TimeIndex } from "./time-index.ts";

/** Keeps index positions within u32 with room to spare; the log rolls before a segment grows past it. */
export const SEGMENT_MAX_BYTES = 2 ** 31 - 1;
/** Keeps relative offsets within u32 likewise. */
export const SEGMENT_MAX_OFFSETS = 2 ** 31 - 1;

const OFFSET_DIGITS = 20;

export function segmentFileName(baseOffset: number, suffix: ".log" | ".index" | ".timeindex"): string {
  return String(baseOffset).padStart(OFFSET_DIGITS, "0") + suffix;
}

/** The base offset a `.log` file name stands for, or null if the name is not a segment's. */
export function parseSegmentFileName(name: string): number | null {
  const m = /^(\d{20})\.log$/.exec(name);
  if (!m) return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : null;
}

export interface ScannedBatch {
  position: number;
  size: number;
  header: BatchHeader;
  /** The whole batch when the cursor was asked for bodies; a view, valid until the next `next()`. */
  bytes: Uint8Array | null;
}

/**
 * Walks the batches of a segment file from `start` to `end`, reading in windows. Stops (returns
 * null) at `end`, or at the first batch that is not whole or not sane, and then says why in
 * `problem` and where in `position`: recovery truncates there.
 */
export class BatchCursor {
  position: number;
  problem: string | null = null;
  private buf: Uint8Array;
  private bufStart = 0;
  private bufLen = 0;
  private prevLastOffset = -1;

  constructor(
    private readonly handle: FileHandle,
    start: number,
    private readonly end: number,
    private readonly opts: { bodies: boolean; verifyCrc: boolean; windowBytes?: number },
  ) {
    this.position = start;
    // No bigger than what lies between start and end: a tail read's lookup walks a few KiB at most.
    this.buf = new Uint8Array(Math.max(BATCH_HEADER_BYTES, Math.min(opts.windowBytes ?? 64 * 1024, end - start)));
  }

  /** Make [pos, pos + n) available in the buffer; false if the file ends first. */
  private async fill(pos: number, n: number): Promise<boolean> {
    if (pos >= this.bufStart && pos + n <= this.bufStart + this.bufLen) return true;
    if (n > this.buf.length) this.buf = new Uint8Array(n);
    const want = Math.min(this.buf.length, this.end - pos);
    if (want < n) return false;
    let got = 0;
    while (got < want) {
      const r = await this.handle.read(this.buf, got, want - got, pos + got);
      if (r <= 0) break;
      got += r;
    }
    this.bufStart = pos;
    this.bufLen = got;
    return got >= n;
  }

  private stop(problem: string): null {
    this.problem = problem;
    return null;
  }

  async next(): Promise<ScannedBatch | null> {
    const pos = this.position;
    if (pos >= this.end) return null;
    if (!(await this.fill(pos, BATCH_LENGTH_PREFIX_BYTES))) return this.stop(`partial batch: ${this.end - pos} bytes at the end`);
    let size: number;
    try {
      size = batchSizeAt(this.buf, pos - this.bufStart);
    } catch (e) {
      return this.stop((e as Error).message);
    }
    if (size < BATCH_HEADER_BYTES) return this.stop(`batch of ${size} bytes at ${pos} is shorter than its header`);
    if (pos + size > this.end) return this.stop(`partial batch: ${this.end - pos} of ${size} bytes at ${pos}`);
    const need = this.opts.bodies || this.opts.verifyCrc ? size : BATCH_HEADER_BYTES;
    if (!(await this.fill(pos, need))) return this.stop(`short read at ${pos}`);
    const at = pos - this.bufStart;
    let header: BatchHeader;
    try {
      header = readBatchHeader(this.buf, at);
    } catch (e) {
      return this.stop((e as Error).message);
    }
    if (header.baseOffset <= this.prevLastOffset) {
      return this.stop(`batch at ${pos} starts at offset ${header.baseOffset}, not after ${this.prevLastOffset}`);
    }
    const bytes = need === size ? this.buf.subarray(at, at + size) : null;
    if (this.opts.verifyCrc && bytes && !verifyBatchCrc(bytes)) return this.stop(`CRC mismatch in the batch at ${pos} (offset ${header.baseOffset})`);
    this.prevLastOffset = header.baseOffset + header.lastOffsetDelta;
    this.position = pos + size;
    return { position: pos, size, header, bytes: this.opts.bodies ? bytes : null };
  }
}

export class Segment {
  readonly offsetIndex: OffsetIndex;
  readonly timeIndex: TimeIndex;
  /** Bytes of batches in the file, including writes not yet durable. */
  size: number;
  /**
   * The file's length: `size`, or more while the segment is active and the log extended the file
   * ahead of its appends (LogConfig.preallocateBytes). Past `size` the file holds zeros.
   */
  fileBytes: number;
  /** Bytes readers may see: batches below the high watermark. */
  readableBytes: number;
  /** Next offset after the last batch written here (for a closed segment: an upper bound). */
  nextOffset: number;
  /** Largest record timestamp written here; -1 when empty. */
  maxTimestamp: number;
  /** Clock time the segment was opened for appends; drives segment.ms. */
  createdAtMs: number;
  /** False once another segment became the active one. */
  active = false;
  private bytesSinceIndex = Number.POSITIVE_INFINITY;
  private refs = 1;
  private retired = false;
  private closing: Promise<void> | null = null;

  constructor(
    readonly dir: string,
    readonly baseOffset: number,
    readonly handle: FileHandle,
    init: { size: number; offsetIndex?: OffsetIndex; timeIndex?: TimeIndex; nextOffset?: number; createdAtMs: number },
  ) {
    this.size = init.size;
    this.fileBytes = init.size;
    this.readableBytes = init.size;
    this.offsetIndex = init.offsetIndex ?? new OffsetIndex();
    this.timeIndex = init.timeIndex ?? new TimeIndex();
    this.maxTimestamp = this.timeIndex.lastTimestamp;
    this.nextOffset = init.nextOffset ?? baseOffset;
    this.createdAtMs = init.createdAtMs;
  }

  get logPath(): string {
    return joinPath(this.dir, segmentFileName(this.baseOffset, ".log"));
  }
  get indexPath(): string {
    return joinPath(this.dir, segmentFileName(this.baseOffset, ".index"));
  }
  get timeIndexPath(): string {
    return joinPath(this.dir, segmentFileName(this.baseOffset, ".timeindex"));
  }
  get cleanedPath(): string {
    return `${this.logPath}.cleaned`;
  }

  /** Everything in it is durable and readable, and nothing more will be written: safe to clean or delete. */
  get sealed(): boolean {
    return !this.active && this.readableBytes === this.size;
  }

  /**
   * Account for a batch laid out at `position` (the log writes the bytes): index entries every
   * `indexIntervalBytes`, the newest timestamp, the next offset. Index entries may point at bytes
   * not yet durable; readers only look up offsets below the high watermark, so never reach them.
   */
  noteBatch(position: number, size: number, baseOffset: number, lastOffset: number, maxTimestamp: number, indexIntervalBytes: number): void {
    if (maxTimestamp > this.maxTimestamp) this.maxTimestamp = maxTimestamp;
    if (this.bytesSinceIndex >= indexIntervalBytes) {
      const rel = baseOffset - this.baseOffset;
      this.offsetIndex.append(rel, position);
      this.timeIndex.append(this.maxTimestamp, rel);
      this.bytesSinceIndex = 0;
    }
    this.bytesSinceIndex += size;
    this.size = Math.max(this.size, position + size);
    this.nextOffset = lastOffset + 1;
    this.lastBatchRelativeOffset = baseOffset - this.baseOffset;
  }
  private lastBatchRelativeOffset = -1;

  /** Rebuild both indexes (and size, next offset, newest timestamp) from a scan; returns where the scan stopped and why. */
  async rebuild(indexIntervalBytes: number, verifyCrc: boolean, end?: number): Promise<{ validBytes: number; problem: string | null }> {
    this.offsetIndex.clear();
    this.timeIndex.clear();
    this.maxTimestamp = -1;
    this.bytesSinceIndex = Number.POSITIVE_INFINITY;
    this.lastBatchRelativeOffset = -1;
    this.nextOffset = this.baseOffset;
    const limit = end ?? (await this.handle.size());
    const cursor = new BatchCursor(this.handle, 0, limit, { bodies: false, verifyCrc, windowBytes: 1 << 20 });
    let problem: string | null = null;
    for (;;) {
      const b = await cursor.next();
      if (!b) {
        problem = cursor.problem;
        break;
      }
      if (b.header.baseOffset < this.baseOffset) {
        problem = `batch at ${b.position} has offset ${b.header.baseOffset}, below the segment's base ${this.baseOffset}`;
        break;
      }
      if (b.header.baseOffset + b.header.lastOffsetDelta - this.baseOffset >= SEGMENT_MAX_OFFSETS) {
        problem = `batch at ${b.position} has offsets beyond what one segment may hold`;
        break;
      }
      this.noteBatch(b.position, b.size, b.header.baseOffset, b.header.baseOffset + b.header.lastOffsetDelta, b.header.maxTimestamp, indexIntervalBytes);
    }
    this.size = cursor.position;
    this.readableBytes = cursor.position;
    this.sealIndexes();
    return { validBytes: cursor.position, problem };
  }

  /** Give the time index a final entry for the last batch, so its last timestamp is the segment's newest. */
  sealIndexes(): void {
    if (this.lastBatchRelativeOffset >= 0) this.timeIndex.append(this.maxTimestamp, this.lastBatchRelativeOffset);
  }

  /**
   * Load the index files and check them against the log; false (and the caller rebuilds) when a
   * file is missing or anything is off: entries not increasing, out of range, the last offset
   * entry not at a batch with that offset, or more unindexed bytes at the end than the interval
   * allows.
   */
  async loadIndexes(fs: FileSystem, nextSegmentBase: number, maxUnindexedBytes: number): Promise<boolean> {
    const [offsetBytes, timeBytes] = await Promise.all([fs.readFile(this.indexPath), fs.readFile(this.timeIndexPath)]);
    if (!offsetBytes || !timeBytes) return false;
    if (this.size === 0) return offsetBytes.length === 0 && timeBytes.length === 0;
    const offsets = OffsetIndex.parse(offsetBytes, this.size);
    const times = TimeIndex.parse(timeBytes, nextSegmentBase - this.baseOffset);
    if (!offsets || !times || offsets.count === 0 || times.count === 0) return false;
    const lastRel = offsets.relativeOffsetAt(offsets.count - 1);
    const lastPos = offsets.positionAt(offsets.count - 1);
    if (offsets.positionAt(0) !== 0) return false;
    if (this.size - lastPos > maxUnindexedBytes) return false;
    if (times.lastRelativeOffset < lastRel) return false;
    const head = new Uint8Array(BATCH_HEADER_BYTES);
    if ((await this.handle.read(head, 0, head.length, lastPos)) !== head.length) return false;
    try {
      const h = readBatchHeader(head);
      if (h.baseOffset !== this.baseOffset + lastRel || lastPos + h.batchLength + BATCH_LENGTH_PREFIX_BYTES > this.size) return false;
    } catch {
      return false;
    }
    this.offsetIndex.replaceWith(offsets);
    this.timeIndex.replaceWith(times);
    this.maxTimestamp = times.lastTimestamp;
    this.nextOffset = nextSegmentBase;
    return true;
  }

  /** Write both index files, each atomically (readers of the file see the old or the new whole). */
  async writeIndexes(fs: FileSystem): Promise<void> {
    this.sealIndexes();
    await writeFileAtomic(fs, this.indexPath, this.offsetIndex.serialize());
    await writeFileAtomic(fs, this.timeIndexPath, this.timeIndex.serialize());
  }

  /** The first batch whose last offset is >= `offset`, among bytes [index hint, limit); null if none. */
  async findBatch(offset: number, limit: number): Promise<ScannedBatch | null> {
    const start = this.offsetIndex.lookup(Math.max(0, offset - this.baseOffset));
    if (start >= limit) return null;
    const cursor = new BatchCursor(this.handle, start, limit, { bodies: false, verifyCrc: false, windowBytes: 16 * 1024 });
    for (;;) {
      const b = await cursor.next();
      if (!b) {
        if (cursor.problem) throw new TributaryError("CORRUPT_RECORD", `segment ${this.logPath}: ${cursor.problem}`);
        return null;
      }
      if (b.header.baseOffset + b.header.lastOffsetDelta >= offset) return b;
    }
  }

  /**
   * Visit the headers of the batches at or after `fromOffset` below byte `limit`; bodies are
   * skipped, CRCs not checked. A visit that returns false stops the scan: then this returns false.
   */
  async scanHeaders(fromOffset: number, limit: number, visit: (header: BatchHeader) => boolean | void): Promise<boolean> {
    const start = this.offsetIndex.lookup(Math.max(0, fromOffset - this.baseOffset));
    const cursor = new BatchCursor(this.handle, start, limit, { bodies: false, verifyCrc: false, windowBytes: 64 * 1024 });
    for (;;) {
      const b = await cursor.next();
      if (!b) {
        if (cursor.problem) throw new TributaryError("CORRUPT_RECORD", `segment ${this.logPath}: ${cursor.problem}`);
        return true;
      }
      if (b.header.baseOffset >= fromOffset && visit(b.header) === false) return false;
    }
  }

  /**
   * Whole batches from `position` (where a batch starts) up to `maxBytes`, but at least the first
   * one, never past `limit`. Every batch's CRC is checked: a corrupt batch is never served.
   *
   * The read is a whole number of first-batch sizes: a producer's batches are mostly alike, so
   * the buffer then ends where a batch ends, instead of with part of one that is read from disk,
   * dropped and read again by the next call (a fifth of every read, with 100 KiB batches and a
   * 256 KiB Subscribe message).
   */
  async readBatches(position: number, firstSize: number, limit: number, maxBytes: number): Promise<Uint8Array> {
    const len = Math.min(limit - position, Math.max(firstSize, maxBytes - (maxBytes % firstSize)));
    const buf = new Uint8Array(len);
    let got = 0;
    while (got < len) {
      const r = await this.handle.read(buf, got, len - got, position + got);
      if (r <= 0) break;
      got += r;
    }
    let end = 0;
    while (end < got) {
      let size: number;
      try {
        size = batchSizeAt(buf, end);
      } catch (e) {
        throw new TributaryError("CORRUPT_RECORD", `segment ${this.logPath} at ${position + end}: ${(e as Error).message}`);
      }
      if (size < 0 || end + size > got) break;
      if (!verifyBatchCrc(buf.subarray(end, end + size))) {
        throw new TributaryError("CORRUPT_RECORD", `CRC mismatch in segment ${this.logPath} at ${position + end}: the batch is not served`);
      }
      end += size;
    }
    if (end === 0) throw new TributaryError("CORRUPT_RECORD", `segment ${this.logPath} at ${position}: batch shorter than its length says`);
    return buf.subarray(0, end);
  }

  acquire(): void {
    this.refs++;
  }

  release(): void {
    this.refs--;
    if (this.refs === 0) this.closing = this.handle.close();
  }

  /** The log lets go of the segment (deleted, or replaced by a cleaned copy); the handle closes after the last reader. */
  retire(): Promise<void> {
    if (!this.retired) {
      this.retired = true;
      this.release();
    }
    return this.closing ?? Promise.resolve();
  }
}
