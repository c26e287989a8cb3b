/**
 * The partition log: an append-only sequence of RecordBatch v2 batches in segment files, the one
 * store of a partition's records (and later its Raft log). How the parts work together:
 *
 *   append ──► offsets assigned at once, in call order ──► GroupCommit queue (flusher.ts)
 *                                                          │ one writer: coalesced writes to the
 *                                                          │ active Segment, rolling as needed,
 *                                                          ▼ then one fdatasync for the round
 *   high watermark advances, listeners run, appends resolve
 *
 *   read ──► segment by binary search ──► offset index ──► header scan ──► whole batches, CRC
 *            checked, never past the high watermark (readers never wait for the writer)
 *
 *   replicated mode (`highWatermark: "external"`, used by src/cluster/replica-log.ts): durable
 *   appends move only `durableEnd`; the owner moves the high watermark with `commitTo` (the Raft
 *   commit), `readDurable` serves replication up to the durable end, retention asks the owner's
 *   hook before deleting, and compaction keeps emptied batches so the batch count never changes.
 *
 *   maintenance (one at a time, behind a small mutex): retention deletes old closed segments,
 *   compaction rewrites closed segments, truncateTo cuts the tail. Rolling happens in the writer
 *   and only ever adds a segment, so it needs no lock (the closed segment's index files are
 *   written after, as a maintenance task); compaction and retention only touch sealed segments.
 *   Readers hold a reference on the segment they read, so a swap or delete never closes a file
 *   under them.
 *
 * On-disk format: segment.ts (files and naming), offset-index.ts, time-index.ts, and
 * record-batch.ts (the batches). Crash recovery on open: recovery.ts.
 *
 * @example
 *   const log = await PartitionLog.open("/data/t-0", config, { fs: nodeFileSystem, clock: systemClock });
 *   const { baseOffset } = await log.append(encodeBatch([{ key: null, value }], { timestamp: Date.now() }));
 *   const { batches } = await log.read(baseOffset, 1 << 20);
 */
import { TributaryError, assert } from "../errors.ts";
import { createLogger, type Logger } from "../logger.ts";
import type { Clock } from "../runtime/clock.ts";
import type { FileSystem } from "../runtime/fs.ts";
import { compactSegments, type CompactionStats } from "./compaction.ts";
import { GroupCommit, processBlockingRounds, type BlockingRounds, type PendingAppend } from "./flusher.ts";
import { BATCH_LENGTH_PREFIX_BYTES, batchSizeAt, decodeRecords, readBatchHeader, setBatchBaseOffset, verifyBatchCrc, type BatchHeader } from "./record-batch.ts";
import { recoverSegments } from "./recovery.ts";
import { segmentsToDelete, type SegmentInfo } from "./retention.ts";
import { BatchCursor, Segment, SEGMENT_MAX_BYTES, SEGMENT_MAX_OFFSETS, segmentFileName } from "./segment.ts";

export type { CompactionStats } from "./compaction.ts";
export type { SegmentInfo } from "./retention.ts";

export type CleanupPolicy = "delete" | "compact" | "compact,delete";

/**
 * When appends become durable, and so when they are acknowledged and visible to readers.
 * - "batch": every append waits for an fdatasync; appends that arrive while one sync runs share
 *   the next one (group commit). The default.
 * - "interval": appends wait for the next sync, started every `intervalMs` or as soon as
 *   `bytes` unsynced bytes have accumulated, whichever comes first. Fewer syncs, higher latency.
 * - "none": never fdatasync; an append is acknowledged once written to the OS (survives kill -9,
 *   not a power cut). For benchmarks and throwaway data. (Rolling a segment and close() still
 *   sync: they are rare and leave closed segments complete.)
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
  deleteRetentionMs: number; // how long compaction keeps a tombstone (counted from its record timestamp)
  maxMessageBytes: number; // largest batch accepted by append
  flush: FlushPolicy;
  /** Appended bytes not yet durable beyond which append waits (backpressure); over 4x, it refuses with OVERLOADED. */
  maxPendingBytes: number;
  /**
   * How far ahead of its appends the active segment's file is extended (ftruncate: a hole, no
   * blocks used until written), so the fdatasync after an append has no file size to commit.
   * 0: each append grows the file. Default PREALLOCATE_BYTES_DEFAULT.
   */
  preallocateBytes?: number;
}

/**
 * 1 MiB: one extension (one size change to commit) per MiB appended. On this project's ext4 test
 * disk one append in flight took 282 µs at the median and wrote 6.4 KiB to the device per 1 KiB
 * append with it, against 360 µs and 9.1 KiB without (`npm run bench:preallocate`,
 * bench/RESULTS.md, "Preallocation").
 */
export const PREALLOCATE_BYTES_DEFAULT = 1024 * 1024;

export interface LogDeps {
  fs: FileSystem;
  clock: Clock;
  /** Where recovery warnings and failures go; default: JSON lines on stderr at "info". */
  logger?: Logger;
  /** Shared by the logs of one process (flusher.ts); default processBlockingRounds. Tests give their own. */
  blockingRounds?: BlockingRounds;
}

/**
 * How the log is used; the defaults are the single-node broker's.
 * - highWatermark "durable" (default): a durable append moves the high watermark. "external": it
 *   moves only `durableEnd`, and `commitTo` moves the high watermark (a replicated log, where
 *   readers may only see what a quorum holds).
 * - keepEmptyBatches: compaction leaves a batch that lost all its records in place as an empty
 *   batch (header, lastOffsetDelta kept) instead of dropping it, so the number of batches (a
 *   replicated log's Raft indexes) never changes. Default false.
 */
export interface LogOptions {
  highWatermark?: "durable" | "external";
  keepEmptyBatches?: boolean;
}

/**
 * Called by retention with the log start offset it is about to move to, before any file goes;
 * the deletion waits for it and is abandoned if it throws. A replicated log records its new Raft
 * anchor here, so a crash between the two leaves the anchor ahead, which its owner repairs at open.
 * `scan` reads batch headers as `scanBatchHeaders` does, within the pass (which holds the log's
 * maintenance turn, so the hook must not call `scanBatchHeaders` itself).
 */
export type RetentionHook = (newLogStartOffset: number, scan: HeaderScan) => Promise<void>;

/** Visit durable batch headers from `fromOffset` on, in offset order, until a visit returns false. */
export type HeaderScan = (fromOffset: number, visit: (header: BatchHeader) => boolean | void) => Promise<void>;

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

type State = "open" | "truncating" | "closing" | "closed" | "failed";

/** Writes up to this size go to the file in one (vectored) write call; larger rounds are split. */
const COALESCE_BYTES = 8 << 20;
/** A blocking round holds a few batches at most (the flusher asks for lone appends). */
const MAX_BLOCKING_ITEMS = 16;
/** Appends are refused once pending bytes would pass this multiple of maxPendingBytes. */
const OVERLOAD_FACTOR = 4;

const EMPTY = new Uint8Array(0);

export class PartitionLog {
  private state: State = "open";
  private failure: TributaryError | null = null;
  private nextOffset: number;
  private hw: number;
  /** Offsets below this are durable (in "durable" mode always equal to hw). */
  private durable: number;
  private retentionHook: RetentionHook | null = null;
  private readonly listeners = new Set<(highWatermark: number) => void>();
  private readonly flusher: GroupCommit;
  private get preallocateBytes(): number {
    return this.config.preallocateBytes ?? PREALLOCATE_BYTES_DEFAULT;
  }
  /** Segments written to since their last datasync. */
  private readonly dirty = new Set<Segment>();
  /** Where each queued append landed, in queue order: [segment, end position]. */
  private readonly placements: { segment: Segment; end: number }[] = [];
  private placementHead = 0;
  private maintenance: Promise<unknown> = Promise.resolve();
  private closed: Promise<void> | null = null;

  private constructor(
    private readonly dir: string,
    private config: LogConfig,
    private readonly fs: FileSystem,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private segments: Segment[],
    private readonly options: LogOptions,
    blockingRounds: BlockingRounds,
  ) {
    this.nextOffset = this.active.nextOffset;
    this.durable = this.nextOffset;
    // Replicated: nothing is known committed until the owner says so (commitTo, after reading its state).
    this.hw = this.external ? this.logStartOffset : this.nextOffset;
    this.flusher = new GroupCommit(
      {
        write: (items) => this.writeRound(items),
        writeSyncNow: (items) => this.writeSyncNow(items),
        sync: () => this.syncDirty(),
        durable: (items) => this.advance(items),
        failed: (e) => this.fail(e),
      },
      clock,
      () => this.config,
      blockingRounds,
    );
  }

  /** Open (creating if needed) and recover the log in `dir`: torn or corrupt tail truncated, indexes rebuilt. */
  static async open(dir: string, config: LogConfig, deps: LogDeps, options: LogOptions = {}): Promise<PartitionLog> {
    checkConfig(config);
    const logger = deps.logger ?? createLogger("info");
    await deps.fs.mkdirp(dir);
    const segments = await recoverSegments(dir, {
      fs: deps.fs,
      clock: deps.clock,
      logger,
      indexIntervalBytes: config.indexIntervalBytes,
      maxMessageBytes: config.maxMessageBytes,
    });
    return new PartitionLog(dir, config, deps.fs, deps.clock, logger, segments, options, deps.blockingRounds ?? processBlockingRounds);
  }

  private get active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  private get external(): boolean {
    return this.options.highWatermark === "external";
  }

  /** First offset still stored. */
  get logStartOffset(): number {
    return this.segments[0]!.baseOffset;
  }
  /** Next offset to be assigned. */
  get logEndOffset(): number {
    return this.nextOffset;
  }
  /** Readers never see past it: offsets durable under the flush policy, or (external) the owner's commitTo. */
  get highWatermark(): number {
    return this.hw;
  }
  /** Offsets below this are durable under the flush policy (the high watermark, unless external). */
  get durableEnd(): number {
    return this.durable;
  }
  /** Bytes of all segments. */
  get sizeBytes(): number {
    let n = 0;
    for (const s of this.segments) n += s.size;
    return n;
  }
  /** Number of segment files, the active one included. */
  get segmentCount(): number {
    return this.segments.length;
  }
  /** Base offsets of the segments, oldest first (for tests and metrics). */
  get segmentBaseOffsets(): number[] {
    return this.segments.map((s) => s.baseOffset);
  }
  /**
   * Every segment as a retention planner sees it, oldest first, the active one last (never
   * deletable). A snapshot: what `retainFrom` then deletes is checked again against the log.
   */
  segmentInfos(): SegmentInfo[] {
    return this.segments.map((s) => ({
      baseOffset: s.baseOffset,
      lastOffset: s.nextOffset - 1,
      sizeBytes: s.size,
      maxTimestampMs: s.maxTimestamp,
      deletable: this.settled(s),
    }));
  }
  /** How the log was opened (see LogOptions). */
  get logOptions(): Readonly<LogOptions> {
    return this.options;
  }
  /** True once a write or sync failed: the log refuses appends until reopened. */
  get isFailed(): boolean {
    return this.state === "failed";
  }

  // ---- append ---------------------------------------------------------------------------------

  /**
   * Append one RecordBatch v2 (the log takes ownership and rewrites its baseOffset in place).
   * Checks CRC (CORRUPT_RECORD) and size (RECORD_TOO_LARGE); resolves once durable per the flush policy.
   * The offset is assigned before this returns, so appends made in a row get offsets in call order.
   * `crcVerified`: the caller checked this batch's CRC in this process already (a replicated
   * partition's leader checks a batch before proposing it), or computed it (a batch the broker
   * encoded from a produce request's records), so it is not computed a second time.
   */
  append(batch: Uint8Array, options: { crcVerified?: boolean } = {}): Promise<AppendResult> {
    if (this.state !== "open") return Promise.reject(this.refusal());
    if (batch.length > this.config.maxMessageBytes) {
      return Promise.reject(new TributaryError("RECORD_TOO_LARGE", `batch of ${batch.length} bytes is over max.message.bytes ${this.config.maxMessageBytes}`));
    }
    let lastOffsetDelta: number;
    let maxTimestamp: number;
    try {
      const h = readBatchHeader(batch);
      if (batchSizeAt(batch) !== batch.length) throw new TributaryError("CORRUPT_RECORD", `batch length field says ${h.batchLength + BATCH_LENGTH_PREFIX_BYTES} bytes, got ${batch.length}`);
      if (!options.crcVerified && !verifyBatchCrc(batch)) throw new TributaryError("CORRUPT_RECORD", "batch CRC-32C does not match its bytes");
      lastOffsetDelta = h.lastOffsetDelta;
      maxTimestamp = h.maxTimestamp;
    } catch (e) {
      return Promise.reject(e);
    }
    const limit = OVERLOAD_FACTOR * this.config.maxPendingBytes;
    if (this.flusher.pendingBytes > 0 && this.flusher.pendingBytes + batch.length > limit) {
      return Promise.reject(new TributaryError("OVERLOADED", `partition log has ${this.flusher.pendingBytes} bytes waiting for the disk; retry later`));
    }
    const baseOffset = this.nextOffset;
    const lastOffset = baseOffset + lastOffsetDelta;
    setBatchBaseOffset(batch, baseOffset);
    this.nextOffset = lastOffset + 1;
    return this.flusher.enqueue(batch, baseOffset, lastOffset, maxTimestamp).then(() => ({ baseOffset, lastOffset }));
  }

  private refusal(): TributaryError {
    if (this.state === "failed" && this.failure) return this.failure;
    if (this.state === "truncating") return new TributaryError("NOT_READY", "the log is being truncated; retry");
    return new TributaryError("NOT_READY", "the partition log is closed");
  }

  /** One writer round (called by the flusher only): lay the batches out, rolling when needed, and write them. */
  private async writeRound(items: PendingAppend[]): Promise<void> {
    let seg = this.active;
    let start = seg.size;
    let chunk: Uint8Array[] = [];
    let chunkBytes = 0;
    const flushChunk = async () => {
      if (chunk.length === 0) return;
      this.dirty.add(seg);
      await this.extend(seg, start + chunkBytes);
      if (chunk.length === 1) await seg.handle.write(chunk[0]!, start);
      else await seg.handle.writev(chunk, start);
      start += chunkBytes;
      chunk = [];
      chunkBytes = 0;
    };
    for (const item of items) {
      const size = item.bytes.length;
      if (this.shouldRoll(seg, size, item.lastOffset)) {
        await flushChunk();
        seg = await this.roll(item.baseOffset);
        start = 0;
      }
      this.place(seg, item);
      chunk.push(item.bytes);
      chunkBytes += size;
      if (chunkBytes >= COALESCE_BYTES) await flushChunk();
    }
    await flushChunk();
  }

  private shouldRoll(seg: Segment, size: number, lastOffset: number): boolean {
    if (seg.size === 0) return false;
    return (
      seg.size + size > this.config.segmentBytes ||
      seg.size + size > SEGMENT_MAX_BYTES ||
      lastOffset - seg.baseOffset >= SEGMENT_MAX_OFFSETS ||
      this.clock.now() - seg.createdAtMs >= this.config.segmentMs
    );
  }

  /**
   * The flusher's blocking round (GroupCommit.tryBlocking): write `items` and sync them with
   * blocking calls, when they all fit the active segment, no other segment waits for a sync and
   * the handle has blocking calls. Returns how long the disk took (ms), or null, having done
   * nothing, when it cannot; a failure throws as the flusher's other rounds do.
   */
  private writeSyncNow(items: PendingAppend[]): number | null {
    const seg = this.active;
    const blocking = seg.handle.blocking;
    if (!blocking || items.length === 0 || items.length > MAX_BLOCKING_ITEMS) return null;
    if (this.dirty.size > 1 || (this.dirty.size === 1 && !this.dirty.has(seg))) return null;
    let bytes = 0;
    for (const item of items) bytes += item.bytes.length;
    if (this.shouldRoll(seg, bytes, items[items.length - 1]!.lastOffset)) return null;
    const start = seg.size;
    // The extension (once per preallocateBytes) goes through a pooled round.
    if (this.preallocateBytes > 0 && start + bytes > seg.fileBytes) return null;
    const t0 = performance.now();
    for (const item of items) this.place(seg, item);
    this.dirty.add(seg);
    blocking.writev(items.map((i) => i.bytes), start);
    blocking.datasync();
    this.dirty.delete(seg);
    return performance.now() - t0;
  }

  /**
   * Make `seg`'s file reach `end` before bytes are written up to it: extended by preallocateBytes
   * past it (not past segment.bytes, where the segment rolls, unless `end` is), so most syncs
   * commit no size change. Runs in the writer, in order with its writes: an extension can never
   * cut a write short.
   */
  private async extend(seg: Segment, end: number): Promise<void> {
    if (this.preallocateBytes === 0 || end <= seg.fileBytes) return;
    const length = Math.max(end, Math.min(end + this.preallocateBytes, this.config.segmentBytes));
    await seg.handle.truncate(length);
    seg.fileBytes = length;
  }

  /**
   * Give back what the file holds past its batches (a segment that stops taking appends, or a
   * clean close), synced; `unsynced`: the segment also holds batches not synced yet, which the
   * same sync covers.
   */
  private async trimToSize(seg: Segment, unsynced = false): Promise<void> {
    const cut = seg.fileBytes !== seg.size;
    if (cut) await seg.handle.truncate(seg.size);
    if (cut || unsynced) await seg.handle.datasync();
    seg.fileBytes = seg.size;
  }

  /** Lay one batch out at the end of `seg` (its indexes, and where readers may read to once durable). */
  private place(seg: Segment, item: PendingAppend): void {
    if (seg.size === 0) seg.createdAtMs = this.clock.now();
    const position = seg.size;
    seg.noteBatch(position, item.bytes.length, item.baseOffset, item.lastOffset, item.maxTimestamp, this.config.indexIntervalBytes);
    this.placements.push({ segment: seg, end: position + item.bytes.length });
  }

  /**
   * Close the active segment (cut to its batches and synced, in one sync) and open a new one at
   * `baseOffset`; the closed segment's index files are written after, off the writer's path.
   * The appends waiting for this round wait for the roll: with the index files in it (two
   * atomic replacements, four more syncs) the append that rolled took 10.5x the median append,
   * now 5.6x (`npm run bench:roll`, 1 MiB segments, 2026-12-02). Nothing depends on those files
   * being there: recovery scans a closed segment whose index files are missing or do not match
   * it (recovery.ts), and each file is replaced atomically, so a crash leaves it whole or absent.
   */
  private async roll(baseOffset: number): Promise<Segment> {
    const old = this.active;
    // Exact before the next segment exists: recovery reads a closed segment's size from its file.
    await this.trimToSize(old, this.dirty.delete(old));
    const next = await this.startSegment(baseOffset);
    // After the structural changes queued before (truncation, retention, compaction wait for it).
    void this.exclusive(async () => {
      if (this.state !== "closed") await old.writeIndexes(this.fs);
    }).catch((e: unknown) => this.logger.warn("could not write a closed segment's index files; they are rebuilt when the log opens", { dir: this.dir, segment: old.logPath, error: e }));
    return next;
  }

  /** Create an empty active segment at `baseOffset` after the current one; durable before anything lands in it. */
  private async startSegment(baseOffset: number): Promise<Segment> {
    const name = `${this.dir}/${segmentFileName(baseOffset, ".log")}`;
    const handle = await this.fs.open(name, "create");
    await this.fs.syncDir(this.dir);
    const seg = new Segment(this.dir, baseOffset, handle, { size: 0, createdAtMs: this.clock.now() });
    this.active.active = false;
    seg.active = true;
    this.segments.push(seg);
    return seg;
  }

  private async syncDirty(): Promise<void> {
    const segs = [...this.dirty];
    this.dirty.clear();
    for (const s of segs) s.acquire();
    try {
      await Promise.all(segs.map((s) => s.handle.datasync()));
    } finally {
      for (const s of segs) s.release();
    }
  }

  /** The flusher made these durable: move each segment's readable limit and the high watermark. */
  private advance(items: PendingAppend[]): void {
    for (let i = 0; i < items.length; i++) {
      const p = this.placements[this.placementHead++]!;
      if (p.end > p.segment.readableBytes) p.segment.readableBytes = p.end;
    }
    if (this.placementHead > 1024 && this.placementHead * 2 > this.placements.length) {
      this.placements.splice(0, this.placementHead);
      this.placementHead = 0;
    }
    const last = items[items.length - 1];
    if (!last || last.lastOffset + 1 <= this.durable) return;
    this.durable = last.lastOffset + 1;
    if (!this.external) this.moveHighWatermark(this.durable);
  }

  /**
   * Replicated mode: offsets below `offset` are committed, so readers may see them. Monotonic
   * (a lower value is ignored); never past the durable end, since a reader must never see what
   * a crash could take back.
   */
  commitTo(offset: number): void {
    assert(this.external, "commitTo is for a log opened with highWatermark: external");
    assert(Number.isSafeInteger(offset) && offset <= this.durable, `commit to ${offset} beyond the durable end ${this.durable}`);
    if (offset > this.hw) this.moveHighWatermark(offset);
  }

  private moveHighWatermark(hw: number): void {
    this.hw = hw;
    for (const listener of this.listeners) {
      try {
        listener(this.hw);
      } catch (e) {
        this.logger.error("high watermark listener threw", { dir: this.dir, error: e });
      }
    }
  }

  private fail(error: unknown): void {
    this.state = "failed";
    this.failure = error instanceof TributaryError ? error : new TributaryError("STORAGE_ERROR", String(error), { cause: error });
    this.logger.error("partition log failed: the disk refused a write or sync; no more appends until it is reopened", {
      dir: this.dir,
      error: error instanceof Error ? (error.cause instanceof Error ? error.cause : error) : undefined,
    });
  }

  // ---- read -----------------------------------------------------------------------------------

  /**
   * Whole batches from the one holding `offset`, up to `maxBytes` (but always at least one batch,
   * so a reader can make progress), never past the high watermark. Empty at the high watermark.
   * OFFSET_OUT_OF_RANGE below logStartOffset or above highWatermark.
   */
  read(offset: number, maxBytes: number): Promise<ReadResult> {
    return this.readBelow(offset, maxBytes, this.hw);
  }

  /**
   * As `read`, but up to the durable end rather than the high watermark: a replicated log's
   * leader sends followers entries that are durable here and not yet committed.
   */
  readDurable(offset: number, maxBytes: number): Promise<ReadResult> {
    return this.readBelow(offset, maxBytes, this.durable);
  }

  private async readBelow(offset: number, maxBytes: number, end: number): Promise<ReadResult> {
    const start = this.logStartOffset;
    if (!Number.isSafeInteger(offset) || offset < start || offset > end) {
      throw new TributaryError("OFFSET_OUT_OF_RANGE", `offset ${offset} is outside the log [${start}, ${end}]`);
    }
    let seg: Segment | undefined = this.segmentFor(offset);
    while (seg && offset < end) {
      seg.acquire();
      try {
        const limit = seg.readableBytes;
        const found = await seg.findBatch(offset, limit);
        if (found) {
          const batches = await seg.readBatches(found.position, found.size, limit, maxBytes);
          return { batches: end < this.durable ? batchesBelow(batches, end) : batches, highWatermark: this.hw, logStartOffset: this.logStartOffset };
        }
      } finally {
        seg.release();
      }
      // Nothing at or after `offset` in this segment (compaction left a gap at its end): go on.
      seg = this.segmentAfter(seg.baseOffset);
    }
    return { batches: EMPTY, highWatermark: this.hw, logStartOffset: this.logStartOffset };
  }

  /** The segment whose range holds `offset` (the last with baseOffset <= offset), or the first. */
  private segmentFor(offset: number): Segment | undefined {
    let lo = 0;
    let hi = this.segments.length - 1;
    let found = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.segments[mid]!.baseOffset <= offset) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return this.segments[found];
  }

  private segmentAfter(baseOffset: number): Segment | undefined {
    return this.segments.find((s) => s.baseOffset > baseOffset);
  }

  /** The first offset whose record timestamp is >= `timestampMs`, or null if none. */
  async offsetForTimestamp(timestampMs: number): Promise<number | null> {
    for (const seg of [...this.segments]) {
      if (seg.maxTimestamp < timestampMs) continue;
      seg.acquire();
      try {
        const found = await this.scanForTimestamp(seg, timestampMs);
        if (found !== null) return found;
      } finally {
        seg.release();
      }
    }
    return null;
  }

  private async scanForTimestamp(seg: Segment, timestampMs: number): Promise<number | null> {
    const limit = seg.readableBytes;
    const rel = seg.timeIndex.lastBefore(timestampMs);
    const start = rel < 0 ? 0 : seg.offsetIndex.lookup(rel);
    const cursor = new BatchCursor(seg.handle, start, limit, { bodies: false, verifyCrc: false, windowBytes: 16 * 1024 });
    for (;;) {
      const b = await cursor.next();
      if (!b) {
        if (cursor.problem) throw new TributaryError("CORRUPT_RECORD", `segment ${seg.logPath}: ${cursor.problem}`);
        return null;
      }
      // Control batches (a replicated log's Raft no-ops and membership changes) hold no records for readers.
      if (b.header.maxTimestamp < timestampMs || b.header.isControl) continue;
      const bytes = await seg.readBatches(b.position, b.size, limit, b.size);
      for (const r of decodeRecords(bytes.subarray(0, b.size))) {
        if (r.timestamp >= timestampMs && r.offset >= this.logStartOffset && r.offset < this.hw) return r.offset;
      }
    }
  }

  /** Called with the new high watermark whenever it advances. Returns an unsubscribe function. */
  onHighWatermark(listener: (highWatermark: number) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  // ---- maintenance ----------------------------------------------------------------------------

  /** Run `fn` after every earlier maintenance task: roll aside, one structural change at a time. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.maintenance.then(fn, fn);
    this.maintenance = run.catch(() => undefined);
    return run;
  }

  private checkUsable(): void {
    if (this.state === "failed" && this.failure) throw this.failure;
    if (this.state === "closing" || this.state === "closed") throw new TributaryError("NOT_READY", "the partition log is closed");
  }

  /**
   * Remove every batch at or after the one holding `offset` (Raft truncates a conflicting suffix).
   * The log end offset becomes that batch's base offset (or `offset`, if no batch holds it);
   * the high watermark drops to it if it was higher. Appends made meanwhile are refused with
   * NOT_READY, since their offsets cannot be known until the cut is made.
   */
  truncateTo(offset: number): Promise<void> {
    return this.exclusive(async () => {
      this.checkUsable();
      if (offset >= this.nextOffset) return;
      this.state = "truncating";
      try {
        await this.flusher.syncAll();
        await this.flusher.idle();
        await this.cut(Math.max(offset, this.logStartOffset));
      } finally {
        if (this.state === "truncating") this.state = "open";
      }
    });
  }

  private async cut(target: number): Promise<void> {
    let removed = false;
    while (this.segments.length > 1 && this.active.baseOffset > target) {
      const gone = this.segments.pop()!;
      await this.deleteSegmentFiles(gone);
      removed = true;
    }
    const seg = this.active;
    const found = await seg.findBatch(target, seg.size);
    const cutAt = found ? found.position : seg.size;
    const newEnd = found ? Math.min(found.header.baseOffset, target) : target;
    // The segment takes appends again: its index files would go stale, so they go first.
    await this.fs.remove(seg.indexPath);
    await this.fs.remove(seg.timeIndexPath);
    if (removed) await this.fs.syncDir(this.dir);
    await seg.handle.truncate(cutAt);
    await seg.handle.datasync();
    seg.fileBytes = cutAt;
    await seg.rebuild(this.config.indexIntervalBytes, false, cutAt);
    seg.active = true;
    seg.createdAtMs = this.clock.now();
    this.nextOffset = newEnd;
    if (this.durable > newEnd) this.durable = newEnd;
    if (this.hw > newEnd) this.hw = newEnd;
    if (newEnd > seg.nextOffset) {
      // No batch ends at newEnd (compaction left a gap there), so recovery could not find the end
      // in this segment: close it and start an empty one at newEnd, whose name says where it is.
      seg.nextOffset = newEnd;
      await seg.writeIndexes(this.fs);
      await this.startSegment(newEnd);
    }
  }

  private async deleteSegmentFiles(seg: Segment): Promise<void> {
    this.dirty.delete(seg);
    // POSIX keeps an unlinked file readable through open handles: readers finish, then retire() closes it.
    await this.fs.remove(seg.logPath);
    await this.fs.remove(seg.indexPath);
    await this.fs.remove(seg.timeIndexPath);
    await seg.retire();
  }

  /**
   * Delete closed segments past retention.ms / retention.bytes; returns how many went. Only
   * segments wholly below the high watermark go (in replicated mode: committed ones), and with a
   * hook installed (`setRetentionHook`) only after it resolved. A replicated log without a hook
   * deletes nothing: its owner must learn of every move of the log start. With `floorOffset`,
   * only segments wholly below it go (a mirror target keeps the segment holding its newest
   * stamped batch: src/mirror/central.ts).
   */
  enforceRetention(floorOffset: number | null = null): Promise<number> {
    return this.exclusive(async () => {
      this.checkUsable();
      if (!this.config.cleanupPolicy.includes("delete")) return 0;
      if (this.external && !this.retentionHook) return 0;
      const candidates = this.segments.map((s) => ({ sizeBytes: s.size, maxTimestampMs: s.maxTimestamp, deletable: this.settled(s) && belowFloor(s, floorOffset) }));
      const n = segmentsToDelete(candidates, this.clock.now(), this.config.retentionMs, this.config.retentionBytes);
      if (n === 0) return 0;
      await this.retentionHook?.(this.segments[n]!.baseOffset, this.scanNow);
      await this.dropFront(n);
      return n;
    });
  }

  /**
   * Delete the front segments a retention planner chose (src/mirror/retention-policy.ts): those
   * wholly below `newLogStartOffset`, each closed and settled, as far as the prefix goes. Exactly
   * as `enforceRetention` deletes: the hook first (a replicated log moves its Raft anchor), and a
   * replicated log without a hook deletes nothing. Returns how many went.
   */
  retainFrom(newLogStartOffset: number): Promise<number> {
    return this.exclusive(async () => {
      this.checkUsable();
      if (this.external && !this.retentionHook) return 0;
      let n = 0;
      while (n < this.segments.length - 1 && this.segments[n + 1]!.baseOffset <= newLogStartOffset && this.settled(this.segments[n]!)) n++;
      if (n === 0) return 0;
      await this.retentionHook?.(this.segments[n]!.baseOffset, this.scanNow);
      await this.dropFront(n);
      return n;
    });
  }

  /** What the retention hook reads headers with: `scanBatchHeaders` within the pass's maintenance turn. */
  private readonly scanNow: HeaderScan = (fromOffset, visit) => this.scanHeadersNow(fromOffset, visit);

  /** Install the hook retention calls before deleting (one per log; a replicated log's owner). */
  setRetentionHook(hook: RetentionHook): void {
    this.retentionHook = hook;
  }

  /**
   * Delete the closed segments that lie wholly below `offset` (a replicated log's owner finishing
   * a retention pass a crash interrupted, after its anchor had moved). Returns how many went.
   */
  deleteSegmentsBelow(offset: number): Promise<number> {
    return this.exclusive(async () => {
      this.checkUsable();
      let n = 0;
      while (n < this.segments.length - 1 && this.segments[n + 1]!.baseOffset <= offset && this.segments[n]!.sealed) n++;
      if (n > 0) await this.dropFront(n);
      return n;
    });
  }

  private async dropFront(n: number): Promise<void> {
    const gone = this.segments.slice(0, n);
    this.segments = this.segments.slice(n);
    for (const seg of gone) await this.deleteSegmentFiles(seg);
    await this.fs.syncDir(this.dir);
  }

  /** Sealed and wholly below the high watermark: retention and compaction may touch it. */
  private settled(s: Segment): boolean {
    // In "durable" mode sealed already means acknowledged; in external mode the commit may lag the disk.
    return s.sealed && (!this.external || s.nextOffset <= this.hw);
  }

  /**
   * Drop every segment and start empty at `offset`, durable when this resolves (a replicated log
   * installing a snapshot). Not atomic: a crash midway leaves some old segments or none, so the
   * caller records its intent first and calls this again at open.
   */
  resetTo(offset: number): Promise<void> {
    assert(Number.isSafeInteger(offset) && offset >= 0, `reset to ${offset}: not an offset`);
    return this.exclusive(async () => {
      this.checkUsable();
      this.state = "truncating";
      try {
        await this.flusher.syncAll();
        await this.flusher.idle();
        for (const seg of this.segments) await this.deleteSegmentFiles(seg);
        await this.fs.syncDir(this.dir);
        const name = `${this.dir}/${segmentFileName(offset, ".log")}`;
        const handle = await this.fs.open(name, "create");
        await this.fs.syncDir(this.dir);
        const seg = new Segment(this.dir, offset, handle, { size: 0, createdAtMs: this.clock.now() });
        seg.active = true;
        this.segments = [seg];
        this.placements.length = 0;
        this.placementHead = 0;
        this.nextOffset = offset;
        this.durable = offset;
        if (offset > this.hw) this.moveHighWatermark(offset);
        else this.hw = offset;
      } finally {
        if (this.state === "truncating") this.state = "open";
      }
    });
  }

  /**
   * Visit the header of every durable batch at or after `fromOffset`, in offset order, reading
   * headers and skipping bodies (no CRC check: recovery checked the tail at open). For building
   * an in-memory view of the batches, such as a replicated log's Raft index. A visit that returns
   * false ends the scan there.
   */
  scanBatchHeaders(fromOffset: number, visit: (header: BatchHeader) => boolean | void): Promise<void> {
    return this.exclusive(() => this.scanHeadersNow(fromOffset, visit));
  }

  private async scanHeadersNow(fromOffset: number, visit: (header: BatchHeader) => boolean | void): Promise<void> {
    this.checkUsable();
    for (const seg of this.segments) {
      if (seg.nextOffset <= fromOffset) continue;
      seg.acquire();
      try {
        if (!(await seg.scanHeaders(fromOffset, seg.readableBytes, visit))) return;
      } finally {
        seg.release();
      }
    }
  }

  /**
   * For cleanupPolicy compact: keep the latest record per key in closed segments; appends go on
   * meanwhile. With `floorOffset`, only segments wholly below it are rewritten (see enforceRetention).
   */
  compact(floorOffset: number | null = null): Promise<CompactionStats> {
    return this.exclusive(async () => {
      this.checkUsable();
      const none: CompactionStats = { segmentsCleaned: 0, recordsRemoved: 0, bytesBefore: 0, bytesAfter: 0 };
      if (!this.config.cleanupPolicy.includes("compact")) return none;
      const sealed: Segment[] = [];
      for (const s of this.segments) {
        if (!this.settled(s) || !belowFloor(s, floorOffset)) break;
        sealed.push(s);
      }
      if (sealed.length === 0) return none;
      return compactSegments(sealed, {
        fs: this.fs,
        nowMs: this.clock.now(),
        deleteRetentionMs: this.config.deleteRetentionMs,
        keepEmptyBatches: this.options.keepEmptyBatches === true,
        shouldStop: () => this.state !== "open" && this.state !== "truncating",
        swap: (seg) => this.swapCleaned(seg),
      });
    });
  }

  /** Put a segment's `.cleaned` file in its place and take it into use; readers of the old one keep their handle. */
  private async swapCleaned(old: Segment): Promise<void> {
    // Stale index files must not outlive the swap: a crash in between then rebuilds them.
    await this.fs.remove(old.indexPath);
    await this.fs.remove(old.timeIndexPath);
    await this.fs.rename(old.cleanedPath, old.logPath);
    await this.fs.syncDir(this.dir);
    const handle = await this.fs.open(old.logPath, "write");
    const fresh = new Segment(this.dir, old.baseOffset, handle, { size: 0, createdAtMs: old.createdAtMs });
    const { problem } = await fresh.rebuild(this.config.indexIntervalBytes, false);
    if (problem !== null) throw new Error(`invariant broken: compaction wrote a bad segment ${old.logPath}: ${problem}`);
    fresh.nextOffset = old.nextOffset;
    fresh.fileBytes = fresh.size; // compaction writes exact files
    await fresh.writeIndexes(this.fs);
    const i = this.segments.indexOf(old);
    if (i < 0) throw new Error(`invariant broken: segment ${old.logPath} vanished during compaction`);
    this.segments[i] = fresh;
    await old.retire();
  }

  /** Change retention, compaction and segment settings of an open log. */
  updateConfig(config: LogConfig): void {
    checkConfig(config);
    this.config = config;
  }

  /** Make everything appended so far durable. */
  async flush(): Promise<void> {
    this.checkUsable();
    await this.flusher.syncAll();
  }

  /** Flush, write indexes, close files. Appends made from now on are refused with NOT_READY. */
  close(): Promise<void> {
    if (this.closed) return this.closed;
    const wasFailed = this.state === "failed";
    this.state = "closing";
    this.closed = this.exclusive(async () => {
      try {
        if (!wasFailed) {
          await this.flusher.syncAll();
          await this.trimToSize(this.active);
          await this.active.writeIndexes(this.fs);
        }
      } finally {
        await this.flusher.idle();
        for (const seg of this.segments) await seg.retire();
        this.state = "closed";
      }
    });
    return this.closed;
  }
}

/**
 * The prefix of whole `batches` starting below `end`. Segments hold durable bytes; in replicated
 * mode the high watermark can be lower, and it always falls between batches.
 */
function batchesBelow(batches: Uint8Array, end: number): Uint8Array {
  let pos = 0;
  while (pos < batches.length && readBatchHeader(batches, pos).baseOffset < end) pos += batchSizeAt(batches, pos);
  return pos === batches.length ? batches : batches.subarray(0, pos);
}

function checkConfig(c: LogConfig): void {
  const positive = (name: string, v: number) => {
    if (!(Number.isFinite(v) && v > 0)) throw new TributaryError("INVALID_CONFIG", `${name} must be positive, got ${v}`);
  };
  positive("segmentBytes", c.segmentBytes);
  positive("segmentMs", c.segmentMs);
  positive("indexIntervalBytes", c.indexIntervalBytes);
  positive("maxMessageBytes", c.maxMessageBytes);
  positive("maxPendingBytes", c.maxPendingBytes);
  const pre = c.preallocateBytes ?? 0;
  if (!(Number.isSafeInteger(pre) && pre >= 0)) throw new TributaryError("INVALID_CONFIG", `preallocateBytes must be 0 or more, got ${pre}`);
  if (c.flush.mode === "interval") {
    positive("flush.intervalMs", c.flush.intervalMs);
    positive("flush.bytes", c.flush.bytes);
  }
}

/** A segment retention and compaction may touch under a floor: it lies wholly below it (no floor: every segment). */
function belowFloor(s: Segment, floorOffset: number | null): boolean {
  return floorOffset === null || s.nextOffset <= floorOffset;
}
