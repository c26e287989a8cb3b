/**
 * FileHandle.writev on the real disk and on the in-memory twin: every buffer lands, in order,
 * at the position given, however many buffers (more than one writev call takes) and whatever
 * their sizes (empty ones included). And mkdirp, which makes what is missing of a path (and on
 * the real disk syncs each new directory's parent, which a test cannot observe short of a power
 * cut) and leaves what exists as it is.
 */
import { afterEach, describe, expect, it } from "vitest";
import { memFs, realFs, type FsKind } from "./support/log-fixtures.ts";

describe.each([realFs, memFs])("FileHandle.writev on $name", (kind: FsKind) => {
  let cleanup: (() => Promise<void>) | null = null;
  afterEach(async () => {
    await cleanup?.();
    cleanup = null;
  });

  it("mkdirp makes every missing directory of a path and keeps what is already there", async () => {
    const made = await kind.make();
    cleanup = made.cleanup;
    await made.fs.mkdirp(made.dir);
    const fh = await made.fs.open(`${made.dir}/keep`, "create");
    await fh.write(new Uint8Array([1, 2, 3]), 0);
    await fh.close();
    await made.fs.mkdirp(`${made.dir}/a/b/c`);
    await made.fs.mkdirp(`${made.dir}/a/b/c`);
    await made.fs.mkdirp(made.dir);
    expect((await made.fs.list(made.dir)).sort()).toEqual(["a", "keep"]);
    expect(await made.fs.list(`${made.dir}/a/b`)).toEqual(["c"]);
    expect(await made.fs.readFile(`${made.dir}/keep`)).toEqual(new Uint8Array([1, 2, 3]));
  });

  it("writes many buffers of any size back to back from the position", async () => {
    const made = await kind.make();
    cleanup = made.cleanup;
    await made.fs.mkdirp(made.dir);
    const fh = await made.fs.open(`${made.dir}/f`, "create");
    await fh.write(new Uint8Array(10).fill(0xee), 0);
    const bufs = Array.from({ length: 3000 }, (_, i) => new Uint8Array(i % 7).fill(i & 0xff));
    await fh.writev(bufs, 4);
    const total = bufs.reduce((n, b) => n + b.length, 0);
    expect(await fh.size()).toBe(4 + total);
    const got = new Uint8Array(4 + total);
    expect(await fh.read(got, 0, got.length, 0)).toBe(got.length);
    const want = new Uint8Array(4 + total);
    want.fill(0xee, 0, 4);
    let at = 4;
    for (const b of bufs) {
      want.set(b, at);
      at += b.length;
    }
    expect(got).toEqual(want);
    await fh.close();
  });
});
