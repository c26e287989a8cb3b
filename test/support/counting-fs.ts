/**
 * A FileSystem wrapper for storage tests: counts datasync and write calls, can hold syncs at a
 * gate (to pile appends up behind one), and can make writes or syncs fail (a dying disk).
 */
import type { BlockingFileOps, FileHandle, FileSystem, OpenMode } from "../../src/runtime/fs.ts";

export class CountingFileSystem implements FileSystem {
  datasyncs = 0;
  writes = 0;
  failWrites = false;
  failSyncs = false;
  /** While set, every datasync waits for this promise first. */
  syncGate: Promise<void> | null = null;
  /** Syncs currently held at the gate. */
  syncsWaiting = 0;

  /** Calls of the handles' blocking twins (with `blocking`), counted in writes and datasyncs too. */
  blockingWrites = 0;
  blockingSyncs = 0;

  /** `blocking`: the handles offer the inner handles' blocking calls (which fail as the others do). */
  constructor(
    private readonly inner: FileSystem,
    private readonly options: { blocking?: boolean } = {},
  ) {}

  async open(path: string, mode: OpenMode): Promise<FileHandle> {
    const h = await this.inner.open(path, mode);
    const outer = this;
    return {
      read: (buf, offset, length, position) => h.read(buf, offset, length, position),
      async write(buf, position) {
        outer.writes++;
        if (outer.failWrites) throw Object.assign(new Error("EIO: simulated write failure"), { code: "EIO" });
        return h.write(buf, position);
      },
      async writev(bufs, position) {
        outer.writes++;
        if (outer.failWrites) throw Object.assign(new Error("EIO: simulated write failure"), { code: "EIO" });
        return h.writev(bufs, position);
      },
      async datasync() {
        if (outer.syncGate) {
          outer.syncsWaiting++;
          await outer.syncGate;
          outer.syncsWaiting--;
        }
        outer.datasyncs++;
        if (outer.failSyncs) throw Object.assign(new Error("EIO: simulated fdatasync failure"), { code: "EIO" });
        return h.datasync();
      },
      ...(this.options.blocking && h.blocking ? { blocking: this.blockingOf(h.blocking) } : {}),
      truncate: (length) => h.truncate(length),
      size: () => h.size(),
      close: () => h.close(),
    };
  }
  private blockingOf(inner: BlockingFileOps): BlockingFileOps {
    return {
      writev: (bufs, position) => {
        this.writes++;
        this.blockingWrites++;
        if (this.failWrites) throw Object.assign(new Error("EIO: simulated write failure"), { code: "EIO" });
        inner.writev(bufs, position);
      },
      datasync: () => {
        this.datasyncs++;
        this.blockingSyncs++;
        if (this.failSyncs) throw Object.assign(new Error("EIO: simulated fdatasync failure"), { code: "EIO" });
        inner.datasync();
      },
    };
  }
  list(dir: string) {
    return this.inner.list(dir);
  }
  mkdirp(dir: string) {
    return this.inner.mkdirp(dir);
  }
  remove(path: string) {
    return this.inner.remove(path);
  }
  rename(from: string, to: string) {
    return this.inner.rename(from, to);
  }
  exists(path: string) {
    return this.inner.exists(path);
  }
  readFile(path: string) {
    return this.inner.readFile(path);
  }
  syncDir(dir: string) {
    return this.inner.syncDir(dir);
  }
}
