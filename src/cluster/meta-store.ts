/**
 * The controller's Raft store: the metadata group's log, hard state and snapshot in one directory
 * (`<data.dir>/cluster/meta/`), with the semantics of `MemoryStorage` (src/raft/storage.ts), which
 * it keeps inside as its in-memory half. The metadata log is small (one entry per admin command)
 * and bounded by snapshotting (`shouldSnapshot`), so every held entry also stays in memory and
 * `entries` never answers null.
 *
 * ## Files
 *
 *   raft.log          append-only records, one per entry, in index order:
 *                       [length u32][crc32c u32][term i64][index i64][type u8][data ...]
 *                     length counts the bytes after the crc (17 + data); the CRC-32C covers them.
 *                     Big-endian. Holds exactly the entries after the snapshot.
 *   hard-state.json   {"v":1,"term":3,"vote":2,"commit":17}, replaced by writeFileAtomic.
 *   snapshot.bin      [magic u32 "TMS1"][crc32c u32 of the rest][index i64][term i64]
 *                     [voter count u32][voter u32 ...][data ...], replaced by writeFileAtomic.
 *
 * ## Durability and recovery
 *
 * `persist` resolves once everything it wrote is synced. Entries are appended and synced; an entry
 * at an index the log already holds first cuts the file at that record and syncs the cut, so a
 * power cut can never splice old records back in front of new ones. A snapshot (from a leader, or
 * `createSnapshot`'s own) is written first and the log is then rewritten atomically to hold only
 * the entries after it. On open, a torn or corrupt tail (short record, bad CRC, an index that
 * does not follow, a term that goes back) is cut and logged. A crash between the snapshot and the
 * log rewrite leaves a log that either still holds the snapshot's (index, term), and is cut after
 * it as the compaction meant to, or predates a snapshot installed from a leader (Raft installs one
 * only when the log does not hold that entry), and is dropped, as `MemoryStorage` would have.
 *
 * One write at a time: the driver awaits each `persist` (and `createSnapshot`) before the next.
 * A failed write leaves the files in an unknown state, so the store refuses everything after it
 * with STORAGE_ERROR until it is reopened (which recovers from what the disk holds).
 *
 * @example
 *   const store = await MetaStore.open(metaStoreDir(dataDir), fs, logger);
 *   const node = new RaftNode(config, store);
 *   const rd = node.ready();
 *   await store.persist(rd.entries, rd.hardState, rd.snapshot);
 */
import { TributaryError, assert } from "../errors.ts";
import { silentLogger, type Logger } from "../logger.ts";
import { EMPTY_SNAPSHOT, EntryType, MemoryStorage, type ConfState, type Entry, type HardState, type Snapshot, type Storage } from "../raft/index.ts";
import { joinPath, writeFileAtomic, type FileHandle, type FileSystem } from "../runtime/fs.ts";
import { Reader, Writer } from "../storage/bytes.ts";
import { crc32c } from "../storage/crc32c.ts";

const LOG_FILE = "raft.log";
const HARD_STATE_FILE = "hard-state.json";
const SNAPSHOT_FILE = "snapshot.bin";
/** Length and CRC before each record's body. */
const RECORD_HEADER_BYTES = 8;
/** term, index and type: the body's fixed part. */
const RECORD_FIXED_BYTES = 17;
const SNAPSHOT_MAGIC = 0x544d5331; // "TMS1"
const HARD_STATE_VERSION = 1;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Where the controller's store lives under a broker's data directory. */
export function metaStoreDir(dataDir: string): string {
  return joinPath(dataDir, "cluster", "meta");
}

export class MetaStore implements Storage {
  /** The model and the in-memory half: every change reaches it after the disk holds it. */
  private readonly mem = new MemoryStorage();
  /** File position of each held entry's record: positions[i] is entry firstIndex() + i. */
  private positions: number[] = [];
  private fileEnd = 0;
  private busy = false;
  private failure: unknown;

  private constructor(
    private readonly dir: string,
    private readonly fs: FileSystem,
    private readonly logger: Logger,
    private log: FileHandle,
  ) {}

  /** Open (creating it if missing) and recover the store in `dir`. */
  static async open(dir: string, fs: FileSystem, logger: Logger = silentLogger): Promise<MetaStore> {
    await fs.mkdirp(dir);
    // Leftovers of a writeFileAtomic a crash interrupted: the real file is the old or the new one.
    for (const name of await fs.list(dir)) if (name.endsWith(".tmp")) await fs.remove(joinPath(dir, name));
    const snap = decodeSnapshot(await fs.readFile(joinPath(dir, SNAPSHOT_FILE)), dir);
    const hard = decodeHardState(await fs.readFile(joinPath(dir, HARD_STATE_FILE)), dir);
    const logPath = joinPath(dir, LOG_FILE);
    const scan = scanLog((await fs.readFile(logPath)) ?? new Uint8Array(0));
    const store = new MetaStore(dir, fs, logger, await fs.open(logPath, "write"));
    // The log file may have just been created (and .tmp files removed): make its entry durable.
    await fs.syncDir(dir);
    if (scan.cutBytes > 0) {
      logger.warn("metadata log: cut a torn or corrupt tail", { dir, atByte: scan.end, cutBytes: scan.cutBytes, reason: scan.reason });
      await store.log.truncate(scan.end);
      await store.log.datasync();
    }
    const kept = connect(scan.entries, snap, dir, logger);
    if (snap.meta.index > 0) store.mem.applySnapshot(snap);
    store.mem.append(kept);
    store.mem.setHardState(hard);
    if (kept.length === scan.entries.length) {
      store.positions = scan.positions;
      store.fileEnd = scan.end;
    } else {
      await store.rewriteLog(kept);
    }
    return store;
  }

  // ---- Storage: the core's read-only view ----

  initialState(): { hardState: HardState; confState: ConfState } {
    return this.mem.initialState();
  }
  hardState(): HardState {
    return this.mem.hardState();
  }
  firstIndex(): number {
    return this.mem.firstIndex();
  }
  lastIndex(): number {
    return this.mem.lastIndex();
  }
  term(index: number): number | undefined {
    return this.mem.term(index);
  }
  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    return this.mem.entries(lo, hi, maxBytes);
  }
  snapshot(): Snapshot {
    return this.mem.snapshot();
  }

  /** Whether `maxEntries` or more entries are held: time for the driver to snapshot its state. */
  shouldSnapshot(maxEntries: number): boolean {
    return this.lastIndex() - this.firstIndex() + 1 >= maxEntries;
  }

  // ---- writes ----

  /**
   * Persist one Ready's worth, in the contract's order: `snapshot` (which replaces everything if
   * newer than ours), then `entries` (cutting any stored suffix from the first one's index), then
   * `hardState`. Durable when it resolves.
   */
  persist(entries: readonly Entry[], hardState?: HardState, snapshot?: Snapshot): Promise<void> {
    return this.exclusive(async () => {
      if (snapshot && snapshot.meta.index > this.mem.snapshot().meta.index) await this.installSnapshot(snapshot, entries);
      else await this.appendEntries(entries);
      if (hardState) {
        const body = { v: HARD_STATE_VERSION, term: hardState.term, vote: hardState.vote, commit: hardState.commit };
        await writeFileAtomic(this.fs, joinPath(this.dir, HARD_STATE_FILE), enc.encode(`${JSON.stringify(body)}\n`));
        this.mem.setHardState(hardState);
      }
    });
  }

  /**
   * Record the application's state at `index` (applied, so held here) as the snapshot, then drop
   * the entries it covers from memory and from the log file, which is rewritten atomically.
   */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Promise<Snapshot> {
    return this.exclusive(async () => {
      const term = this.mem.term(index);
      assert(term !== undefined && index > this.mem.snapshot().meta.index, `snapshot at ${index} outside the stored log`);
      const snap: Snapshot = { meta: { index, term, confState }, data };
      await writeFileAtomic(this.fs, joinPath(this.dir, SNAPSHOT_FILE), encodeSnapshot(snap));
      const after = index < this.lastIndex() ? this.mem.entries(index + 1, this.lastIndex() + 1, Infinity) : [];
      await this.rewriteLog(after);
      this.mem.createSnapshot(index, confState, data);
      this.mem.compact(index);
      return snap;
    });
  }

  async close(): Promise<void> {
    await this.log.close();
  }

  private async exclusive<T>(work: () => Promise<T>): Promise<T> {
    if (this.failure !== undefined) {
      throw new TributaryError("STORAGE_ERROR", `metadata store ${this.dir} failed earlier; reopen it`, { cause: this.failure });
    }
    assert(!this.busy, "one metadata store write at a time: await each persist before the next");
    this.busy = true;
    try {
      return await work();
    } catch (e) {
      // A write may have half happened: memory and files can disagree. Only a reopen knows.
      this.failure = e;
      throw e;
    } finally {
      this.busy = false;
    }
  }

  private async installSnapshot(snap: Snapshot, entries: readonly Entry[]): Promise<void> {
    const fresh = entries.filter((e) => e.index > snap.meta.index);
    assert(fresh.length === 0 || fresh[0]!.index === snap.meta.index + 1, `entries after a snapshot at ${snap.meta.index} start at ${fresh[0]?.index}`);
    await writeFileAtomic(this.fs, joinPath(this.dir, SNAPSHOT_FILE), encodeSnapshot(snap));
    await this.rewriteLog(fresh);
    this.mem.applySnapshot(snap);
    this.mem.append(fresh);
  }

  private async appendEntries(entries: readonly Entry[]): Promise<void> {
    const first = entries[0];
    if (!first) return;
    // As MemoryStorage.append: entries the snapshot covers are committed and equal; skip them.
    const fresh = entries.slice(Math.max(0, this.firstIndex() - first.index));
    const head = fresh[0];
    if (!head) return;
    assert(head.index <= this.lastIndex() + 1, `append at ${head.index} leaves a gap after ${this.lastIndex()}`);
    const keep = head.index - this.firstIndex();
    if (head.index <= this.lastIndex()) {
      // Cut the conflicting suffix and make the cut durable before appending, or a power cut
      // could undo the cut under new records and leave old entries followed by new ones.
      this.fileEnd = this.positions[keep]!;
      this.positions.length = keep;
      await this.log.truncate(this.fileEnd);
      await this.log.datasync();
    }
    const { bytes, positions } = encodeRecords(fresh, this.fileEnd);
    await this.log.write(bytes, this.fileEnd);
    await this.log.datasync();
    this.positions.push(...positions);
    this.fileEnd += bytes.byteLength;
    this.mem.append(fresh);
  }

  /** Replace the log file with one holding exactly `entries`, atomically. */
  private async rewriteLog(entries: readonly Entry[]): Promise<void> {
    const { bytes, positions } = encodeRecords(entries, 0);
    const path = joinPath(this.dir, LOG_FILE);
    await writeFileAtomic(this.fs, path, bytes);
    await this.log.close();
    this.log = await this.fs.open(path, "write");
    this.positions = positions;
    this.fileEnd = bytes.byteLength;
  }
}

// ---- the log file ----

function encodeRecords(entries: readonly Entry[], base: number): { bytes: Uint8Array; positions: number[] } {
  let size = 0;
  for (const e of entries) size += RECORD_HEADER_BYTES + RECORD_FIXED_BYTES + e.data.byteLength;
  const bytes = new Uint8Array(size);
  const w = new Writer(bytes);
  const positions: number[] = [];
  for (const e of entries) {
    positions.push(base + w.pos);
    const start = w.pos;
    w.uint32(RECORD_FIXED_BYTES + e.data.byteLength).uint32(0);
    w.int64(e.term).int64(e.index).int8(e.type).bytes(e.data);
    new Writer(bytes, start + 4).uint32(crc32c(bytes, start + RECORD_HEADER_BYTES, w.pos));
  }
  assert(w.pos === size, `metadata log records took ${w.pos} of ${size} bytes`);
  return { bytes, positions };
}

interface LogScan {
  entries: Entry[];
  positions: number[];
  /** End of the last good record. */
  end: number;
  cutBytes: number;
  reason: string;
}

/** The good records of a log file, up to the first one that is torn, corrupt or out of order. */
function scanLog(bytes: Uint8Array): LogScan {
  const entries: Entry[] = [];
  const positions: number[] = [];
  let pos = 0;
  let reason = "";
  while (pos < bytes.byteLength) {
    const r = readRecord(bytes, pos, entries[entries.length - 1]);
    if (typeof r === "string") {
      reason = r;
      break;
    }
    entries.push(r.entry);
    positions.push(pos);
    pos = r.next;
  }
  return { entries, positions, end: pos, cutBytes: bytes.byteLength - pos, reason };
}

function readRecord(bytes: Uint8Array, pos: number, prev: Entry | undefined): { entry: Entry; next: number } | string {
  if (bytes.byteLength - pos < RECORD_HEADER_BYTES) return "short header";
  const head = new Reader(bytes, pos);
  const length = head.uint32();
  const crc = head.uint32();
  const bodyStart = pos + RECORD_HEADER_BYTES;
  if (length < RECORD_FIXED_BYTES || length > bytes.byteLength - bodyStart) return "short record";
  if (crc32c(bytes, bodyStart, bodyStart + length) !== crc) return "crc mismatch";
  const r = new Reader(bytes, bodyStart, bodyStart + length);
  const term = r.int64();
  const index = r.int64();
  const type = r.int8();
  if (type !== EntryType.Normal && type !== EntryType.ConfChange) return `unknown entry type ${type}`;
  if (prev && (index !== prev.index + 1 || term < prev.term)) return `entry ${index}@${term} does not follow ${prev.index}@${prev.term}`;
  const data = bytes.slice(r.pos, bodyStart + length);
  return { entry: { term, index, type, data }, next: bodyStart + length };
}

/** The recovered entries that follow the snapshot (see the top of the file for the crash cases). */
function connect(entries: Entry[], snap: Snapshot, dir: string, logger: Logger): Entry[] {
  const first = entries[0];
  if (!first) return entries;
  const s = snap.meta;
  if (first.index === s.index + 1) return entries;
  const at = entries.find((e) => e.index === s.index);
  if (s.index > 0 && at?.term === s.term) return entries.filter((e) => e.index > s.index);
  if (s.index > 0 && first.index <= s.index) {
    logger.warn("metadata log predates the installed snapshot: dropped", { dir, snapshotIndex: s.index, firstIndex: first.index });
    return [];
  }
  throw new TributaryError("CORRUPT_RECORD", `metadata log in ${dir} starts at ${first.index}, after a gap past the snapshot at ${s.index}`);
}

// ---- the snapshot and hard-state files ----

function encodeSnapshot(s: Snapshot): Uint8Array {
  const voters = s.meta.confState.voters;
  const bytes = new Uint8Array(8 + 16 + 4 + 4 * voters.length + s.data.byteLength);
  const w = new Writer(bytes, 8).int64(s.meta.index).int64(s.meta.term).uint32(voters.length);
  for (const id of voters) w.uint32(id);
  w.bytes(s.data);
  new Writer(bytes).uint32(SNAPSHOT_MAGIC).uint32(crc32c(bytes, 8));
  return bytes;
}

/** Written atomically, so a bad file is damage from outside: refuse to guess. */
function decodeSnapshot(bytes: Uint8Array | null, dir: string): Snapshot {
  if (bytes === null) return EMPTY_SNAPSHOT;
  const bad = (why: string) => new TributaryError("CORRUPT_RECORD", `metadata snapshot in ${dir}: ${why}; restore it from a peer`);
  if (bytes.byteLength < 28) throw bad("too short");
  const r = new Reader(bytes);
  if (r.uint32() !== SNAPSHOT_MAGIC) throw bad("not a snapshot file");
  if (r.uint32() !== crc32c(bytes, 8)) throw bad("crc mismatch");
  const index = r.int64();
  const term = r.int64();
  const count = r.uint32();
  if (count * 4 > r.remaining) throw bad(`${count} voters do not fit`);
  const voters = Array.from({ length: count }, () => r.uint32());
  return { meta: { index, term, confState: { voters } }, data: bytes.slice(r.pos) };
}

function decodeHardState(bytes: Uint8Array | null, dir: string): HardState {
  if (bytes === null) return { term: 0, vote: 0, commit: 0 };
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(dec.decode(bytes)) as Record<string, unknown>;
  } catch (e) {
    throw new TributaryError("CORRUPT_RECORD", `metadata hard state in ${dir} is not JSON`, { cause: e });
  }
  const { term, vote, commit } = o;
  if (o.v !== HARD_STATE_VERSION || ![term, vote, commit].every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) {
    throw new TributaryError("CORRUPT_RECORD", `metadata hard state in ${dir} is not {v:1, term, vote, commit}`);
  }
  return { term: term as number, vote: vote as number, commit: commit as number };
}
