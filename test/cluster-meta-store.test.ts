/**
 * MetaStore, the controller's file-backed Raft store: its bytes, suffix cuts, snapshots and
 * compaction, torn tails; and a fast-check model test against MemoryStorage with random
 * persist / cut / snapshot / install / crash / reopen sequences, including power cuts in the
 * middle of a write (the reopened store must then hold what a crash at that point could leave).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MetaStore, metaStoreDir } from "../src/cluster/meta-store.ts";
import { EntryType, MemoryStorage, type Entry, type HardState, type Snapshot } from "../src/raft/index.ts";
import { MemFileSystem } from "../src/runtime/mem-fs.ts";
import { Reader } from "../src/storage/bytes.ts";
import { crc32c } from "../src/storage/crc32c.ts";
import { codeOf } from "./support/errors.ts";
import { capturingLogger } from "./support/log-fixtures.ts";
import { rng } from "./support/random.ts";

const DIR = metaStoreDir("/data");
const enc = new TextEncoder();

function ents(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push({ term, index: i, type: EntryType.Normal, data: enc.encode(`e${i}t${term}`) });
  return out;
}

type Store = MemoryStorage | MetaStore;

/** Everything the core can observe of a store, as plain data. */
function view(s: Store) {
  const first = s.firstIndex();
  const last = s.lastIndex();
  const snap = s.snapshot();
  return {
    first,
    last,
    snapshot: { ...snap.meta, data: [...snap.data] },
    hard: s.hardState(),
    entries: (last >= first ? s.entries(first, last + 1, Infinity) : []).map((e) => ({ ...e, data: [...e.data] })),
    prevTerm: s.term(first - 1),
  };
}
type View = ReturnType<typeof view>;

describe("MetaStore", () => {
  it("writes the documented record layout and reads it back after a reopen", async () => {
    const fs = new MemFileSystem();
    const store = await MetaStore.open(DIR, fs);
    await store.persist(ents(1, 2, 1), { term: 1, vote: 1, commit: 1 });
    const bytes = (await fs.readFile(`${DIR}/raft.log`))!;
    const r = new Reader(bytes);
    const length = r.uint32();
    const crc = r.uint32();
    expect(length).toBe(17 + "e1t1".length);
    expect(crc).toBe(crc32c(bytes, 8, 8 + length));
    expect([r.int64(), r.int64(), r.int8()]).toEqual([1, 1, EntryType.Normal]);
    expect(bytes.byteLength).toBe(2 * (8 + length));
    const again = await MetaStore.open(DIR, fs);
    expect(view(again)).toEqual(view(store));
    expect(again.initialState().hardState).toEqual({ term: 1, vote: 1, commit: 1 });
  });

  it("cuts the stored suffix when an entry lands at an index it holds, on disk too", async () => {
    const fs = new MemFileSystem();
    const store = await MetaStore.open(DIR, fs);
    await store.persist(ents(1, 5, 1));
    await store.persist(ents(3, 4, 2));
    expect([store.lastIndex(), store.term(2), store.term(3), store.term(5)]).toEqual([4, 1, 2, undefined]);
    fs.crash("power");
    const again = await MetaStore.open(DIR, fs);
    expect(view(again)).toEqual(view(store));
  });

  it("snapshots, compacts the log file and keeps both across a power cut", async () => {
    const fs = new MemFileSystem();
    const store = await MetaStore.open(DIR, fs);
    await store.persist(ents(1, 10, 1), { term: 1, vote: 0, commit: 10 });
    const full = (await fs.readFile(`${DIR}/raft.log`))!.byteLength;
    expect(store.shouldSnapshot(10)).toBe(true);
    const snap = await store.createSnapshot(8, { voters: [1, 2, 3] }, enc.encode("state@8"));
    expect(snap.meta).toEqual({ index: 8, term: 1, confState: { voters: [1, 2, 3] } });
    expect([store.firstIndex(), store.lastIndex(), store.term(8), store.term(7)]).toEqual([9, 10, 1, undefined]);
    expect(store.shouldSnapshot(3)).toBe(false);
    const record = (i: number) => 8 + 17 + `e${i}t1`.length;
    expect(full).toBe([1, 2, 3, 4, 5, 6, 7, 8, 9, 10].reduce((n, i) => n + record(i), 0));
    expect((await fs.readFile(`${DIR}/raft.log`))!.byteLength).toBe(record(9) + record(10));
    fs.crash("power");
    const again = await MetaStore.open(DIR, fs);
    expect(view(again)).toEqual(view(store));
    expect(again.initialState().confState).toEqual({ voters: [1, 2, 3] });
  });

  it("installs a leader's snapshot in place of the whole log", async () => {
    const fs = new MemFileSystem();
    const store = await MetaStore.open(DIR, fs);
    await store.persist(ents(1, 5, 1));
    const snap: Snapshot = { meta: { index: 20, term: 3, confState: { voters: [1, 2] } }, data: enc.encode("s") };
    await store.persist(ents(21, 22, 3), { term: 3, vote: 2, commit: 20 }, snap);
    expect([store.firstIndex(), store.lastIndex(), store.term(20), store.term(5)]).toEqual([21, 22, 3, undefined]);
    fs.crash("power");
    expect(view(await MetaStore.open(DIR, fs))).toEqual(view(store));
  });

  it("cuts a torn or corrupt tail on open and logs it", async () => {
    for (const damage of ["torn", "flipped", "out of order"] as const) {
      const fs = new MemFileSystem();
      const store = await MetaStore.open(DIR, fs);
      await store.persist(ents(1, 3, 1));
      const fh = await fs.open(`${DIR}/raft.log`, "write");
      const size = await fh.size();
      if (damage === "torn") await fh.write(new Uint8Array([0, 0, 0, 40, 1, 2]), size);
      else if (damage === "flipped") await fh.write(new Uint8Array([0xee]), size - 1);
      else await fh.write((await fs.readFile(`${DIR}/raft.log`))!.slice(0, size / 3), size); // entry 1 again, after 3
      await fh.close();
      const { logger, lines } = capturingLogger();
      const again = await MetaStore.open(DIR, fs, logger);
      expect(again.lastIndex(), damage).toBe(damage === "flipped" ? 2 : 3);
      expect(lines.some((l) => l.level === "warn" && String(l.msg).includes("torn or corrupt tail")), damage).toBe(true);
      await again.persist(ents(again.lastIndex() + 1, 4, 1));
      expect(view(await MetaStore.open(DIR, fs))).toEqual(view(again));
    }
  });

  it("refuses a damaged snapshot or hard-state file instead of guessing", async () => {
    const fs = new MemFileSystem();
    const store = await MetaStore.open(DIR, fs);
    await store.persist(ents(1, 3, 1), { term: 1, vote: 1, commit: 3 });
    await store.createSnapshot(2, { voters: [1] }, enc.encode("x"));
    const snap = (await fs.readFile(`${DIR}/snapshot.bin`))!;
    const good = snap.slice();
    snap[snap.length - 1] = snap[snap.length - 1]! ^ 1;
    const overwrite = async (name: string, bytes: Uint8Array) => {
      const fh = await fs.open(`${DIR}/${name}`, "create");
      await fh.write(bytes, 0);
      await fh.close();
    };
    await overwrite("snapshot.bin", snap);
    expect(await codeOf(MetaStore.open(DIR, fs))).toBe("CORRUPT_RECORD");
    await overwrite("snapshot.bin", good);
    await overwrite("hard-state.json", enc.encode('{"v":1,"term":1}'));
    expect(await codeOf(MetaStore.open(DIR, fs))).toBe("CORRUPT_RECORD");
  });

  it("refuses every write after a failed one, until reopened", async () => {
    const fs = new MemFileSystem();
    const store = await MetaStore.open(DIR, fs);
    await store.persist(ents(1, 1, 1));
    fs.crash("process"); // its file handle dies: the next write fails
    await expect(store.persist(ents(2, 2, 1))).rejects.toThrow();
    expect(await codeOf(store.persist(ents(2, 2, 1)))).toBe("STORAGE_ERROR");
    expect((await MetaStore.open(DIR, fs)).lastIndex()).toBe(1);
  });
});

// ---- the model test ----

type Op =
  | { t: "append"; back: number; count: number; bump: boolean }
  | { t: "hard"; vote: number; commitFrac: number }
  | { t: "snapshot"; frac: number }
  | { t: "install"; ahead: number; count: number }
  | { t: "reopen"; power: boolean }
  | { t: "cut"; turns: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant("append" as const), back: fc.nat(4), count: fc.integer({ min: 1, max: 4 }), bump: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("hard" as const), vote: fc.nat(3), commitFrac: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("snapshot" as const), frac: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("install" as const), ahead: fc.integer({ min: -3, max: 4 }), count: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("reopen" as const), power: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("cut" as const), turns: fc.nat(40) }) },
);

/**
 * A MemFileSystem whose process can die: after `cutPower` every operation still in flight (the
 * write the crash interrupted) fails at its next step, as it would in a dead process, instead of
 * writing on behind the crash.
 */
class MortalFs extends MemFileSystem {
  private dead = false;

  override async yieldTurn(): Promise<void> {
    await super.yieldTurn();
    if (this.dead) throw new Error("EIO: the process died in the power cut");
  }

  async cutPower(pending: Promise<unknown>, random: () => number): Promise<void> {
    this.dead = true;
    this.crash("power", { random, tornTail: true });
    await pending.catch(() => undefined);
    this.dead = false;
  }
}

/** Start `w`, let it run `turns` steps, cut the power, reopen: the store the crash left. */
async function cutDuring(fs: MortalFs, store: MetaStore, w: Write, turns: number, random: () => number): Promise<MetaStore> {
  const pending = applyToStore(store, w);
  for (let i = 0; i < turns; i++) await Promise.resolve();
  await fs.cutPower(pending, random);
  return MetaStore.open(DIR, fs);
}

/** One write, as the model and the store both take it. */
type Write =
  | { kind: "persist"; entries: Entry[]; hard?: HardState; snapshot?: Snapshot; head: number }
  | { kind: "snapshot"; index: number; data: Uint8Array };

function copyOf(v: View): MemoryStorage {
  const m = new MemoryStorage();
  if (v.snapshot.index > 0) {
    const { data, ...meta } = v.snapshot;
    m.applySnapshot({ meta, data: Uint8Array.from(data) });
  }
  m.append(v.entries.map((e) => ({ ...e, data: Uint8Array.from(e.data) })));
  m.setHardState(v.hard);
  return m;
}

function applyToModel(m: MemoryStorage, w: Write): void {
  if (w.kind === "snapshot") {
    m.createSnapshot(w.index, { voters: [1, 2, 3] }, w.data);
    m.compact(w.index);
    return;
  }
  if (w.snapshot) m.applySnapshot(w.snapshot);
  m.append(w.entries);
  if (w.hard) m.setHardState(w.hard);
}

function applyToStore(s: MetaStore, w: Write): Promise<unknown> {
  return w.kind === "snapshot" ? s.createSnapshot(w.index, { voters: [1, 2, 3] }, w.data) : s.persist(w.entries, w.hard, w.snapshot);
}

/** A Raft-shaped write for `op` (terms never go back; an installed snapshot is newer than the log), or none. */
function writeFor(op: Op, m: MemoryStorage, term: { now: number }, step: number): Write | undefined {
  const first = m.firstIndex();
  const last = m.lastIndex();
  switch (op.t) {
    case "append": {
      if (op.bump) term.now++;
      const from = Math.max(first, last + 1 - op.back);
      // Never cut committed entries, as Raft never does.
      if (from <= m.hardState().commit) return undefined;
      return { kind: "persist", entries: ents(from, from + op.count - 1, term.now), head: from };
    }
    case "hard": {
      const commit = Math.max(m.hardState().commit, Math.floor(op.commitFrac * last));
      return { kind: "persist", entries: [], hard: { term: term.now, vote: op.vote, commit }, head: last + 1 };
    }
    case "snapshot": {
      // The driver snapshots what it applied, so at or below the commit.
      const commit = m.hardState().commit;
      const index = m.snapshot().meta.index + 1 + Math.floor(op.frac * (commit - m.snapshot().meta.index));
      if (index > commit) return undefined;
      return { kind: "snapshot", index, data: enc.encode(`state@${index}#${step}`) };
    }
    case "install": {
      const index = Math.max(m.hardState().commit + 1, last + op.ahead);
      term.now++;
      const snapshot: Snapshot = { meta: { index, term: term.now, confState: { voters: [1, 2] } }, data: enc.encode(`leader@${index}`) };
      const hard = { term: term.now, vote: 0, commit: index };
      return { kind: "persist", entries: ents(index + 1, index + op.count, term.now), hard, snapshot, head: index + 1 };
    }
    default:
      return undefined;
  }
}

function isPrefix(a: View["entries"], b: View["entries"]): boolean {
  return a.length <= b.length && a.every((e, i) => JSON.stringify(e) === JSON.stringify(b[i]));
}

/** What a power cut in the middle of `w` may leave (everything synced before it survives). */
function crashOutcomeAllowed(got: View, before: View, after: View, w: Write): string | undefined {
  const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);
  if (!same(got.hard, before.hard) && !same(got.hard, after.hard)) return "hard state is neither the old nor the new";
  if (!same(got.hard, before.hard) && !same(got, after)) return "the new hard state landed before the rest of its write";
  if (!same(got.snapshot, before.snapshot) && !same(got.snapshot, after.snapshot)) return "snapshot is neither the old nor the new";
  const newSnap = !same(got.snapshot, before.snapshot);
  if (w.kind === "snapshot") return same(got.entries, (newSnap ? after : before).entries) ? undefined : "compaction lost or kept the wrong entries";
  if (newSnap) return isPrefix(got.entries, after.entries) ? undefined : "entries after an installed snapshot are not a prefix of the new ones";
  if (same(got.entries, before.entries)) return undefined;
  // The cut (if any) is synced before the new entries: a prefix of the new log that keeps the old one up to the cut.
  const keep = w.head - after.first;
  return isPrefix(got.entries, after.entries) && got.entries.length >= keep ? undefined : "entries are neither the old log nor the old log cut and partly extended";
}

async function runModel(ops: Op[], seed: number): Promise<void> {
  const fs = new MortalFs();
  const random = rng(seed);
  let store = await MetaStore.open(DIR, fs);
  let model = new MemoryStorage();
  const term = { now: 1 };
  for (const [step, op] of ops.entries()) {
    const where = `step ${step} ${JSON.stringify(op)}`;
    if (op.t === "reopen") {
      fs.crash(op.power ? "power" : "process", { random, tornTail: true });
      store = await MetaStore.open(DIR, fs);
    } else if (op.t === "cut") {
      // Start the next write (an append), cut the power `turns` steps into it, then reopen.
      const w = writeFor({ t: "append", back: 0, count: 1 + (op.turns % 3), bump: false }, model, term, step);
      if (!w) continue;
      const before = view(model);
      const next = copyOf(before);
      applyToModel(next, w);
      store = await cutDuring(fs, store, w, op.turns, random);
      const got = view(store);
      const why = crashOutcomeAllowed(got, before, view(next), w);
      expect(why, `${where}: ${JSON.stringify(got)}`).toBeUndefined();
      model = copyOf(got);
    } else {
      const w = writeFor(op, model, term, step);
      if (!w) continue;
      applyToModel(model, w);
      await applyToStore(store, w);
    }
    expect(view(store), where).toEqual(view(model));
  }
}

/** A power cut at a random point of any kind of write: snapshot, install, append with a cut. */
async function runCutAnywhere(seed: number): Promise<void> {
  const random = rng(seed);
  const fs = new MortalFs();
  let store = await MetaStore.open(DIR, fs);
  let model = new MemoryStorage();
  const term = { now: 1 };
  for (let step = 0; step < 40; step++) {
    const pick = random();
    const op: Op =
      pick < 0.5
        ? { t: "append", back: Math.floor(random() * 4), count: 1 + Math.floor(random() * 3), bump: random() < 0.3 }
        : pick < 0.7
          ? { t: "hard", vote: 1, commitFrac: random() * 0.5 }
          : pick < 0.9
            ? { t: "snapshot", frac: random() }
            : { t: "install", ahead: Math.floor(random() * 6) - 2, count: Math.floor(random() * 3) };
    const w = writeFor(op, model, term, step);
    if (!w) continue;
    const before = view(model);
    const next = copyOf(before);
    applyToModel(next, w);
    if (random() < 0.3) {
      store = await cutDuring(fs, store, w, Math.floor(random() * 60), random);
      const got = view(store);
      const why = crashOutcomeAllowed(got, before, view(next), w);
      expect(why, `seed ${seed} step ${step} ${JSON.stringify(op)}: ${JSON.stringify(got)}`).toBeUndefined();
      model = copyOf(got);
    } else {
      await applyToStore(store, w);
      model = next;
    }
    expect(view(store), `seed ${seed} step ${step}`).toEqual(view(model));
  }
}

describe("MetaStore power cuts", () => {
  it("makes a suffix cut durable before new records go after it, so old and new entries never mix", async () => {
    // Equal-sized records, so a new record starts exactly where the old log ended: a power cut
    // that undid an unsynced cut would put 1..5@1 back in front of a torn 6@2, a log no leader wrote.
    for (let turns = 0; turns < 80; turns++) {
      const fs = new MortalFs();
      const store = await MetaStore.open(DIR, fs);
      await store.persist(ents(1, 5, 1));
      const before = view(store);
      const model = copyOf(before);
      const w: Write = { kind: "persist", entries: ents(4, 7, 2), head: 4 };
      applyToModel(model, w);
      const got = view(await cutDuring(fs, store, w, turns, () => 0.99));
      expect(crashOutcomeAllowed(got, before, view(model), w), `after ${turns} turns: ${JSON.stringify(got.entries.map((e) => `${e.index}@${e.term}`))}`).toBeUndefined();
    }
  });
});

describe("MetaStore against MemoryStorage", () => {
  it("matches the model through random writes, snapshots, installs, crashes and reopens", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 30 }), fc.nat(), async (ops, seed) => {
        await runModel(ops, seed);
      }),
      { numRuns: 150 },
    );
  });

  it("leaves only what a crash there could leave when the power goes in the middle of any write", async () => {
    for (let seed = 1; seed <= 150; seed++) await runCutAnywhere(seed);
  });
});
