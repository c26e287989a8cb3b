/**
 * The in-memory twin of `nodeFileSystem`, with the same durability contract (see `fs.ts`), and a
 * `crash(mode)` that shows what a crash would leave behind:
 *
 * - "process" (kill -9): everything written survives; every open handle dies.
 * - "power": each file falls back to what its last `datasync` made durable (overwrites and
 *   truncations since then are undone, appends are dropped), except that with `tornTail` a random
 *   prefix of the unsynced tail survives, as a disk that wrote some sectors would leave it. Each
 *   directory falls back to the entries its last `syncDir` saw: an unsynced create disappears, an
 *   unsynced unlink or rename is undone. Every open handle dies.
 *
 * Simplifications, said out loud: directories made by `mkdirp` are durable at once (as
 * `nodeFileSystem.mkdirp`, which syncs the parent of each directory it makes); a file's data and size become durable together
 * (fdatasync does both); an unlinked or renamed-over file stays readable through handles that
 * were open on it, as on POSIX (compaction relies on that); an unsynced overwrite is undone whole,
 * never torn, and that includes writes into space a file was extended into (`truncate` to a larger
 * length) and synced: a log's preallocated segment tail (log.ts `extend`) never tears here, so
 * torn writes there are tested on real files (test/storage-recovery.test.ts, crash.test.ts).
 *
 * @example
 *   const fs = new MemFileSystem();
 *   const log = await PartitionLog.open("/p0", config, { fs, clock });
 *   // ... appends in flight ...
 *   fs.crash("power", { random: seeded(42), tornTail: true });
 *   const again = await PartitionLog.open("/p0", config, { fs, clock });
 */
import type { FileHandle, FileSystem, OpenMode } from "./fs.ts";

export type CrashMode = "process" | "power";

export interface CrashOptions {
  /** A number in [0, 1): the seeded source that picks how much of an unsynced tail survives. */
  random?: () => number;
  /** With "power": keep a random prefix of each file's unsynced tail (needs `random`). */
  tornTail?: boolean;
}

/** One file's bytes: what a handle sees now, and enough to restore what the last datasync saw. */
class Inode {
  data = new Uint8Array(0);
  length = 0;
  /** Length as of the last datasync. */
  syncedLength = 0;
  /** Old contents of synced bytes overwritten or cut since the last datasync, oldest first. */
  undo: { pos: number; bytes: Uint8Array }[] = [];

  ensure(capacity: number): void {
    if (capacity <= this.data.length) return;
    const grown = new Uint8Array(Math.max(capacity, this.data.length * 2, 4096));
    grown.set(this.data.subarray(0, this.length));
    this.data = grown;
  }

  /** Remember synced bytes in [pos, end) before they change, so a power cut can restore them. */
  private saveSynced(pos: number, end: number): void {
    const to = Math.min(end, this.syncedLength, this.length);
    if (pos < to) this.undo.push({ pos, bytes: this.data.slice(pos, to) });
  }

  write(buf: Uint8Array, pos: number): void {
    this.saveSynced(pos, pos + buf.length);
    this.ensure(pos + buf.length);
    if (pos > this.length) this.data.fill(0, this.length, pos);
    this.data.set(buf, pos);
    this.length = Math.max(this.length, pos + buf.length);
  }

  truncate(length: number): void {
    if (length < this.length) {
      this.saveSynced(length, this.length);
    } else {
      this.ensure(length);
      this.data.fill(0, this.length, length);
    }
    this.length = length;
  }

  datasync(): void {
    this.syncedLength = this.length;
    this.undo = [];
  }

  /** Back to the last synced state, plus `tornBytes` of the unsynced tail. */
  powerLoss(tornFraction: number): void {
    const tail = this.length > this.syncedLength ? this.data.slice(this.syncedLength, this.length) : new Uint8Array(0);
    this.ensure(this.syncedLength);
    for (let i = this.undo.length - 1; i >= 0; i--) {
      const u = this.undo[i]!;
      this.data.set(u.bytes, u.pos);
    }
    this.length = this.syncedLength;
    this.undo = [];
    const keep = Math.floor(tail.length * tornFraction);
    if (keep > 0) {
      this.ensure(this.length + keep);
      this.data.set(tail.subarray(0, keep), this.length);
      this.length += keep;
      // What survived is what the disk now holds: it is as durable as the rest.
      this.syncedLength = this.length;
    }
  }
}

class Dir {
  entries = new Map<string, Inode | Dir>();
  /** Entries as of the last syncDir. */
  durable = new Map<string, Inode | Dir>();
}

function fsError(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

function splitPath(path: string): string[] {
  return path.split("/").filter((p) => p !== "" && p !== ".");
}

class MemFileHandle implements FileHandle {
  private closed = false;

  constructor(
    private readonly owner: MemFileSystem,
    private readonly inode: Inode,
    private readonly generation: number,
    private readonly writable: boolean,
  ) {}

  private check(write: boolean): void {
    if (this.closed) throw fsError("EBADF", "file handle is closed");
    if (this.generation !== this.owner.generation) throw fsError("EIO", "file handle lost in a simulated crash");
    if (write && !this.writable) throw fsError("EBADF", "file handle is read-only");
  }

  async read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    await this.owner.yieldTurn();
    this.check(false);
    const n = Math.max(0, Math.min(length, this.inode.length - position));
    buf.set(this.inode.data.subarray(position, position + n), offset);
    return n;
  }

  async write(buf: Uint8Array, position: number | null): Promise<void> {
    await this.owner.yieldTurn();
    this.check(true);
    this.inode.write(buf, position ?? this.inode.length);
  }

  async writev(bufs: readonly Uint8Array[], position: number): Promise<void> {
    await this.owner.yieldTurn();
    this.check(true);
    for (const b of bufs) {
      this.inode.write(b, position);
      position += b.length;
    }
  }

  async datasync(): Promise<void> {
    await this.owner.yieldTurn();
    this.check(true);
    this.owner.datasyncs++;
    this.inode.datasync();
  }

  async truncate(length: number): Promise<void> {
    await this.owner.yieldTurn();
    this.check(true);
    this.inode.truncate(length);
  }

  async size(): Promise<number> {
    await this.owner.yieldTurn();
    this.check(false);
    return this.inode.length;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

export class MemFileSystem implements FileSystem {
  private readonly root = new Dir();
  /** Bumped by every crash; handles from an older generation refuse everything. */
  generation = 0;
  /** fdatasync calls so far, for tests that count them. */
  datasyncs = 0;

  /** Let other tasks run between operations, as real I/O would. */
  async yieldTurn(): Promise<void> {
    await Promise.resolve();
  }

  private lookupDir(path: string, create: boolean): Dir | null {
    let dir = this.root;
    for (const part of splitPath(path)) {
      let next = dir.entries.get(part);
      if (next === undefined && create) {
        next = new Dir();
        dir.entries.set(part, next);
        dir.durable.set(part, next);
      }
      if (!(next instanceof Dir)) return null;
      dir = next;
    }
    return dir;
  }

  private parentOf(path: string): { dir: Dir; name: string } {
    const parts = splitPath(path);
    const name = parts.pop();
    if (name === undefined) throw fsError("EISDIR", `${path} is the root`);
    const dir = this.lookupDir(parts.join("/"), false);
    if (!dir) throw fsError("ENOENT", `no directory for ${path}`);
    return { dir, name };
  }

  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    await this.yieldTurn();
    const { dir, name } = this.parentOf(path);
    let node = dir.entries.get(name);
    if (node instanceof Dir) throw fsError("EISDIR", `${path} is a directory`);
    if (node === undefined) {
      if (mode === "read") throw fsError("ENOENT", `${path} does not exist`);
      node = new Inode();
      dir.entries.set(name, node);
    } else if (mode === "create") {
      node.truncate(0);
    }
    return new MemFileHandle(this, node, this.generation, mode !== "read");
  }

  async list(dir: string): Promise<string[]> {
    await this.yieldTurn();
    const d = this.lookupDir(dir, false);
    return d ? [...d.entries.keys()] : [];
  }

  async mkdirp(dir: string): Promise<void> {
    await this.yieldTurn();
    if (!this.lookupDir(dir, true)) throw fsError("ENOTDIR", `${dir} is a file`);
  }

  async remove(path: string): Promise<void> {
    await this.yieldTurn();
    const parts = splitPath(path);
    const name = parts.pop();
    if (name === undefined) return;
    this.lookupDir(parts.join("/"), false)?.entries.delete(name);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.yieldTurn();
    const src = this.parentOf(from);
    const node = src.dir.entries.get(src.name);
    if (node === undefined) throw fsError("ENOENT", `${from} does not exist`);
    if (splitPath(from).join("/") === splitPath(to).join("/")) return;
    const dst = this.parentOf(to);
    if (dst.dir.entries.get(dst.name) instanceof Dir) throw fsError("EISDIR", `${to} is a directory`);
    src.dir.entries.delete(src.name);
    dst.dir.entries.set(dst.name, node);
  }

  async exists(path: string): Promise<boolean> {
    await this.yieldTurn();
    const parts = splitPath(path);
    const name = parts.pop();
    if (name === undefined) return true;
    return this.lookupDir(parts.join("/"), false)?.entries.has(name) ?? false;
  }

  async readFile(path: string): Promise<Uint8Array | null> {
    await this.yieldTurn();
    const parts = splitPath(path);
    const name = parts.pop();
    const node = name === undefined ? undefined : this.lookupDir(parts.join("/"), false)?.entries.get(name);
    return node instanceof Inode ? node.data.slice(0, node.length) : null;
  }

  async syncDir(dir: string): Promise<void> {
    await this.yieldTurn();
    const d = this.lookupDir(dir, false);
    if (!d) throw fsError("ENOENT", `${dir} does not exist`);
    d.durable = new Map(d.entries);
  }

  /** Simulate a crash; see the top of this file. Open handles all die. */
  crash(mode: CrashMode, options: CrashOptions = {}): void {
    this.generation++;
    if (mode === "process") return;
    const random = options.random;
    const torn = options.tornTail === true && random !== undefined;
    const visit = (dir: Dir): void => {
      dir.entries = new Map(dir.durable);
      for (const node of dir.entries.values()) {
        if (node instanceof Dir) visit(node);
        else node.powerLoss(torn ? random() : 0);
      }
    };
    visit(this.root);
  }
}
