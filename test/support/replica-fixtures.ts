/** Helpers for the ReplicaLog tests: open a partition log in replicated mode under a ReplicaLog, make entries, read them back. */
import type { BatchIndexLimits } from "../../src/cluster/batch-index.ts";
import { ReplicaLog } from "../../src/cluster/replica-log.ts";
import { EntryType, encodeConfChange, type Entry, type NodeId } from "../../src/raft/index.ts";
import { ManualClock } from "../../src/runtime/clock.ts";
import type { FileHandle, FileSystem, OpenMode } from "../../src/runtime/fs.ts";
import { PartitionLog, type LogConfig } from "../../src/storage/log.ts";
import { capturingLogger, logConfig, valuesBatch } from "./log-fixtures.ts";

export interface Replica {
  log: PartitionLog;
  store: ReplicaLog;
}

export const REPLICATED = { highWatermark: "external", keepEmptyBatches: true } as const;

export async function openReplica(
  fs: FileSystem,
  dir: string,
  opts: { config?: Partial<LogConfig>; cacheBytes?: number; voters?: readonly NodeId[]; clock?: ManualClock; indexLimits?: BatchIndexLimits } = {},
): Promise<Replica> {
  const { logger } = capturingLogger();
  const clock = opts.clock ?? new ManualClock();
  const log = await PartitionLog.open(dir, logConfig(opts.config), { fs, clock, logger }, REPLICATED);
  const store = await ReplicaLog.open(dir, log, { fs, logger }, {
    voters: opts.voters ?? [1, 2, 3],
    cacheBytes: opts.cacheBytes ?? 1 << 20,
    ...(opts.indexLimits ? { indexLimits: opts.indexLimits } : {}),
  });
  return { log, store };
}

export async function closeReplica(r: Replica): Promise<void> {
  await r.store.close();
  await r.log.close();
}

let seq = 0;
/** A Normal entry holding a fresh batch of `records` records (not stamped: offset 0). */
export function normal(index: number, term: number, records = 2): Entry {
  return { index, term, type: EntryType.Normal, data: valuesBatch(`e${seq++}`, records) };
}
export function noop(index: number, term: number): Entry {
  return { index, term, type: EntryType.Normal, data: new Uint8Array(0) };
}
export function conf(index: number, term: number, voters: readonly NodeId[]): Entry {
  const nodeId = voters[voters.length - 1]!;
  return { index, term, type: EntryType.ConfChange, data: encodeConfChange({ type: "add-voter", nodeId, voters }) };
}

/** Entries [lo, hi] as the store gives them, loading what is on disk only. */
export async function readEntries(store: ReplicaLog, lo = store.firstIndex(), hi = store.lastIndex()): Promise<Entry[]> {
  const out: Entry[] = [];
  let i = lo;
  while (i <= hi) {
    const got = store.entries(i, hi + 1, 1 << 20);
    if (got === null) {
      for (const miss of store.takeMisses()) await store.load(miss);
      continue;
    }
    out.push(...got);
    i += got.length;
  }
  return out;
}

/** Comparable form of an entry: index, term, type and data as hex. */
export function show(e: Entry): string {
  return `${e.index}/${e.term}/${e.type}/${Buffer.from(e.data).toString("hex")}`;
}

/**
 * A file system over another that fails chosen operations on demand, and that `kill()` stops
 * for good: every later call throws, as if the process had died. A simulated power cut
 * (`MemFileSystem.crash`) kills only the handles open at the time; a log that lives on would
 * open new ones and keep writing, which a dead process cannot. Use one per process lifetime.
 */
export class TestFs implements FileSystem {
  failRemove: ((path: string) => boolean) | null = null;
  private dead = false;
  private readonly handles = new Set<FileHandle>();
  constructor(private readonly inner: FileSystem) {}

  /** The process dies: every later call throws, and the files it had open are closed (as the kernel would). */
  kill(): void {
    this.dead = true;
    for (const h of this.handles) void h.close();
    this.handles.clear();
  }

  private live(): void {
    if (this.dead) throw new Error("EIO: the process is dead");
  }

  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    this.live();
    const h = await this.inner.open(path, mode);
    this.handles.add(h);
    const guard = <T>(f: () => Promise<T>): Promise<T> => {
      this.live();
      return f();
    };
    return {
      read: (buf, offset, length, position) => guard(() => h.read(buf, offset, length, position)),
      write: (buf, position) => guard(() => h.write(buf, position)),
      writev: (bufs, position) => guard(() => h.writev(bufs, position)),
      datasync: () => guard(() => h.datasync()),
      truncate: (length) => guard(() => h.truncate(length)),
      size: () => guard(() => h.size()),
      close: () => {
        this.handles.delete(h);
        return h.close();
      },
    };
  }
  async list(dir: string): Promise<string[]> {
    this.live();
    return this.inner.list(dir);
  }
  async mkdirp(dir: string): Promise<void> {
    this.live();
    return this.inner.mkdirp(dir);
  }
  async remove(path: string): Promise<void> {
    this.live();
    if (this.failRemove?.(path)) throw new Error(`injected failure removing ${path}`);
    return this.inner.remove(path);
  }
  async rename(from: string, to: string): Promise<void> {
    this.live();
    return this.inner.rename(from, to);
  }
  async exists(path: string): Promise<boolean> {
    this.live();
    return this.inner.exists(path);
  }
  async readFile(path: string): Promise<Uint8Array | null> {
    this.live();
    return this.inner.readFile(path);
  }
  async syncDir(dir: string): Promise<void> {
    this.live();
    return this.inner.syncDir(dir);
  }
}
