/**
 * A partition's Raft log is its partition log: `ReplicaLog` is the Raft `Storage` of one
 * partition's group, over that partition's `PartitionLog` (opened with `highWatermark:
 * "external"` and `keepEmptyBatches`). Records are written once; followers store the leader's
 * bytes.
 *
 * ## The mapping
 *
 * One entry is one RecordBatch v2; its Raft index is the batch's ordinal (1 for the first batch
 * the group ever wrote) and its term is the batch's partitionLeaderEpoch (stamped on persist,
 * outside the CRC). A Normal entry with data is the batch itself: the leader's log stamps the
 * baseOffset into those bytes in place when it persists them, so what it then sends carries the
 * offsets, and a follower asserts its own log puts the batch at the same offset. A new leader's
 * no-op (Normal, empty) and a membership change are control batches (attributes bit 5) of one
 * record, key "raft:noop" (value null) or "raft:conf" (value: the encoded change), timestamp 0
 * and no producer, so every replica writes the same bytes; `entries()` turns them back into the
 * same Entry. Readers skip control batches (the broker's fetch, producer state, time lookups).
 *
 * ## raft.json
 *
 * Next to the segments, replaced atomically (writeFileAtomic), UTF-8 JSON:
 *
 *   { "version": 1, "term": 3, "vote": 2, "commit": 17, "voters": [1, 2, 3],
 *     "anchor": { "index": 0, "term": 0, "nextOffset": 0 }, "installing": false }
 *
 * - term, vote: Raft's hard state; written whenever either changes, before persist() resolves.
 * - commit: the last index applied (`commitTo`) when the file was written. It rides along with
 *   other writes, so it is stale-low, never high: it never passes what was applied, so a
 *   membership change is never counted applied before `setVoters` recorded it. At open it is the
 *   high watermark's start and `appliedHint`.
 * - voters: the configuration as last applied (`setVoters`), or the bootstrap voters.
 * - anchor: the entry just before the first stored batch (index 0, term 0 when never trimmed)
 *   and `nextOffset`, the offset where the first stored batch starts (the log start offset).
 * - installing: a snapshot's anchor was recorded but the log may not be reset yet; open resets.
 *
 * ## Crash safety
 *
 * - Entries, then the hard state: raft.json is written after the log's fsync, so its commit never
 *   names an entry that is not on disk. persist() resolves once all of it is durable.
 * - Truncation is durable before the new entries are appended (PartitionLog.truncateTo).
 * - Retention writes the new anchor before any segment goes; if a crash comes between, open
 *   deletes the segments wholly below the anchor, and ignores batches below it in any case.
 * - A snapshot install writes the anchor with `installing`, resets the log, appends, and clears
 *   the flag with the hard state; open redoes the reset while the flag is set.
 *
 * ## The cache
 *
 * Entries of the tail are held (the entries objects persisted, at most `cacheBytes` of them),
 * oldest evicted first, but never an entry above the applied index: those are still to be sent
 * and applied, and Raft's uncommitted-bytes limit bounds them. Older entries are on disk only:
 * `entries()` answers null and records the miss; the driver calls `takeMisses()`, `load(lo)` for
 * each (about LOAD_BYTES of batches from disk, kept apart within LOADED_MAX_BYTES), then
 * `RaftNode.retryAppend`. Terms are in the index for every stored entry, so `term()` never misses.
 * First offsets are exact in memory only for the newest entries and those from the applied one on
 * (batch-index.ts, whose size is bounded); `load` and retention find older ones from a sample by
 * reading batch headers on disk.
 *
 * @example
 *   const log = await PartitionLog.open(dir, config, { fs, clock }, { highWatermark: "external", keepEmptyBatches: true });
 *   const storage = await ReplicaLog.open(dir, log, { fs }, { voters: [1, 2, 3], cacheBytes: 8 << 20 });
 *   const node = new RaftNode({ ...raftConfig, applied: storage.appliedHint }, storage);
 */
import { TributaryError, assert, isTributaryError } from "../errors.ts";
import { createLogger, type Logger } from "../logger.ts";
import { joinPath, writeFileAtomic, type FileSystem } from "../runtime/fs.ts";
import { EMPTY_SNAPSHOT, EntryType, entryBytes, type ConfState, type Entry, type HardState, type NodeId, type Snapshot } from "../raft/index.ts";
import type { Storage } from "../raft/storage.ts";
import { Reader, Writer } from "../storage/bytes.ts";
import type { HeaderScan, PartitionLog } from "../storage/log.ts";
import { decodeRecords, encodeBatch, readBatchHeader, setPartitionLeaderEpoch, splitBatches, type BatchHeader } from "../storage/record-batch.ts";
import { BatchIndex, type BatchIndexLimits } from "./batch-index.ts";

/** Bytes of batches one `load` reads from disk. */
export const LOAD_BYTES = 1 << 20;
/** Bytes of loaded (older than the tail) entries held at most, beyond the tail cache. */
export const LOADED_MAX_BYTES = 4 << 20;

export const RAFT_STATE_FILE = "raft.json";
const STATE_VERSION = 1;
const utf8 = new TextEncoder();
const KEY_NOOP = utf8.encode("raft:noop");
const KEY_CONF = utf8.encode("raft:conf");

interface Anchor {
  readonly index: number;
  readonly term: number;
  readonly nextOffset: number;
}

interface PersistedState {
  term: number;
  vote: NodeId;
  commit: number;
  voters: readonly NodeId[];
  anchor: Anchor;
  installing: boolean;
}

export interface ReplicaLogDeps {
  fs: FileSystem;
  logger?: Logger;
}

export interface ReplicaLogOptions {
  /** The bootstrap voters, used when the group has no raft.json yet. */
  voters: readonly NodeId[];
  /** Entry bytes of the tail held in memory (see "The cache"). */
  cacheBytes: number;
  /** The term and vote a new group starts from (a replica this peer held before and deleted), else 0 and none. */
  hardState?: { term: number; vote: NodeId };
  /** The batch index's size limits (batch-index.ts; tests make them small). */
  indexLimits?: BatchIndexLimits;
}

export class ReplicaLog implements Storage {
  private readonly index: BatchIndex;
  /** The tail's entries by index, ascending (appends at the end, truncation and eviction at the ends). */
  private readonly tail = new Map<number, Entry>();
  private tailBytes = 0;
  /** Older entries brought back by load(). */
  private loaded = new Map<number, Entry>();
  private loadedBytes = 0;
  private readonly misses = new Set<number>();
  /** Batches whose CRC this peer checked when it proposed them (weak: they go once persisted). */
  private readonly crcChecked = new WeakSet<Uint8Array>();
  /** Bumped by every truncation and reset, so a load that raced one drops what it read. */
  private generation = 0;
  /** The last index applied (commitTo). */
  private applied: number;
  private hint: number;
  private stateWrites: Promise<void> = Promise.resolve();
  /** The first offset of an entry below the index's exact window, found on disk: where the next load starts. */
  private located: { index: number; baseOffset: number; generation: number } | null = null;

  private constructor(
    private readonly dir: string,
    private readonly log: PartitionLog,
    private readonly fs: FileSystem,
    private readonly logger: Logger,
    private readonly cacheBytes: number,
    private state: PersistedState,
    indexLimits: BatchIndexLimits | undefined,
  ) {
    this.index = new BatchIndex(indexLimits);
    this.applied = state.commit;
    this.hint = state.commit;
  }

  /** What the batch index holds: the first entry with a synchronous offset, and how many offsets it keeps. */
  get indexHeld(): { firstExactIndex: number; offsets: number } {
    return { firstExactIndex: this.state.anchor.index + 1 + this.index.firstExact, offsets: this.index.heldOffsets };
  }

  /** The persisted commit: the last index applied before the restart, to pass as RaftConfig.applied. */
  get appliedHint(): number {
    return this.hint;
  }

  /** Read raft.json (creating it for a new group), repair an interrupted retention or install, index the batches. */
  static async open(dir: string, log: PartitionLog, deps: ReplicaLogDeps, options: ReplicaLogOptions): Promise<ReplicaLog> {
    const { highWatermark, keepEmptyBatches } = log.logOptions;
    assert(highWatermark === "external" && keepEmptyBatches === true, "a replica log needs a partition log opened with highWatermark external and keepEmptyBatches");
    assert(options.cacheBytes > 0, "cacheBytes must be positive");
    const logger = deps.logger ?? createLogger("info");
    const state = await readOrCreateState(dir, log, deps.fs, options.voters, options.hardState);
    const r = new ReplicaLog(dir, log, deps.fs, logger, options.cacheBytes, state, options.indexLimits);
    await r.repairAndIndex();
    log.setRetentionHook((start, scan) => r.moveAnchor(start, scan));
    log.commitTo(r.endOffset(r.state.commit));
    return r;
  }

  private async repairAndIndex(): Promise<void> {
    const { anchor } = this.state;
    if (this.state.installing) {
      this.logger.warn("a snapshot install was interrupted: resetting the partition log to the snapshot", { dir: this.dir, offset: anchor.nextOffset });
      await this.log.resetTo(anchor.nextOffset);
      this.state.installing = false;
      await this.writeState();
    } else if (this.log.logStartOffset < anchor.nextOffset) {
      const n = await this.log.deleteSegmentsBelow(anchor.nextOffset);
      if (n > 0) this.logger.info("finished a retention pass a crash interrupted", { dir: this.dir, segments: n });
    }
    if (this.log.logEndOffset < anchor.nextOffset || this.log.logStartOffset > anchor.nextOffset) {
      throw new TributaryError(
        "STORAGE_ERROR",
        `${this.dir}: the partition log holds [${this.log.logStartOffset}, ${this.log.logEndOffset}) but its Raft anchor is at offset ${anchor.nextOffset}: committed entries are lost`,
      );
    }
    let problem: string | null = null;
    // Entries up to the recorded commit were applied before the restart: their offsets may go sparse as the scan goes.
    this.index.settle(this.state.commit - anchor.index - 1);
    await this.log.scanBatchHeaders(anchor.nextOffset, (h) => {
      const expected = this.index.length === 0 ? anchor.nextOffset : this.index.lastOffset(this.index.length - 1)! + 1;
      if (h.baseOffset !== expected) {
        problem = `batch at offset ${h.baseOffset} where ${expected} was due`;
        return false;
      }
      this.index.push(h.partitionLeaderEpoch, h.baseOffset, h.baseOffset + h.lastOffsetDelta);
    });
    if (problem !== null) throw new TributaryError("STORAGE_ERROR", `${this.dir}: the partition log is not a Raft log: ${problem}`);
    if (this.state.commit > this.lastIndex()) {
      this.logger.warn("raft.json's commit is beyond the log: using the log's end", { dir: this.dir, commit: this.state.commit, lastIndex: this.lastIndex() });
      this.state.commit = this.lastIndex();
      this.applied = this.lastIndex();
      this.hint = this.lastIndex();
    }
  }

  // ---- Storage --------------------------------------------------------------------------------

  initialState(): { hardState: HardState; confState: ConfState } {
    const { term, vote, commit, voters } = this.state;
    return { hardState: { term, vote, commit }, confState: { voters: [...voters] } };
  }

  firstIndex(): number {
    return this.state.anchor.index + 1;
  }

  lastIndex(): number {
    return this.state.anchor.index + this.index.length;
  }

  term(index: number): number | undefined {
    const { anchor } = this.state;
    if (index === anchor.index) return anchor.term;
    if (index < anchor.index || index > this.lastIndex()) return undefined;
    return this.index.term(index - anchor.index - 1);
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] | null {
    assert(lo >= this.firstIndex() && hi <= this.lastIndex() + 1 && lo <= hi, `replica log entries [${lo}, ${hi}) out of range`);
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.tail.get(i) ?? this.loaded.get(i);
      if (!e) {
        if (i > lo) break; // what is at hand so far; the rest comes with a later call
        this.misses.add(lo);
        return null;
      }
      size += entryBytes(e);
      if (i > lo && size > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  snapshot(): Snapshot {
    const { anchor, voters } = this.state;
    if (anchor.index === 0) return EMPTY_SNAPSHOT;
    return { meta: { index: anchor.index, term: anchor.term, confState: { voters: [...voters] } }, data: encodeSnapshotData(anchor.nextOffset) };
  }

  // ---- the driver's writes --------------------------------------------------------------------

  /**
   * Persist one Ready's snapshot, entries and hard state, in that order; resolves when all of it
   * is durable. Entries at or below the anchor are skipped (a snapshot covers them); one at or
   * below lastIndex() cuts the stored suffix from there first.
   */
  async persist(entries: readonly Entry[], hardState: HardState | undefined, snapshot: Snapshot | undefined): Promise<void> {
    if (snapshot && snapshot.meta.index > this.state.anchor.index) await this.installSnapshot(snapshot);
    const fresh = entries.filter((e) => e.index > this.state.anchor.index);
    const first = fresh[0];
    if (first) {
      assert(first.index <= this.lastIndex() + 1, `append at ${first.index} leaves a gap after ${this.lastIndex()}`);
      if (first.index <= this.lastIndex()) await this.truncateFrom(first.index);
      await this.appendAll(fresh);
    }
    const hardChanged = hardState !== undefined && (hardState.term !== this.state.term || hardState.vote !== this.state.vote);
    if (hardChanged || this.state.installing) {
      if (hardState) {
        this.state.term = hardState.term;
        this.state.vote = hardState.vote;
      }
      this.state.installing = false;
      await this.writeState();
    }
  }

  /** Entries up to `index` are applied: readers may see them (the log's high watermark moves to their end). */
  commitTo(index: number): void {
    if (index <= this.applied) return;
    assert(index <= this.lastIndex(), `commit ${index} beyond the last index ${this.lastIndex()}`);
    this.applied = index;
    this.log.commitTo(this.endOffset(index));
    // Nothing at or above the applied entry is asked for synchronously below it from now on.
    this.index.settle(index - this.state.anchor.index - 1);
    this.evict();
  }

  /**
   * The offsets of a stored entry's batch, for entries in the batch index's exact window: every
   * entry from the applied one on, and the newest ones (see batch-index.ts). Older ones: `baseOffsetOf`.
   */
  offsetsOf(index: number): { baseOffset: number; lastOffset: number } {
    assert(index >= this.firstIndex() && index <= this.lastIndex(), `entry ${index} is not stored`);
    const p = index - this.state.anchor.index - 1;
    const baseOffset = this.index.baseOffset(p);
    const lastOffset = this.index.lastOffset(p);
    assert(baseOffset !== undefined && lastOffset !== undefined, `entry ${index} is below the batch index's exact window (from ${this.state.anchor.index + 1 + this.index.firstExact})`);
    return { baseOffset, lastOffset };
  }

  /**
   * The first offset of a stored entry's batch, from the disk where the batch index keeps only
   * samples; undefined when the log changed under the scan (a retention pass or a cut ran first).
   */
  async baseOffsetOf(index: number): Promise<number | undefined> {
    assert(index >= this.firstIndex() && index <= this.lastIndex(), `entry ${index} is not stored`);
    const first = this.state.anchor.index + 1;
    const near = this.index.nearest(index - first);
    if (near.position === index - first) return near.baseOffset;
    let from = { index: first + near.position, baseOffset: near.baseOffset };
    const l = this.located;
    if (l && l.generation === this.generation && l.index >= from.index && l.index <= index && l.index >= first) from = l;
    return (await this.scanFrom(this.scanHeaders, from, (_h, i) => i === index))?.header.baseOffset;
  }

  /** The index of the stored entry whose batch holds `offset`. */
  async indexOfOffset(offset: number): Promise<number | undefined> {
    const first = this.state.anchor.index + 1;
    const found = this.index.find(offset);
    if (!found) return undefined;
    if (found.exact) return first + found.position;
    const from = { index: first + found.position, baseOffset: found.baseOffset };
    return (await this.scanFrom(this.scanHeaders, from, (h) => h.baseOffset + h.lastOffsetDelta >= offset))?.index;
  }

  /** The leader checked `batch`'s CRC before proposing it: its append skips the second check. */
  trustCrc(batch: Uint8Array): void {
    this.crcChecked.add(batch);
  }

  /** Indexes asked for by entries() that answered null, each once; the driver calls load() then retries. */
  takeMisses(): number[] {
    const out = [...this.misses].sort((a, b) => a - b);
    this.misses.clear();
    return out;
  }

  /** Read entries from `lo` (about LOAD_BYTES of them) from disk so entries() has them at hand. */
  async load(lo: number): Promise<void> {
    if (lo < this.firstIndex() || lo > this.lastIndex()) return;
    const generation = this.generation;
    const anchorIndex = this.state.anchor.index;
    const start = await this.baseOffsetOf(lo);
    if (start === undefined) return; // the log changed under the scan: the driver asks again
    const { batches } = await this.log.readDurable(start, LOAD_BYTES);
    // A truncation, reset or retention pass meanwhile may have renumbered what was read: the driver asks again.
    if (generation !== this.generation || anchorIndex !== this.state.anchor.index || lo < this.firstIndex()) return;
    const got: Entry[] = [];
    let index = lo;
    let expected = start;
    for (const batch of splitBatches(batches)) {
      if (index > this.lastIndex() || this.tail.has(index)) break;
      const h = readBatchHeader(batch);
      assert(h.baseOffset === expected, `entry ${index} read at offset ${h.baseOffset}, where ${expected} was due`);
      got.push(entryOf(batch, index));
      index++;
      expected = h.baseOffset + h.lastOffsetDelta + 1;
    }
    // Catching up goes on from where this load ended: no second scan from a sample for it.
    if (index <= this.lastIndex()) this.located = { index, baseOffset: expected, generation };
    let bytes = 0;
    for (const e of got) bytes += entryBytes(e);
    if (this.loadedBytes + bytes > LOADED_MAX_BYTES) this.dropLoaded(() => true);
    for (const e of got) this.loaded.set(e.index, e);
    this.loadedBytes += bytes;
  }

  /** Record the voters of the configuration just applied; call it before commitTo past the change. */
  async setVoters(voters: readonly NodeId[]): Promise<void> {
    this.state.voters = [...new Set(voters)].sort((a, b) => a - b);
    await this.writeState();
  }

  /**
   * Record the applied index if it moved since raft.json was last written (so a clean restart
   * serves reads up to where it was), and wait for writes under way. The owner closes the log.
   */
  async close(): Promise<void> {
    if (Math.min(this.applied, this.lastIndex()) > this.state.commit) await this.writeState();
    await this.stateWrites;
  }

  // ---- inside ---------------------------------------------------------------------------------

  /** The offset after entry `index` (the anchor's next offset for the anchor itself). */
  private endOffset(index: number): number {
    const { anchor } = this.state;
    return index === anchor.index ? anchor.nextOffset : this.offsetsOf(index).lastOffset + 1;
  }

  private async truncateFrom(index: number): Promise<void> {
    assert(index > this.applied, `cutting entry ${index}, at or below the applied ${this.applied}`);
    const { baseOffset } = this.offsetsOf(index);
    await this.log.truncateTo(baseOffset);
    assert(this.log.logEndOffset === baseOffset, `the log cut to ${this.log.logEndOffset}, not ${baseOffset}`);
    this.generation++;
    this.index.truncate(index - this.state.anchor.index - 1);
    for (const [i, e] of this.tail) {
      if (i < index) continue;
      this.tail.delete(i);
      this.tailBytes -= entryBytes(e);
    }
    this.dropLoaded((i) => i >= index);
    for (const i of this.misses) if (i >= index) this.misses.delete(i);
  }

  private async appendAll(entries: readonly Entry[]): Promise<void> {
    const writes: Promise<unknown>[] = [];
    try {
      for (const e of entries) {
        const bytes = batchOf(e);
        const h = readBatchHeader(bytes);
        const expected = this.endOffset(this.lastIndex());
        assert(this.log.logEndOffset === expected, `the log ends at ${this.log.logEndOffset}, the Raft index at ${expected}`);
        // Offset 0 is a batch not stamped yet (the leader's own proposal); any other must match.
        assert(h.baseOffset === 0 || h.baseOffset === expected, `entry ${e.index} was stamped at offset ${h.baseOffset} by its leader, this log puts it at ${expected}: the logs diverged`);
        setPartitionLeaderEpoch(bytes, e.term);
        const before = this.log.logEndOffset;
        // A batch from a peer is checked once, here; the leader's own was checked when proposed.
        let write: Promise<unknown> = this.log.append(bytes, { crcVerified: this.crcChecked.has(bytes) });
        if (this.log.logEndOffset === before) write = (await this.appendAgain(bytes, write, writes)).write;
        writes.push(write);
        this.index.push(e.term, expected, expected + h.lastOffsetDelta);
        this.tail.set(e.index, e);
        this.tailBytes += entryBytes(e);
      }
      await Promise.all(writes);
    } finally {
      void Promise.allSettled(writes);
      this.evict();
    }
  }

  /**
   * The log refused a batch (`refused` rejects with why): if it was only too busy (OVERLOADED),
   * wait for our earlier appends to land and try once more. Wrapped, so awaiting this does not
   * wait for the new append to be durable.
   */
  private async appendAgain(bytes: Uint8Array, refused: Promise<unknown>, earlier: readonly Promise<unknown>[]): Promise<{ write: Promise<unknown> }> {
    const why: unknown = await refused.then(() => null, (e: unknown) => e);
    if (!(isTributaryError(why) && why.code === "OVERLOADED")) throw why;
    await Promise.all(earlier);
    const before = this.log.logEndOffset;
    const write = this.log.append(bytes, { crcVerified: this.crcChecked.has(bytes) });
    if (this.log.logEndOffset === before) throw await write.then(() => null, (e: unknown) => e);
    return { write };
  }

  private evict(): void {
    for (const [i, e] of this.tail) {
      if (this.tailBytes <= this.cacheBytes || i > this.applied) break;
      this.tail.delete(i);
      this.tailBytes -= entryBytes(e);
    }
  }

  private dropLoaded(which: (index: number) => boolean): void {
    for (const [i, e] of this.loaded) {
      if (!which(i)) continue;
      this.loaded.delete(i);
      this.loadedBytes -= entryBytes(e);
    }
  }

  /** A follower takes the leader's snapshot: the log restarts empty at the snapshot's offset. */
  private async installSnapshot(snapshot: Snapshot): Promise<void> {
    const nextOffset = decodeSnapshotData(snapshot.data);
    const { index, term, confState } = snapshot.meta;
    this.state.anchor = { index, term, nextOffset };
    this.state.voters = [...confState.voters];
    this.state.commit = index;
    this.state.installing = true;
    this.applied = index;
    this.generation++;
    this.index.truncate(0);
    this.tail.clear();
    this.tailBytes = 0;
    this.dropLoaded(() => true);
    this.misses.clear();
    await this.writeState();
    await this.log.resetTo(nextOffset);
  }

  private readonly scanHeaders: HeaderScan = (fromOffset, visit) => this.log.scanBatchHeaders(fromOffset, visit);

  /**
   * Count batch headers on disk from `from`, an entry whose first offset is known, to the first
   * for which `stop` holds: that entry's index and header. Undefined if none does, or if the log
   * no longer has `from` where it was (a retention pass or a cut ran before the scan).
   */
  private async scanFrom(
    scan: HeaderScan,
    from: { index: number; baseOffset: number },
    stop: (header: BatchHeader, index: number) => boolean,
  ): Promise<{ index: number; header: BatchHeader } | undefined> {
    let index = from.index;
    let found: { index: number; header: BatchHeader } | undefined;
    await scan(from.baseOffset, (h) => {
      if (index === from.index && h.baseOffset !== from.baseOffset) return false;
      if (stop(h, index)) {
        found = { index, header: h };
        return false;
      }
      index++;
    });
    return found;
  }

  /** The retention hook: the log is about to delete the segments below `start`; record the anchor there first. */
  private async moveAnchor(start: number, scan: HeaderScan): Promise<void> {
    const { anchor } = this.state;
    const found = this.index.find(start);
    assert(found !== null, `retention would start the log at ${start}, outside it`);
    let p = found.position;
    if (!found.exact) {
      // Below the exact window: count the batches from the sample on, within this retention pass.
      const first = anchor.index + 1;
      const at = await this.scanFrom(scan, { index: first + p, baseOffset: found.baseOffset }, (h) => h.baseOffset >= start);
      assert(at?.header.baseOffset === start, `retention would start the log at ${start}, not at a batch`);
      p = at.index - first;
    } else assert(found.baseOffset === start, `retention would start the log at ${start}, not at a batch`);
    const index = anchor.index + p;
    assert(index <= this.applied, `retention would drop entry ${index}, beyond the applied ${this.applied}`);
    if (p === 0) return;
    this.state.anchor = { index, term: this.term(index)!, nextOffset: start };
    this.index.dropFront(p, start);
    for (const [i, e] of this.tail) {
      if (i > index) break;
      this.tail.delete(i);
      this.tailBytes -= entryBytes(e);
    }
    this.dropLoaded((i) => i <= index);
    await this.writeState();
  }

  /** Write raft.json from the current fields; writes run one at a time, each with everything known when it starts. */
  private writeState(): Promise<void> {
    const run = this.stateWrites.then(() => {
      const commit = Math.min(this.applied, this.lastIndex());
      this.state.commit = Math.max(commit, this.state.anchor.index);
      return writeFileAtomic(this.fs, joinPath(this.dir, RAFT_STATE_FILE), encodeState(this.state));
    });
    this.stateWrites = run.catch(() => undefined);
    return run;
  }
}

// ---- entries as batches ---------------------------------------------------------------------------

/** The batch that stores `e`: its own bytes, or a control batch for a no-op or a membership change. */
function batchOf(e: Entry): Uint8Array {
  if (e.type === EntryType.Normal && e.data.length > 0) {
    const h = readBatchHeader(e.data);
    if (h.isControl) throw new TributaryError("CORRUPT_RECORD", `entry ${e.index} is a control batch: entries carry record batches`);
    return e.data;
  }
  const conf = e.type === EntryType.ConfChange;
  return encodeBatch([{ key: conf ? KEY_CONF : KEY_NOOP, value: conf ? e.data : null }], { timestamp: 0, isControl: true, partitionLeaderEpoch: e.term });
}

/** The entry a stored batch is (the inverse of batchOf). */
function entryOf(batch: Uint8Array, index: number): Entry {
  const h = readBatchHeader(batch);
  const term = h.partitionLeaderEpoch;
  if (!h.isControl) return { term, index, type: EntryType.Normal, data: batch };
  const records = decodeRecords(batch);
  const key = records.length === 1 ? records[0]!.key : null;
  if (key && sameBytes(key, KEY_NOOP)) return { term, index, type: EntryType.Normal, data: new Uint8Array(0) };
  if (key && sameBytes(key, KEY_CONF)) return { term, index, type: EntryType.ConfChange, data: (records[0]!.value ?? new Uint8Array(0)).slice() };
  throw new TributaryError("CORRUPT_RECORD", `entry ${index} at offset ${h.baseOffset} is a control batch that is not Raft's`);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A partition group's snapshot data: the log start offset (int64), all a follower needs to restart its log there. */
function encodeSnapshotData(offset: number): Uint8Array {
  const out = new Uint8Array(8);
  new Writer(out).int64(offset);
  return out;
}

function decodeSnapshotData(data: Uint8Array): number {
  if (data.length !== 8) throw new TributaryError("CORRUPT_RECORD", `a partition snapshot is 8 bytes, got ${data.length}`);
  return new Reader(data).int64();
}

// ---- raft.json ------------------------------------------------------------------------------------

async function readOrCreateState(dir: string, log: PartitionLog, fs: FileSystem, voters: readonly NodeId[], hard?: { term: number; vote: NodeId }): Promise<PersistedState> {
  const path = joinPath(dir, RAFT_STATE_FILE);
  const raw = await fs.readFile(path);
  if (raw !== null) return decodeState(raw, path);
  if (log.logEndOffset !== log.logStartOffset) {
    throw new TributaryError("STORAGE_ERROR", `${dir} holds batches but no ${RAFT_STATE_FILE}: it is not a replicated partition's log`);
  }
  const state: PersistedState = {
    term: hard?.term ?? 0,
    vote: hard?.vote ?? 0,
    commit: 0,
    voters: [...voters],
    anchor: { index: 0, term: 0, nextOffset: log.logStartOffset },
    installing: false,
  };
  // Written before any entry, so a crash during the first persist cannot leave entries without it.
  await writeFileAtomic(fs, path, encodeState(state));
  return state;
}

function encodeState(s: PersistedState): Uint8Array {
  const { term, vote, commit, voters, anchor, installing } = s;
  return utf8.encode(JSON.stringify({ version: STATE_VERSION, term, vote, commit, voters, anchor, installing }) + "\n");
}

function decodeState(raw: Uint8Array, path: string): PersistedState {
  const bad = (why: string) => new TributaryError("STORAGE_ERROR", `${path}: ${why}`);
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(new TextDecoder().decode(raw)) as Record<string, unknown>;
  } catch (e) {
    throw new TributaryError("STORAGE_ERROR", `${path} is not JSON`, { cause: e });
  }
  const nat = (x: unknown, name: string): number => {
    if (typeof x !== "number" || !Number.isSafeInteger(x) || x < 0) throw bad(`${name} must be a non-negative integer`);
    return x;
  };
  if (v === null || typeof v !== "object" || v.version !== STATE_VERSION) throw bad(`unknown version ${String(v?.version)}`);
  const a = v.anchor as Record<string, unknown> | null;
  if (a === null || typeof a !== "object") throw bad("anchor missing");
  if (!Array.isArray(v.voters)) throw bad("voters must be a list");
  return {
    term: nat(v.term, "term"),
    vote: nat(v.vote, "vote"),
    commit: nat(v.commit, "commit"),
    voters: v.voters.map((x, i) => nat(x, `voters[${i}]`)),
    anchor: { index: nat(a.index, "anchor.index"), term: nat(a.term, "anchor.term"), nextOffset: nat(a.nextOffset, "anchor.nextOffset") },
    installing: v.installing === true,
  };
}
