/**
 * The file system as storage sees it: a handful of operations, behind an interface so that the
 * log can run on the real disk (`nodeFileSystem`, which works on Bun, Deno and Node through
 * `node:fs/promises`) or on the in-memory twin in `mem-fs.ts`, which can also lose unsynced
 * writes and tear a tail the way a power cut does.
 *
 * Durability contract (the same for both): bytes written through a FileHandle survive a process
 * crash (kill -9) once `write` resolves, and survive a power cut only after `datasync` resolves.
 * A directory entry (create, rename, unlink) survives a power cut only after `syncDir` on its
 * parent resolves.
 */
import * as fsp from "node:fs/promises";
import * as fsSync from "node:fs";
import { resolve as resolvePath } from "node:path";

const FS = fsSync.constants;

export interface FileHandle {
  /** Read up to `length` bytes at `position` into `buf` from `offset`; resolves with bytes read (0 at end). */
  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /** Write all of `buf` at `position` (a number), or at the end of the file when `position` is null. */
  write(buf: Uint8Array, position: number | null): Promise<void>;
  /** Write all of `bufs`, one after another, from `position`: one call, no copy into one buffer. */
  writev(bufs: readonly Uint8Array[], position: number): Promise<void>;
  /** Flush the file's data (and the size) to stable storage. */
  datasync(): Promise<void>;
  /**
   * Blocking twins of `writev` and `datasync`, on handles that have them (the real disk's): for
   * a caller that knows one short wait on the event loop costs less than two thread-pool round
   * trips (the flusher's lone appends, flusher.ts). Absent on the in-memory twin.
   */
  readonly blocking?: BlockingFileOps;
  truncate(length: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

export interface BlockingFileOps {
  writev(bufs: readonly Uint8Array[], position: number): void;
  datasync(): void;
}

export type OpenMode =
  | "read" // must exist; read only
  | "write" // create if missing; read and write; keeps existing contents
  | "create"; // create or empty; read and write

export interface FileSystem {
  open(path: string, mode: OpenMode): Promise<FileHandle>;
  /** Names (not paths) in a directory; [] when it does not exist. */
  list(dir: string): Promise<string[]>;
  mkdirp(dir: string): Promise<void>;
  /** Remove a file or a whole directory tree; no error when missing. */
  remove(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  /** The whole file, or null when it does not exist. */
  readFile(path: string): Promise<Uint8Array | null>;
  /** Make a directory's entries (creates, renames, removals) durable. */
  syncDir(dir: string): Promise<void>;
}

/**
 * Replace `path` with `data` so that after a crash either the old or the new contents are found,
 * never a mix: write a temporary file, sync it, rename it over, sync the directory.
 */
export async function writeFileAtomic(fs: FileSystem, path: string, data: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await fs.open(tmp, "create");
  try {
    await fh.write(data, 0);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, path);
  await fs.syncDir(dirname(path));
}

export function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? (i === 0 ? "/" : ".") : path.slice(0, i);
}

export function joinPath(...parts: string[]): string {
  return parts.join("/").replace(/\/+/g, "/");
}

class NodeFileHandle implements FileHandle {
  readonly blocking: BlockingFileOps;

  constructor(private readonly fh: fsp.FileHandle) {
    const fd = fh.fd;
    this.blocking = {
      writev(bufs, position) {
        for (const [chunk, at] of iovecChunks(bufs, position)) {
          for (let rest = chunk, pos = at; rest.length > 0; ) {
            const n = fsSync.writevSync(fd, rest, pos);
            pos += wrote(n);
            rest = dropBytes(rest, n);
          }
        }
      },
      datasync: () => fsSync.fdatasyncSync(fd),
    };
  }

  async read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const { bytesRead } = await this.fh.read(buf, offset, length, position);
    return bytesRead;
  }

  async write(buf: Uint8Array, position: number | null): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const pos = position === null ? null : position + done;
      const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, pos);
      if (bytesWritten <= 0) throw new Error("short write: the file system wrote nothing");
      done += bytesWritten;
    }
  }

  async writev(bufs: readonly Uint8Array[], position: number): Promise<void> {
    for (const [chunk, at] of iovecChunks(bufs, position)) {
      for (let rest = chunk, pos = at; rest.length > 0; ) {
        const { bytesWritten } = await this.fh.writev(rest, pos);
        pos += wrote(bytesWritten);
        rest = dropBytes(rest, bytesWritten);
      }
    }
  }

  datasync(): Promise<void> {
    return this.fh.datasync();
  }

  truncate(length: number): Promise<void> {
    return this.fh.truncate(length);
  }

  async size(): Promise<number> {
    return (await this.fh.stat()).size;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** Linux's IOV_MAX: the most buffers one writev takes. */
const MAX_IOVECS = 1024;

/** `bufs` in runs of at most MAX_IOVECS non-empty buffers, each with the file position it starts at. */
function* iovecChunks(bufs: readonly Uint8Array[], position: number): Generator<[Uint8Array[], number]> {
  const nonEmpty = bufs.filter((b) => b.byteLength > 0);
  for (let i = 0; i < nonEmpty.length; i += MAX_IOVECS) {
    const chunk = nonEmpty.slice(i, i + MAX_IOVECS);
    yield [chunk, position];
    for (const b of chunk) position += b.byteLength;
  }
}

/** A write call's byte count, refused when it wrote nothing (it would loop forever). */
function wrote(n: number): number {
  if (n <= 0) throw new Error("short write: the file system wrote nothing");
  return n;
}

/** `bufs` without their first `n` bytes (after a short writev). */
function dropBytes(bufs: readonly Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const b of bufs) {
    if (n >= b.byteLength) {
      n -= b.byteLength;
      continue;
    }
    out.push(n > 0 ? b.subarray(n) : b);
    n = 0;
  }
  return out;
}

function isNotFound(e: unknown): boolean {
  return (e as { code?: string })?.code === "ENOENT";
}

export const nodeFileSystem: FileSystem = {
  async open(path, mode) {
    const flags =
      mode === "read" ? FS.O_RDONLY : mode === "write" ? FS.O_RDWR | FS.O_CREAT : FS.O_RDWR | FS.O_CREAT | FS.O_TRUNC;
    return new NodeFileHandle(await fsp.open(path, flags, 0o644));
  },
  async list(dir) {
    try {
      return await fsp.readdir(dir);
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
  },
  async mkdirp(dir) {
    // A new directory's entry is durable only once its parent is synced: sync the parent of each
    // one this creates, so a partition directory made for a new topic survives a power cut with
    // the records acknowledged in it (the in-memory twin's mkdirp is durable at once too).
    const missing: string[] = [];
    for (let p = resolvePath(dir); !(await nodeFileSystem.exists(p)); ) {
      missing.unshift(p);
      const up = dirname(p);
      if (up === p) break;
      p = up;
    }
    if (missing.length === 0) return;
    await fsp.mkdir(dir, { recursive: true });
    for (const made of missing) await nodeFileSystem.syncDir(dirname(made));
  },
  async remove(path) {
    await fsp.rm(path, { recursive: true, force: true });
  },
  async rename(from, to) {
    await fsp.rename(from, to);
  },
  async exists(path) {
    try {
      await fsp.stat(path);
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  },
  async readFile(path) {
    try {
      return new Uint8Array(await fsp.readFile(path));
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  },
  async syncDir(dir) {
    const fh = await fsp.open(dir, FS.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
};
