/**
 * A FileSystem wrapper for storage tests: counts datasync and write calls, can hold syncs at a
 * gate (to pile appends up behind one), and can make writes or syncs fail (a dying disk).
 */
import type { FileHandle, FileSystem, OpenMode } from "../../src/runtime/fs.ts";

export class CountingFileSystem implements FileSystem {
  datasyncs = 0;
  writes = 0;
  failWrites = false;
  failSyncs = false;
  /** While set, every datasync waits for this promise first. */
  syncGate: Promise<void> | null = null;
  /** Syncs currently held at the gate. */
  syncsWaiting = 0;

  constructor(private readonly inner: FileSystem) {}

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
      truncate: (length) => h.truncate(length),
      size: () => h.size(),
      close: () => h.close(),
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
