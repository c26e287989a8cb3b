/**
 * Opening a partition directory after a clean close or a crash, before the log takes appends.
 *
 * 1. Leftovers of interrupted work go: `*.cleaned` (compaction that never swapped in), `*.tmp`
 *    (an index being replaced), index files whose `.log` is gone.
 * 2. Every segment but the last keeps its indexes if they pass the sanity check
 *    (Segment.loadIndexes); otherwise it is scanned batch by batch, framing and CRC checked, and
 *    its indexes rebuilt and written.
 * 3. The last segment is always scanned: it is the one a crash can leave torn. (A clean-shutdown
 *    marker could skip that scan; not worth the state yet at 64 MiB segments.)
 * 4. A scan stops at the first batch that is partial, insane or fails its CRC: the file is
 *    truncated there, with a warning saying how many bytes went. If that happens in a segment
 *    that is not the last, the later segments are deleted as well (they would leave a hole in
 *    the offsets), and the warning says so. When everything from there to the end of the file
 *    is zeros, it is the space the log extended the active segment by
 *    (LogConfig.preallocateBytes), not a torn write: it is cut off, without a warning, and
 *    nothing after it is deleted.
 *
 * Everything that survives was on disk and intact, so the log opens with
 * highWatermark = logEndOffset (durableEnd = logEndOffset in replicated mode, where the owner
 * sets the high watermark from its Raft state).
 */
import type { Logger } from "../logger.ts";
import type { Clock } from "../runtime/clock.ts";
import { joinPath, type FileHandle, type FileSystem } from "../runtime/fs.ts";
import { parseSegmentFileName, Segment, segmentFileName } from "./segment.ts";

export interface RecoveryOptions {
  fs: FileSystem;
  clock: Clock;
  logger: Logger;
  indexIntervalBytes: number;
  maxMessageBytes: number;
}

export async function recoverSegments(dir: string, opts: RecoveryOptions): Promise<Segment[]> {
  const { fs, logger } = opts;
  const names = await fs.list(dir);
  const bases = names
    .map(parseSegmentFileName)
    .filter((b): b is number => b !== null)
    .sort((a, b) => a - b);
  const logNames = new Set(bases.map((b) => segmentFileName(b, ".log")));
  for (const name of names) {
    const stem = name.replace(/\.(index|timeindex)$/, ".log");
    const orphanIndex = stem !== name && !logNames.has(stem);
    if (name.endsWith(".cleaned") || name.endsWith(".tmp") || orphanIndex) {
      await fs.remove(joinPath(dir, name));
      logger.info("removed a leftover file", { dir, file: name });
    }
  }

  const segments: Segment[] = [];
  for (let i = 0; i < bases.length; i++) {
    const base = bases[i]!;
    const next = bases[i + 1];
    const handle = await fs.open(joinPath(dir, segmentFileName(base, ".log")), "write");
    const segment = new Segment(dir, base, handle, { size: await handle.size(), createdAtMs: opts.clock.now() });
    segments.push(segment);
    // An entry is added once indexIntervalBytes have gone by, so the bytes after the last entry
    // are under one interval plus the last batch; twice that leaves room for changed settings.
    const maxUnindexed = 2 * (opts.indexIntervalBytes + opts.maxMessageBytes);
    if (next !== undefined && (await segment.loadIndexes(fs, next, maxUnindexed))) continue;

    const sizeBefore = segment.size;
    const scan = await segment.rebuild(opts.indexIntervalBytes, true, sizeBefore);
    const { validBytes } = scan;
    const preallocated = scan.problem !== null && (await zerosFrom(handle, validBytes, sizeBefore));
    const problem = preallocated ? null : scan.problem;
    const overlaps = next !== undefined && segment.nextOffset > next;
    if (scan.problem !== null) {
      await handle.truncate(validBytes);
      await handle.datasync();
      segment.fileBytes = validBytes;
    }
    if ((problem !== null || overlaps) && next !== undefined) {
      const later = bases.slice(i + 1);
      for (const b of later) {
        for (const suffix of [".log", ".index", ".timeindex"] as const) await fs.remove(joinPath(dir, segmentFileName(b, suffix)));
      }
      await fs.syncDir(dir);
      logger.warn("corrupt segment in the middle of the log: truncated it and deleted every later segment", {
        dir,
        segment: segmentFileName(base, ".log"),
        problem: problem ?? `offsets run into the next segment ${segmentFileName(next, ".log")}`,
        bytesDropped: sizeBefore - validBytes,
        segmentsDeleted: later.length,
        firstOffsetLost: segment.nextOffset,
      });
      break;
    }
    if (problem !== null) {
      logger.warn("truncated a torn or corrupt tail", {
        dir,
        segment: segmentFileName(base, ".log"),
        problem,
        bytesDropped: sizeBefore - validBytes,
        logEndOffset: segment.nextOffset,
      });
    }
    if (next !== undefined) {
      segment.nextOffset = next;
      await segment.writeIndexes(fs);
      logger.info("rebuilt segment indexes", { dir, segment: segmentFileName(base, ".log") });
    }
  }

  if (segments.length === 0) {
    const handle = await fs.open(joinPath(dir, segmentFileName(0, ".log")), "create");
    await fs.syncDir(dir);
    segments.push(new Segment(dir, 0, handle, { size: 0, createdAtMs: opts.clock.now() }));
  }
  segments[segments.length - 1]!.active = true;
  return segments;
}

/** Whether the bytes of `handle` in [from, to) are all zero (a preallocated tail no batch reached). */
async function zerosFrom(handle: FileHandle, from: number, to: number): Promise<boolean> {
  const buf = new Uint8Array(Math.min(64 * 1024, Math.max(1, to - from)));
  for (let pos = from; pos < to; ) {
    const n = await handle.read(buf, 0, Math.min(buf.length, to - pos), pos);
    if (n === 0) return true;
    for (let i = 0; i < n; i++) if (buf[i] !== 0) return false;
    pos += n;
  }
  return true;
}
