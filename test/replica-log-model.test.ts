/**
 * ReplicaLog against models. A fast-check property test runs random sequences of persist (with
 * conflicting suffixes cut), commitTo, power cuts during a persist, and clean reopens, checking
 * the store against `MemoryStorage` (src/raft/storage.ts), the core's reference store: every
 * entry made durable is there with its bytes, a cut persist leaves a prefix of the old or the
 * new log, the hard state is the old or the new one. Then three real `RaftNode`s over
 * ReplicaLogs, in a small hand-written loop (persist, send, apply, advance), go through several
 * elections with leaders crashing and coming back, and end with identical logs.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EntryType, MemoryStorage, RaftNode, decodeConfChange, type Entry, type HardState, type Message, type NodeId } from "../src/raft/index.ts";
import type { FileSystem } from "../src/runtime/fs.ts";
import { MemFileSystem } from "../src/runtime/mem-fs.ts";
import { splitBatches } from "../src/storage/record-batch.ts";
import { memFs, realFs, type FsKind } from "./support/log-fixtures.ts";
import { rng } from "./support/random.ts";
import { TestFs, closeReplica, conf, noop, normal, openReplica, readEntries, show, type Replica } from "./support/replica-fixtures.ts";

type Kind = "normal" | "noop" | "conf";
interface Append {
  back: number;
  bump: boolean;
  kinds: Kind[];
  vote: NodeId;
}
type Cmd = ({ t: "append" } & Append) | ({ t: "crash"; microtasks: number } & Append) | { t: "commit"; frac: number } | { t: "reopen" };

const kindArb = fc.constantFrom<Kind>("normal", "normal", "normal", "noop", "conf");
const appendArb = { back: fc.nat(3), bump: fc.boolean(), kinds: fc.array(kindArb, { minLength: 1, maxLength: 4 }), vote: fc.integer({ min: 0, max: 3 }) };
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant("append" as const), ...appendArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("crash" as const), microtasks: fc.nat(400), ...appendArb }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("commit" as const), frac: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  { weight: 1, arbitrary: fc.constant({ t: "reopen" as const }) },
);
const replay = process.env.FC_SEED ? { seed: Number(process.env.FC_SEED), ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}) } : {};

const OPTS = { config: { segmentBytes: 500 }, cacheBytes: 400 };

function makeEntry(kind: Kind, index: number, term: number): Entry {
  if (kind === "noop") return noop(index, term);
  if (kind === "conf") return conf(index, term, [1, 2, 3, 4]);
  return normal(index, term, 1 + (index % 3));
}

function modelOf(entries: readonly Entry[]): MemoryStorage {
  const m = new MemoryStorage();
  m.append(entries);
  return m;
}

function modelEntries(m: MemoryStorage): Entry[] {
  return m.lastIndex() === 0 ? [] : m.entries(1, m.lastIndex() + 1, Number.MAX_SAFE_INTEGER);
}

/** A batch index this small keeps all but the newest entries and those from the applied one on as samples. */
const SMALL_INDEX = { ...OPTS, indexLimits: { exactBatches: 2, maxSamples: 2 } };

async function run(kind: FsKind, cmds: Cmd[], opts: Parameters<typeof openReplica>[2] = OPTS): Promise<void> {
  const { fs: disk, dir, cleanup } = await kind.make();
  const power = disk instanceof MemFileSystem ? disk : null;
  let proc = new TestFs(disk);
  let r: Replica = await openReplica(proc, dir, opts);
  let model = new MemoryStorage();
  let hard: HardState = { term: 0, vote: 0, commit: 0 };
  let applied = 0;
  let seed = 0;

  const plan = (c: Append) => {
    const k = Math.max(applied + 1, model.lastIndex() + 1 - c.back);
    const term = Math.max(hard.term, model.term(k - 1) ?? 0, 1) + (c.bump ? 1 : 0);
    const ents = c.kinds.map((kd, j) => makeEntry(kd, k + j, term));
    return { k, ents, hs: { term, vote: c.vote, commit: applied } };
  };
  const checkTerms = async () => {
    expect([r.store.firstIndex(), r.store.lastIndex()]).toEqual([model.firstIndex(), model.lastIndex()]);
    for (let i = 0; i <= model.lastIndex(); i++) expect(r.store.term(i), `term(${i})`).toBe(model.term(i));
    // First offsets, from the index or (below its exact window) from the disk: one batch after another.
    const bases: number[] = [];
    for (let i = 1; i <= model.lastIndex(); i++) {
      const base = await r.store.baseOffsetOf(i);
      expect(base, `first offset of ${i}`).toBeDefined();
      bases.push(base!);
    }
    for (let i = 2; i <= model.lastIndex(); i++) {
      if (i > applied) expect(r.store.offsetsOf(i).baseOffset).toBe(r.store.offsetsOf(i - 1).lastOffset + 1);
      expect(bases[i - 1]!, `first offset of ${i}`).toBeGreaterThan(bases[i - 2]!);
    }
    for (let i = Math.max(1, applied); i <= model.lastIndex(); i++) expect(r.store.offsetsOf(i).baseOffset).toBe(bases[i - 1]);
  };
  const reopen = async () => {
    proc = new TestFs(disk);
    r = await openReplica(proc, dir, opts);
  };

  try {
    for (const c of cmds) {
      if (c.t === "append") {
        const { ents, hs } = plan(c);
        await r.store.persist(ents, hs, undefined);
        expect(r.log.durableEnd, "persist resolved before its entries were durable").toBe(r.log.logEndOffset);
        model.append(ents);
        hard = hs;
        await checkTerms();
      } else if (c.t === "commit") {
        const idx = applied + Math.floor(c.frac * (model.lastIndex() - applied));
        r.store.commitTo(idx);
        applied = idx;
        if (idx > 0) expect(r.log.highWatermark).toBe(r.store.offsetsOf(idx).lastOffset + 1);
      } else if (c.t === "reopen") {
        await closeReplica(r);
        await reopen();
        await checkTerms();
        expect((await readEntries(r.store)).map(show)).toEqual(modelEntries(model).map(show));
        expect(r.store.initialState().hardState).toEqual({ term: hard.term, vote: hard.vote, commit: applied });
        expect(r.store.appliedHint).toBe(applied);
      } else {
        const { k, ents, hs } = plan(c);
        void r.store.persist(ents, hs, undefined).catch(() => "lost");
        for (let i = c.microtasks; i > 0; i--) await null;
        proc.kill();
        power?.crash("power", { random: rng(++seed), tornTail: true });
        await reopen();
        const got = await readEntries(r.store);
        const old = modelEntries(model);
        // Everything below the cut point was durable before this persist began.
        expect(got.slice(0, k - 1).map(show)).toEqual(old.slice(0, k - 1).map(show));
        const rest = got.slice(k - 1).map(show);
        const asNew = ents.slice(0, rest.length).map(show);
        const asOld = old.slice(k - 1, k - 1 + rest.length).map(show);
        expect(rest.length === 0 || rest.every((x, i) => x === asNew[i]) || rest.every((x, i) => x === asOld[i]), `after the cut: ${rest.join(" ")}`).toBe(true);
        // Nothing durable is lost unless this persist was cutting it anyway.
        if (k > old.length) expect(got.length).toBeGreaterThanOrEqual(old.length);
        const hs0 = r.store.initialState().hardState;
        expect([[hard.term, hard.vote], [hs.term, hs.vote]]).toContainEqual([hs0.term, hs0.vote]);
        expect(r.store.appliedHint).toBeLessThanOrEqual(applied);
        if (r.store.appliedHint > 0) expect(r.log.highWatermark).toBe(r.store.offsetsOf(r.store.appliedHint).lastOffset + 1);
        model = modelOf(got);
        applied = r.store.appliedHint;
        if (hs0.term === hs.term && hs0.vote === hs.vote) hard = hs;
        await checkTerms();
      }
    }
    await closeReplica(r);
  } finally {
    await cleanup();
  }
}

describe("ReplicaLog against MemoryStorage", () => {
  it("on mem-fs, with power cuts and torn tails", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 30 }), (cmds) => run(memFs, cmds)),
      { numRuns: 60, ...replay },
    );
  });

  it("on mem-fs, with a batch index of 2 exact offsets and 2 samples", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 30 }), (cmds) => run(memFs, cmds, SMALL_INDEX)),
      { numRuns: 60, ...replay },
    );
  });

  it("on real files, with the process killed mid-persist", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 15 }), (cmds) => run(realFs, cmds)),
      { numRuns: 8, ...replay },
    );
  });
});

// ---- three RaftNodes over ReplicaLogs --------------------------------------------------------------

interface Peer {
  id: NodeId;
  mem: MemFileSystem;
  proc: TestFs;
  r: Replica | null;
  node: RaftNode | null;
}

const IDS = [1, 2, 3];

/** A message as it would arrive over a network: its own copy of every byte. */
function copied(m: Message): Message {
  return {
    ...m,
    entries: m.entries.map((e) => ({ ...e, data: e.data.slice() })),
    ...(m.snapshot ? { snapshot: { ...m.snapshot, data: m.snapshot.data.slice() } } : {}),
  };
}

class Loop {
  readonly peers: Peer[];
  private inbox: Message[] = [];
  /** Entries fetched from disk after a cache miss. */
  loads = 0;

  constructor(private readonly seed: number) {
    this.peers = IDS.map((id) => ({ id, mem: new MemFileSystem(), proc: null as unknown as TestFs, r: null, node: null }));
  }

  async start(p: Peer): Promise<void> {
    p.proc = new TestFs(p.mem);
    p.r = await openReplica(p.proc as FileSystem, "/p", { config: { segmentBytes: 1500 }, cacheBytes: 1200 });
    const config = { id: p.id, peers: IDS, electionTicks: 10, heartbeatTicks: 1, preVote: true, checkQuorum: true, maxInflightMsgs: 4, maxSizePerMsg: 600 };
    p.node = new RaftNode({ ...config, applied: p.r.store.appliedHint, random: rng(this.seed * 10 + p.id) }, p.r.store);
  }

  /** The peer's process dies and its machine loses power (everything it acknowledged is synced). */
  stop(p: Peer): void {
    p.proc.kill();
    p.mem.crash("power");
    p.node = null;
    p.r = null;
  }

  /** Drain the peer's Readys in the contract's order: persist, send, apply, advance; then fetch misses. */
  private async drive(p: Peer): Promise<void> {
    while (p.node && p.r && p.node.hasReady()) {
      const { node, r } = p;
      const rd = node.ready();
      await r.store.persist(rd.entries, rd.hardState, rd.snapshot);
      for (const m of rd.messages) this.inbox.push(copied(m));
      for (const e of rd.committedEntries) if (e.type === EntryType.ConfChange) await r.store.setVoters(decodeConfChange(e.data).voters);
      const last = rd.committedEntries[rd.committedEntries.length - 1];
      if (last) r.store.commitTo(last.index);
      node.advance(rd);
      const misses = r.store.takeMisses();
      for (const lo of misses) await r.store.load(lo);
      this.loads += misses.length;
      if (misses.length > 0) for (const to of IDS) node.retryAppend(to);
    }
  }

  /** One tick everywhere, then messages delivered until quiet. */
  async tick(): Promise<void> {
    for (const p of this.peers) p.node?.tick();
    for (let round = 0; round < 50; round++) {
      for (const p of this.peers) await this.drive(p);
      if (this.inbox.length === 0) return;
      const msgs = this.inbox;
      this.inbox = [];
      for (const m of msgs) this.peers[m.to - 1]!.node?.step(m);
    }
  }

  async until(cond: () => boolean, what: string, maxTicks = 300): Promise<void> {
    for (let i = 0; i < maxTicks && !cond(); i++) await this.tick();
    expect(cond(), what).toBe(true);
  }

  leader(): Peer | undefined {
    return this.peers.find((p) => p.node?.role === "leader");
  }

  /** Propose `n` batches at the leader and wait until every live peer has applied them. */
  async commitBatches(n: number): Promise<void> {
    const leader = this.leader()!;
    let last = 0;
    for (let i = 0; i < n; i++) {
      const e = normal(0, 0, 1 + (i % 4));
      const res = leader.node!.propose(e.data);
      expect(res.ok).toBe(true);
      if (res.ok) last = res.index;
      await this.tick();
    }
    await this.until(() => this.peers.every((p) => !p.node || p.node.log.applied >= last), `batches up to ${last} applied everywhere`);
  }
}

describe("RaftNode over ReplicaLog", () => {
  it("elects, replicates, survives leaders crashing and returning, and ends with identical logs", async () => {
    const loop = new Loop(7);
    for (const p of loop.peers) await loop.start(p);
    const terms = new Set<number>();
    await loop.until(() => loop.leader() !== undefined, "a first leader");
    for (let election = 0; election < 3; election++) {
      const leader = loop.leader()!;
      terms.add(leader.node!.term);
      await loop.commitBatches(6);
      const oldTerm = leader.node!.term;
      loop.stop(leader);
      await loop.until(() => (loop.leader()?.node!.term ?? 0) > oldTerm, "a leader of a new term");
      await loop.commitBatches(4);
      await loop.start(leader);
    }
    terms.add(loop.leader()!.node!.term);
    await loop.commitBatches(2);
    expect(terms.size).toBeGreaterThanOrEqual(4);
    expect(loop.loads, "restarted peers catch up from entries on disk only").toBeGreaterThan(0);

    const commits = loop.peers.map((p) => p.node!.log.applied);
    expect(new Set(commits).size).toBe(1);
    const c = commits[0]!;
    const logs = await Promise.all(loop.peers.map(async (p) => (await readEntries(p.r!.store, 1, c)).map(show)));
    expect(logs[1]).toEqual(logs[0]);
    expect(logs[2]).toEqual(logs[0]);
    const end = loop.peers[0]!.r!.store.offsetsOf(c).lastOffset + 1;
    const bytes = await Promise.all(
      loop.peers.map(async (p) => {
        expect(p.r!.log.highWatermark).toBe(end);
        const { batches } = await p.r!.log.read(0, 1 << 22);
        return splitBatches(batches).map((b) => Buffer.from(b).toString("hex"));
      }),
    );
    expect(bytes[1]).toEqual(bytes[0]);
    expect(bytes[2]).toEqual(bytes[0]);
    for (const p of loop.peers) await closeReplica(p.r!);
  });
});
