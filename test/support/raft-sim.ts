/**
 * Test drivers for the pure Raft core (src/raft): a `SimNode` is a driver that keeps the contract
 * (persist, send, apply, advance) over a `MemoryStorage` that survives crashes while everything
 * else is lost; `Checker` holds Raft's safety properties and is run after every step; `Cluster`
 * runs a script of commands for the data-driven tables; `simulate(seed)` runs a whole cluster
 * over a faulty simulated network from one seed.
 */
import {
  EntryType,
  MemoryStorage,
  RaftNode,
  decodeConfChange,
  type Entry,
  type Message,
  type NodeId,
  type RaftConfig,
  type Ready,
  type Snapshot,
} from "../../src/raft/index.ts";
import { rng } from "./random.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

export function entryValue(e: Entry): string {
  if (e.type === EntryType.ConfChange) {
    const cc = decodeConfChange(e.data);
    return `conf:${cc.type}:${cc.nodeId}`;
  }
  return dec.decode(e.data);
}

/** Where a crash can hit while a Ready is handled. */
export type CrashPoint = "before-persist" | "after-persist" | "after-send";

export interface NodeOptions {
  preVote: boolean;
  checkQuorum: boolean;
  electionTicks: number;
  heartbeatTicks: number;
  maxInflightMsgs: number;
  maxSizePerMsg: number;
  /** Snapshot and compact once this many applied entries sit in storage (0: never). */
  snapshotEvery: number;
  maxUncommittedBytes?: number;
}

export const DEFAULT_OPTIONS: NodeOptions = {
  preVote: true,
  checkQuorum: true,
  electionTicks: 10,
  heartbeatTicks: 1,
  maxInflightMsgs: 4,
  maxSizePerMsg: 200,
  snapshotEvery: 0,
};

/** A driver for one node. The application state is the list of applied values, by index. */
export class SimNode {
  readonly storage = new MemoryStorage();
  node: RaftNode | undefined;
  /** values[i - 1] is what entry i applied ("" for no-ops). Lost in a crash. */
  values: string[] = [];
  private readonly random: () => number;

  constructor(
    readonly id: NodeId,
    private readonly peers: readonly NodeId[],
    private readonly options: NodeOptions,
    seed: number,
    private readonly checker: Checker,
  ) {
    this.random = rng(seed * 7919 + id);
    this.start();
  }

  get alive(): boolean {
    return this.node !== undefined;
  }

  raft(): RaftNode {
    if (!this.node) throw new Error(`node ${this.id} is down`);
    return this.node;
  }

  start(): void {
    const o = this.options;
    const config: RaftConfig = {
      id: this.id,
      peers: this.peers,
      electionTicks: o.electionTicks,
      heartbeatTicks: o.heartbeatTicks,
      preVote: o.preVote,
      checkQuorum: o.checkQuorum,
      maxInflightMsgs: o.maxInflightMsgs,
      maxSizePerMsg: o.maxSizePerMsg,
      random: this.random,
      ...(o.maxUncommittedBytes !== undefined ? { maxUncommittedBytes: o.maxUncommittedBytes } : {}),
    };
    this.node = new RaftNode(config, this.storage);
    this.values = this.restoreValues(this.storage.snapshot());
    this.checker.nodeStarted(this);
  }

  crash(): void {
    this.node = undefined;
    this.values = [];
  }

  /** Replace the persisted log (before a restart), to set up conflicting logs in tables. */
  setLog(terms: readonly number[], term: number): void {
    const entries = terms.map((t, i) => ({ term: t, index: i + 1, type: EntryType.Normal, data: enc.encode(`t${t}i${i + 1}`) }));
    this.storage.append(entries);
    this.storage.setHardState({ term, vote: 0, commit: 0 });
  }

  /**
   * Handle one Ready in the contract's order. `crashAt` stops midway and crashes the node.
   * Returns whether there was a Ready.
   */
  handleReady(send: (m: Message) => void, crashAt?: CrashPoint): boolean {
    const node = this.node;
    if (!node || !node.hasReady()) return false;
    const rd = node.ready();
    this.checker.readyProduced(this, rd);
    // A leader's appends may leave before its persist (the core counts its own entries after advance).
    const early = rd.messages.filter((m) => node.sendableBeforePersist(m));
    for (const m of early) send(m);
    if (crashAt === "before-persist") return this.crashed();
    if (rd.snapshot) this.storage.applySnapshot(rd.snapshot);
    this.storage.append(rd.entries);
    if (rd.hardState) this.storage.setHardState(rd.hardState);
    this.checker.persisted(this);
    if (crashAt === "after-persist") return this.crashed();
    for (const m of rd.messages) if (!early.includes(m)) send(m);
    if (crashAt === "after-send") return this.crashed();
    if (rd.snapshot) {
      this.values = this.restoreValues(rd.snapshot);
    }
    for (const e of rd.committedEntries) {
      if (e.index <= this.values.length) continue;
      if (e.index !== this.values.length + 1) throw new Error(`node ${this.id} applies ${e.index} after ${this.values.length}`);
      this.values.push(entryValue(e));
      this.checker.applied(this, e);
    }
    node.advance(rd);
    this.maybeCompact();
    return true;
  }

  private crashed(): true {
    this.crash();
    return true;
  }

  private restoreValues(s: Snapshot): string[] {
    if (s.meta.index === 0) return [];
    const values = JSON.parse(dec.decode(s.data)) as string[];
    this.checker.snapshotRestored(this, s, values);
    return values;
  }

  private maybeCompact(): void {
    const node = this.node;
    const every = this.options.snapshotEvery;
    if (!node || every === 0) return;
    const applied = node.log.applied;
    if (applied - this.storage.snapshot().meta.index < every) return;
    this.snapshotAt(applied, Math.max(0, Math.floor(every / 4)));
  }

  /** Snapshot the application at `applied` and drop stored entries, keeping `keep` before it. */
  snapshotAt(applied: number, keep: number): void {
    const node = this.raft();
    if (applied <= this.storage.snapshot().meta.index) return;
    this.storage.createSnapshot(applied, node.confState(), enc.encode(JSON.stringify(this.values.slice(0, applied))));
    this.storage.compact(applied - keep);
  }
}

/**
 * Raft's safety properties (Raft paper, figure 3), checked against every node after every step:
 * election safety, log matching, leader completeness, state machine safety, and monotonic commit.
 */
export class Checker {
  private readonly leaders = new Map<number, NodeId>();
  /** The one entry each (term, index) may ever hold. */
  private readonly entryIds = new Map<string, string>();
  /** What each applied index holds everywhere, and the lowest term at which a node applied it. */
  readonly appliedValues: string[] = [];
  private readonly appliedTerms: number[] = [];
  private readonly appliedSeenAtTerm: number[] = [];
  private readonly commits = new Map<NodeId, number>();
  private readonly persistedCommits = new Map<NodeId, number>();
  /** Called with (index, term, value) for every entry a node applies. */
  onApply: ((e: Entry) => void) | undefined;

  constructor(private readonly context: () => string) {}

  fail(message: string): never {
    throw new Error(`${message} (${this.context()})`);
  }

  nodeStarted(n: SimNode): void {
    this.commits.set(n.id, n.raft().log.committed);
  }

  readyProduced(n: SimNode, rd: Ready): void {
    for (const e of [...rd.entries, ...rd.committedEntries]) this.entryIdentity(e);
    for (const m of rd.messages) for (const e of m.entries) this.entryIdentity(e);
    if (rd.hardState && n.alive) {
      // The hard state is persisted before messages leave; a vote must never be forgotten.
      const prev = n.storage.hardState();
      if (rd.hardState.term < prev.term) this.fail(`node ${n.id} term went back from ${prev.term} to ${rd.hardState.term}`);
    }
  }

  persisted(n: SimNode): void {
    const c = n.storage.hardState().commit;
    if (c < (this.persistedCommits.get(n.id) ?? 0)) this.fail(`node ${n.id} persisted commit went back to ${c}`);
    this.persistedCommits.set(n.id, c);
  }

  private entryIdentity(e: Entry): void {
    const key = `${e.term}:${e.index}`;
    const value = `${e.type}:${entryValue(e)}`;
    const prior = this.entryIds.get(key);
    if (prior === undefined) this.entryIds.set(key, value);
    else if (prior !== value) this.fail(`two different entries at term ${e.term} index ${e.index}: ${prior} and ${value}`);
  }

  applied(n: SimNode, e: Entry): void {
    const i = e.index - 1;
    const value = entryValue(e);
    const prior = this.appliedValues[i];
    if (prior === undefined) {
      this.appliedValues[i] = value;
      this.appliedTerms[i] = e.term;
      this.appliedSeenAtTerm[i] = n.raft().term;
    } else if (prior !== value || this.appliedTerms[i] !== e.term) {
      this.fail(`state machine safety: node ${n.id} applied ${JSON.stringify(value)}@${e.term} at ${e.index}, others ${JSON.stringify(prior)}@${this.appliedTerms[i]}`);
    } else {
      this.appliedSeenAtTerm[i] = Math.min(this.appliedSeenAtTerm[i]!, n.raft().term);
    }
    this.onApply?.(e);
  }

  snapshotRestored(n: SimNode, s: Snapshot, values: readonly string[]): void {
    if (values.length !== s.meta.index) this.fail(`node ${n.id} snapshot at ${s.meta.index} holds ${values.length} values`);
    for (let i = 0; i < values.length; i++) {
      const prior = this.appliedValues[i];
      if (prior !== undefined && prior !== values[i]) this.fail(`node ${n.id} snapshot differs at ${i + 1}: ${values[i]} vs ${prior}`);
    }
  }

  /** Everything checked after a step. */
  check(nodes: readonly SimNode[]): void {
    const live = nodes.filter((n) => n.alive);
    for (const n of live) {
      const r = n.raft();
      if (r.role === "leader") {
        const prior = this.leaders.get(r.term);
        if (prior !== undefined && prior !== n.id) this.fail(`election safety: ${prior} and ${n.id} both lead term ${r.term}`);
        this.leaders.set(r.term, n.id);
        this.leaderComplete(n);
      }
      const c = r.log.committed;
      if (c < (this.commits.get(n.id) ?? 0)) this.fail(`node ${n.id} commit went back from ${this.commits.get(n.id)} to ${c}`);
      this.commits.set(n.id, c);
      if (r.log.applied > c) this.fail(`node ${n.id} applied ${r.log.applied} beyond commit ${c}`);
    }
    for (let a = 0; a < live.length; a++) for (let b = a + 1; b < live.length; b++) this.logMatching(live[a]!, live[b]!);
  }

  /** Log matching: if two logs hold an entry of the same term at an index, they agree up to it. */
  private logMatching(a: SimNode, b: SimNode): void {
    const la = a.raft().log;
    const lb = b.raft().log;
    const lo = Math.max(la.firstIndex(), lb.firstIndex());
    let i = Math.min(la.lastIndex(), lb.lastIndex());
    while (i >= lo && la.term(i) !== lb.term(i)) i--;
    for (; i >= lo; i--) {
      if (la.term(i) !== lb.term(i)) this.fail(`log matching: nodes ${a.id} and ${b.id} differ at ${i} below a common entry`);
    }
  }

  /** Leader completeness: a leader holds every entry applied (so committed) at an earlier term. */
  private leaderComplete(n: SimNode): void {
    const r = n.raft();
    const first = r.log.firstIndex();
    for (let i = this.appliedValues.length - 1; i >= first - 1; i--) {
      const seenAt = this.appliedSeenAtTerm[i];
      if (seenAt === undefined || seenAt >= r.term) continue;
      const t = r.log.term(i + 1);
      if (t !== this.appliedTerms[i]) this.fail(`leader completeness: leader ${n.id} of term ${r.term} lacks committed entry ${i + 1}@${this.appliedTerms[i]}`);
    }
  }
}

// ---- the scripted cluster behind the data-driven tables ----

/**
 * A cluster whose network is perfect except for the cuts a script makes. Commands, one a line
 * (`#` starts a comment):
 *
 *   nodes 3 [no-prevote] [no-checkquorum] [inflight=N] [size=N] [snapshot-every=N]
 *   log <id> <t,t,...> term=<n>    replace a node's persisted log, then restart it
 *   tick <id|all> <n>              campaign <id>        stabilize
 *   propose <id> <value> [=> <ok|not-leader|transferring|overloaded|...>]
 *   add <leader> <id> [=> result]  remove <leader> <id> [=> result]
 *   transfer <leader> <id>         compact <id> <keep>
 *   isolate <id>   cut <a>><b>     heal                 crash <id>     restart <id>
 *   expect role|term|lead|commit|vote <id> <value>
 *   expect terms <id> <t,t,...>    (the terms of the log from its first index)
 *   expect values <id> <v,v,...>   (the non-empty applied values)
 *   expect voters <id> <a,b,...>   expect progress <leader> <id> <probe|replicate|snapshot>
 *   expect first <id> <index>      expect alive <id> <true|false>
 *   expect inflight <leader> <id> <n>   expect apps <a>><b> <n>   reset-counts
 */
export class Cluster {
  readonly nodes = new Map<NodeId, SimNode>();
  queue: Message[] = [];
  private readonly cuts = new Set<string>();
  /** Append messages delivered per link ("1>2") since the last `reset-counts`. */
  private readonly apps = new Map<string, number>();
  private line = "";
  private options: NodeOptions = DEFAULT_OPTIONS;
  readonly checker = new Checker(() => `at: ${this.line}`);

  node(id: NodeId): SimNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id} (at: ${this.line})`);
    return n;
  }

  private readonly send = (m: Message): void => {
    if (!this.cuts.has(`${m.from}>${m.to}`)) this.queue.push(m);
  };

  /** Handle every Ready and deliver every message until nothing moves. */
  stabilize(): void {
    for (let round = 0; round < 10_000; round++) {
      let moved = false;
      for (const n of this.nodes.values()) while (n.handleReady(this.send)) moved = true;
      this.checker.check([...this.nodes.values()]);
      const batch = this.queue;
      this.queue = [];
      for (const m of batch) {
        moved = true;
        const to = this.nodes.get(m.to);
        if (!to?.alive || this.cuts.has(`${m.from}>${m.to}`)) continue;
        if (m.type === "app") this.apps.set(`${m.from}>${m.to}`, (this.apps.get(`${m.from}>${m.to}`) ?? 0) + 1);
        to.raft().step(m);
      }
      if (!moved) return;
    }
    throw new Error(`no quiet after 10000 rounds (at: ${this.line})`);
  }

  run(script: string): void {
    for (const raw of script.split("\n")) {
      const text = raw.replace(/#.*/, "").trim();
      if (text === "") continue;
      this.line = text;
      this.command(text.split(/\s+/));
      this.checker.check([...this.nodes.values()]);
    }
  }

  private command(words: string[]): void {
    const [cmd, a = "", b = "", c = "", ...rest] = words;
    const arrow = words.indexOf("=>");
    const want = arrow >= 0 ? words[arrow + 1] : undefined;
    switch (cmd) {
      case "nodes":
        return this.create(Number(a), words.slice(2));
      case "log": {
        const n = this.node(Number(a));
        n.crash();
        n.setLog(b.split(",").map(Number), Number(c.replace("term=", "")));
        return n.start();
      }
      case "tick":
        for (const n of a === "all" ? [...this.nodes.values()] : [this.node(Number(a))]) {
          for (let i = 0; i < Number(b); i++) n.node?.tick();
        }
        return;
      case "campaign":
        return this.node(Number(a)).raft().campaign();
      case "stabilize":
        return this.stabilize();
      case "propose":
        return this.result(this.node(Number(a)).raft().propose(enc.encode(b)), want);
      case "add":
      case "remove": {
        const id = Number(b);
        if (cmd === "add" && !this.nodes.has(id)) this.nodes.set(id, new SimNode(id, [], this.options, 1, this.checker));
        const type = cmd === "add" ? "add-voter" : "remove-voter";
        return this.result(this.node(Number(a)).raft().proposeConfChange({ type, nodeId: id }), want);
      }
      case "transfer":
        this.node(Number(a)).raft().transferLeadership(Number(b));
        return;
      case "compact": {
        const n = this.node(Number(a));
        return n.snapshotAt(n.raft().log.applied, Number(b));
      }
      case "isolate":
        for (const other of this.nodes.keys()) {
          if (other === Number(a)) continue;
          this.cuts.add(`${a}>${other}`);
          this.cuts.add(`${other}>${a}`);
        }
        return;
      case "cut":
        this.cuts.add(a);
        return;
      case "heal":
        this.cuts.clear();
        return;
      case "reset-counts":
        this.apps.clear();
        return;
      case "crash":
        return this.node(Number(a)).crash();
      case "restart":
        return this.node(Number(a)).start();
      case "expect":
        if (a === "apps") {
          const got = this.apps.get(b) ?? 0;
          if (got !== Number(c)) throw new Error(`expected ${c} append messages on ${b}, got ${got} (at: ${this.line})`);
          return;
        }
        return this.expect(a, Number(b), [c, ...rest].join(" "));
      default:
        throw new Error(`unknown command ${cmd}`);
    }
  }

  private create(count: number, flags: string[]): void {
    const opts: NodeOptions = { ...DEFAULT_OPTIONS };
    for (const f of flags) {
      const [k, v] = f.split("=");
      if (k === "no-prevote") opts.preVote = false;
      else if (k === "no-checkquorum") opts.checkQuorum = false;
      else if (k === "inflight") opts.maxInflightMsgs = Number(v);
      else if (k === "size") opts.maxSizePerMsg = Number(v);
      else if (k === "snapshot-every") opts.snapshotEvery = Number(v);
      else if (k === "uncommitted") opts.maxUncommittedBytes = Number(v);
      else throw new Error(`unknown flag ${f}`);
    }
    this.options = opts;
    const peers = Array.from({ length: count }, (_, i) => i + 1);
    for (const id of peers) this.nodes.set(id, new SimNode(id, peers, opts, 1, this.checker));
  }

  private result(r: { ok: boolean; reason?: string }, want: string | undefined): void {
    const got = r.ok ? "ok" : (r.reason ?? "?");
    if (want !== undefined && got !== want) throw new Error(`expected ${want}, got ${got} (at: ${this.line})`);
  }

  private expect(what: string, id: number, value: string): void {
    const fail = (got: unknown): never => {
      throw new Error(`expected ${what} of ${id} to be ${value}, got ${String(got)} (at: ${this.line})`);
    };
    const r = this.node(id).node;
    if (what === "alive") return String(r !== undefined) === value ? undefined : fail(r !== undefined);
    if (!r) return fail("down");
    let got: string;
    switch (what) {
      case "role":
        got = r.role;
        break;
      case "term":
        got = String(r.term);
        break;
      case "lead":
        got = String(r.lead);
        break;
      case "vote":
        got = String(r.vote);
        break;
      case "commit":
        got = String(r.log.committed);
        break;
      case "terms": {
        const terms: number[] = [];
        for (let i = r.log.firstIndex(); i <= r.log.lastIndex(); i++) terms.push(r.log.term(i) ?? -1);
        got = terms.join(",");
        break;
      }
      case "first":
        got = String(r.log.firstIndex());
        break;
      case "values":
        got = this.node(id).values.filter((v) => v !== "").join(",");
        break;
      case "voters":
        got = r.confState().voters.join(",");
        break;
      case "inflight": {
        const [peer, count] = value.split(" ");
        const n = r.progress(Number(peer))?.inflights.count();
        if (n !== Number(count)) fail(n);
        return;
      }
      case "progress": {
        const [peer, state] = value.split(" ");
        const pr = r.progress(Number(peer));
        if (pr?.state !== state) fail(pr?.state);
        return;
      }
      default:
        throw new Error(`unknown expectation ${what}`);
    }
    if (got !== value) fail(got);
  }
}

/** Run one script on a fresh cluster. */
export function runScript(script: string): Cluster {
  const c = new Cluster();
  c.run(script);
  return c;
}

// ---- the randomized simulation ----

export interface SimConfig {
  readonly nodes: number;
  /** Ticks with faults; then the network heals, every node restarts, and the cluster must converge. */
  readonly faultyTicks: number;
  readonly settleTicks: number;
  readonly loss: number;
  readonly duplicate: number;
  readonly maxDelayTicks: number;
  readonly proposePerTick: number;
  readonly crashPerTick: number;
  readonly restartPerTick: number;
  /** A crash while a Ready is handled: before persisting, after persisting, or after sending. */
  readonly crashInReady: number;
  readonly partitionPerTick: number;
  readonly healPerTick: number;
  readonly transferPerTick: number;
  /** Nodes started outside the configuration, which membership changes may add. */
  readonly spares: number;
  readonly membershipPerTick: number;
  readonly snapshotEvery: number;
}

export const SIM_DEFAULTS: SimConfig = {
  nodes: 3,
  faultyTicks: 300,
  settleTicks: 300,
  loss: 0.05,
  duplicate: 0.03,
  maxDelayTicks: 3,
  proposePerTick: 0.5,
  crashPerTick: 0.01,
  restartPerTick: 0.08,
  crashInReady: 0.002,
  partitionPerTick: 0.02,
  healPerTick: 0.03,
  transferPerTick: 0.005,
  spares: 1,
  membershipPerTick: 0.01,
  snapshotEvery: 12,
};

export interface SimStats {
  proposed: number;
  acked: number;
  committed: number;
  leaderTerms: number;
  crashes: number;
  messages: number;
  snapshotsSent: number;
  confChanges: number;
}

/**
 * One seeded run: N nodes, a network that loses, delays, reorders and duplicates messages and
 * is partitioned (one-way too), nodes that crash (also midway through a Ready) and restart from
 * what they persisted, clients proposing at whoever leads, leadership transfers. The Checker runs
 * after every tick and every delivered message. Then the faults stop: the cluster must commit a
 * final entry and every node must hold every value ever acknowledged as committed.
 */
export function simulate(seed: number, cfg: SimConfig = SIM_DEFAULTS): SimStats {
  const random = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  let now = 0;
  let faulty = true;
  const checker = new Checker(() => `seed ${seed}, tick ${now}`);
  const ids = Array.from({ length: cfg.nodes + cfg.spares }, (_, i) => i + 1);
  const initial = ids.slice(0, cfg.nodes);
  const opts: NodeOptions = { ...DEFAULT_OPTIONS, snapshotEvery: cfg.snapshotEvery, maxInflightMsgs: 3, maxSizePerMsg: 120 };
  // Spares start with no configuration: they learn one from the log or a snapshot once added.
  const nodes = ids.map((id) => new SimNode(id, id <= cfg.nodes ? initial : [], opts, seed, checker));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const stats: SimStats = { proposed: 0, acked: 0, committed: 0, leaderTerms: 0, crashes: 0, messages: 0, snapshotsSent: 0, confChanges: 0 };
  const terms = new Set<number>();

  let network: { at: number; m: Message }[] = [];
  const cuts = new Set<string>();
  const send = (m: Message): void => {
    if (cuts.has(`${m.from}>${m.to}`)) return;
    if (faulty && random() < cfg.loss) return;
    const copies = faulty && random() < cfg.duplicate ? 2 : 1;
    for (let c = 0; c < copies; c++) network.push({ at: now + Math.floor(random() * (cfg.maxDelayTicks + 1)), m });
    stats.messages++;
    if (m.type === "snap") stats.snapshotsSent++;
  };

  const pending = new Map<string, { index: number; term: number }>();
  const acked = new Map<string, number>();
  checker.onApply = (e) => {
    if (e.type !== EntryType.Normal) return;
    const v = entryValue(e);
    const p = pending.get(v);
    if (p && p.index === e.index && p.term === e.term && !acked.has(v)) acked.set(v, e.index);
  };

  const crashPoints: CrashPoint[] = ["before-persist", "after-persist", "after-send"];
  const handleReadies = (n: SimNode): void => {
    for (let i = 0; i < 100 && n.alive; i++) {
      const crashAt = faulty && random() < cfg.crashInReady ? pick(crashPoints) : undefined;
      if (!n.handleReady(send, crashAt)) return;
      if (crashAt) stats.crashes++;
    }
  };
  const check = (): void => {
    checker.check(nodes);
    for (const n of nodes) if (n.node?.role === "leader") terms.add(n.node.term);
  };

  let counter = 0;
  const propose = (value: string): void => {
    const leaders = nodes.filter((n) => n.node?.role === "leader");
    if (leaders.length === 0) return;
    const r = pick(leaders).raft().propose(enc.encode(value));
    if (r.ok) {
      pending.set(value, { index: r.index, term: r.term });
      stats.proposed++;
    }
  };

  const faults = (): void => {
    if (random() < cfg.proposePerTick) propose(`v${counter++}`);
    const live = nodes.filter((n) => n.alive);
    if (random() < cfg.crashPerTick && live.length > 0) {
      pick(live).crash();
      stats.crashes++;
    }
    for (const n of nodes) if (!n.alive && random() < cfg.restartPerTick) n.start();
    if (random() < cfg.partitionPerTick) {
      if (random() < 0.5) {
        const side = new Set(ids.filter(() => random() < 0.5));
        for (const a of ids) for (const b of ids) if (side.has(a) !== side.has(b)) cuts.add(`${a}>${b}`);
      } else {
        const a = pick(ids);
        const b = pick(ids.filter((x) => x !== a));
        cuts.add(`${a}>${b}`); // one way only
      }
    }
    if (random() < cfg.healPerTick) cuts.clear();
    const leader = nodes.find((n) => n.node?.role === "leader")?.raft();
    if (leader && random() < cfg.transferPerTick) leader.transferLeadership(pick(ids));
    if (leader && random() < cfg.membershipPerTick) {
      const voters = leader.confState().voters;
      const outside = ids.filter((id) => !voters.includes(id));
      const r =
        outside.length > 0 && (random() < 0.5 || voters.length <= 2)
          ? leader.proposeConfChange({ type: "add-voter", nodeId: pick(outside) })
          : leader.proposeConfChange({ type: "remove-voter", nodeId: pick(voters) });
      if (r.ok) stats.confChanges++;
    }
  };
  /** The nodes that must converge: the configuration of the leader that committed the final entry. */
  let members: SimNode[] = nodes;

  let finalValue: string | undefined;
  let finalIndex = 0;
  const converged = (): boolean => {
    if (finalValue === undefined || !acked.has(finalValue)) {
      const p = finalValue === undefined ? undefined : pending.get(finalValue);
      // (Re)propose the final marker until one is committed; an uncommitted one may be cut.
      if (finalValue === undefined || (p && now % 20 === 0)) {
        finalValue = `final${counter++}`;
        propose(finalValue);
      } else if (!p) propose(finalValue);
      return false;
    }
    finalIndex = acked.get(finalValue)!;
    const leader = nodes.find((n) => n.node?.role === "leader");
    if (!leader) return false;
    const voters = leader.raft().confState().voters;
    members = nodes.filter((n) => voters.includes(n.id));
    return members.every((n) => n.alive && n.values.length >= finalIndex);
  };

  let done = false;
  for (now = 0; now < cfg.faultyTicks + cfg.settleTicks && !done; now++) {
    if (now === cfg.faultyTicks) {
      faulty = false;
      cuts.clear();
      for (const n of nodes) if (!n.alive) n.start();
    }
    if (faulty) faults();
    for (const n of nodes) n.node?.tick();
    for (const n of nodes) handleReadies(n);
    check();
    const due = network.filter((x) => x.at <= now);
    network = network.filter((x) => x.at > now);
    // Reordering: messages due in the same tick arrive in a random order.
    for (let i = due.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [due[i], due[j]] = [due[j]!, due[i]!];
    }
    for (const { m } of due) {
      const to = byId.get(m.to);
      if (!to?.alive || cuts.has(`${m.from}>${m.to}`)) continue;
      to.raft().step(m);
      handleReadies(to);
      check();
    }
    if (!faulty) done = converged();
  }
  if (!done) {
    const state = nodes.map((n) => {
      const r = n.raft();
      const prs = ids.map((id) => r.progress(id)).map((p, i) => (p ? `${ids[i]}:${p.state}/m${p.match}/n${p.next}${p.probeSent ? "/sent" : ""}/if${p.inflights.count()}` : "")).join(" ");
      return `${n.id}: ${r.role} t${r.term} lead ${r.lead} commit ${r.log.committed} applied ${r.log.applied} values ${n.values.length} first ${r.log.firstIndex()} last ${r.log.lastIndex()} [${prs}]`;
    });
    checker.fail(`no convergence within ${cfg.settleTicks} ticks after healing (final entry ${finalValue})\n${state.join("\n")}`);
  }
  for (const [value, index] of acked) {
    for (const n of members) {
      if (n.values[index - 1] !== value) checker.fail(`acknowledged ${value} at ${index} is ${n.values[index - 1]} on node ${n.id}`);
    }
  }
  stats.acked = acked.size;
  stats.committed = Math.max(...nodes.map((n) => n.raft().log.committed));
  stats.leaderTerms = terms.size;
  return stats;
}
