/**
 * Deterministic simulation of a whole Tributary cluster in one process: 3 or 5 real `Broker`s,
 * each on its own `MemFileSystem`, one shared `SimClock` (sim-clock.ts: a manual clock that
 * also knows when its next timer is due), one `MemNetwork`, and one seeded random source from
 * which every choice flows (the steps, the network's faults, each broker life's election jitter, the power cuts'
 * torn tails, and the topic ids). A run is a seed; `simulateCluster(seed, options)` replays it
 * exactly.
 *
 * ## Driving
 *
 * Everything in a broker moves on promises over the MemFileSystem (microtasks only), the clock's
 * timers and the MemNetwork (timers on the same clock). So the sim advances time one due timer at
 * a time (`SimClock.nextTimerAt`), and after each firing lets the event loop drain with a
 * macrotask (`setImmediate`): every microtask chain, however long, runs before it. Nothing then
 * moves until the next timer; that is what makes a seed replay exactly.
 *
 * ## A broker's life
 *
 * A broker runs on a fenced view of its disk and of the clock (`Life`): a crash (power cut on
 * its MemFileSystem with torn tails, `network.crash(id)`) fences both, so the abandoned Broker
 * object never writes to the disk the next life opens and none of its timers fire again: it is
 * as dead as a killed process, and it is never called again. A restart opens a new Broker on the
 * same MemFileSystem with a fresh transport (`network.restart(id)`).
 *
 * ## Checks, after every step (`ClusterChecker`, in cluster-checker.ts)
 *
 * Over every live broker's Raft groups (`broker.cluster.host.allGroups()`): election safety (one
 * leader per group and term, over the whole run), log matching (equal terms at an index mean
 * equal terms below it), leader completeness (an entry seen committed at term t is in the log of
 * every leader of a later term), monotonic commit (per group per broker life), committed entries
 * identical everywhere (term, and bytes where the log has them at hand), and state machine safety
 * through `broker.fetch`: the record at an offset below the high watermark is the same on every
 * replica and over the whole run; a Raft group that stopped on a live broker (its store hit a
 * broken invariant) fails the run at once. At the end the network heals, every broker restarts, the
 * cluster must converge (bounded), and every record acknowledged with acks=all must be on every
 * replica at its offset; acks=1 records lost are counted (a leader that crashed or was deposed
 * before replicating may lose them, as in Kafka).
 *
 * Some seeds (`retentionChance`) run with retention on, so log starts move under the replicas,
 * Raft anchors are rewritten, and a follower that lagged behind the log start gets a snapshot.
 */
import { Broker, type Acks } from "../../src/broker.ts";
import type { RaftGroup } from "../../src/cluster/group.ts";
import { MemNetwork, type MemNetworkFaults } from "../../src/cluster/mem-transport.ts";
import type { NodeId } from "../../src/cluster/types.ts";
import { defaultConfig } from "../../src/config.ts";
import { isTributaryError } from "../../src/errors.ts";
import { createLogger, silentLogger, type Logger } from "../../src/logger.ts";
import type { Clock } from "../../src/runtime/clock.ts";
import type { FileHandle, FileSystem, OpenMode } from "../../src/runtime/fs.ts";
import { MemFileSystem } from "../../src/runtime/mem-fs.ts";
import { crc32c } from "../../src/storage/crc32c.ts";
import { ClusterChecker, type CheckedLife } from "./cluster-checker.ts";
import { rng } from "./random.ts";
import { SimClock, macrotask } from "./sim-clock.ts";

const enc = new TextEncoder();

export const TOPIC = "sim";

// ---- a broker's life: fenced disk and clock ----

/** One run of one broker process, from open to crash. */
class Life implements CheckedLife {
  alive = true;
  broker: Broker | null = null;
  /** Commit index per group object seen so far in this life (monotonic). */
  readonly commits = new WeakMap<RaftGroup, number>();
  /** Per partition: offsets below this were checked against the run's record map in this life. */
  readonly checkedTo = new Map<number, number>();
  readonly fs: FileSystem;
  readonly clock: Clock;

  constructor(
    readonly id: NodeId,
    readonly number: number,
    disk: MemFileSystem,
    clock: Clock,
  ) {
    this.fs = fencedFs(disk, () => this.alive);
    this.clock = { now: () => clock.now(), setTimer: (ms, fn) => clock.setTimer(ms, () => this.alive && fn()) };
  }
}

function dead(): Error {
  return Object.assign(new Error("EIO: this broker process has crashed"), { code: "EIO" });
}

/** The disk as one process sees it: after its crash, every call fails (the next life gets its own view). */
function fencedFs(disk: MemFileSystem, alive: () => boolean): FileSystem {
  const guard = async <T>(op: () => Promise<T>): Promise<T> => {
    if (!alive()) throw dead();
    const r = await op();
    if (!alive()) throw dead();
    return r;
  };
  return {
    open: (path: string, mode: OpenMode): Promise<FileHandle> => guard(() => disk.open(path, mode)),
    list: (dir) => guard(() => disk.list(dir)),
    mkdirp: (dir) => guard(() => disk.mkdirp(dir)),
    remove: (path) => guard(() => disk.remove(path)),
    rename: (from, to) => guard(() => disk.rename(from, to)),
    exists: (path) => guard(() => disk.exists(path)),
    readFile: (path) => guard(() => disk.readFile(path)),
    syncDir: (dir) => guard(() => disk.syncDir(dir)),
  };
}

// ---- options and results ----

/**
 * Every replica's batch index this small (the defaults hold 32,768 exact offsets): past a few
 * dozen batches a partition's older entries have only sampled offsets, so catch-up from disk,
 * retention and restarts go through the paths a long-lived log takes.
 */
const SIM_BATCH_INDEX = { exactBatches: 8, maxSamples: 4 };

export interface ClusterSimOptions {
  readonly brokers: 3 | 5;
  /** Fault steps before the final heal. */
  readonly steps: number;
  readonly tickMs: number;
  readonly requestTimeoutMs: number;
  /**
   * Chance that a seed runs with retention on (retention.bytes over segments of 4 KiB, maintenance
   * every 500 ms), so log starts move, anchors are rewritten and lagging followers need snapshots.
   */
  readonly retentionChance: number;
  /** Sim time the final convergence may take before the run fails. */
  readonly settleMs: number;
  /** Lines of the step trace (CLUSTER_SEED replays print it); null: only the recent tail is kept for failures. */
  readonly trace: ((line: string) => void) | null;
}

export const CLUSTER_SIM_DEFAULTS: ClusterSimOptions = {
  brokers: 3,
  steps: 300,
  tickMs: 50,
  requestTimeoutMs: 3000,
  retentionChance: 0.3,
  settleMs: 60_000,
  trace: null,
};

export interface ClusterSimStats {
  steps: number;
  produced: number;
  ackedAll: number;
  acked1: number;
  sent0: number;
  failed: number;
  /** Produce calls still unanswered when their broker crashed. */
  abandoned: number;
  /** acks=1 records not at their offset in the end (leader crashed or deposed before replicating). */
  lostAcks1: number;
  /** Of those, the ones whose leader did not crash (it was cut off and deposed, its tail overwritten). */
  lostAcks1Deposed: number;
  crashes: number;
  restarts: number;
  partitions: number;
  /** Reassignment steps (moves proposed; one may be refused while another of its partition runs). */
  reassignments: number;
  leaderTerms: number;
  /** Sim milliseconds. */
  simMs: number;
  /** Records compared through broker.fetch across replicas. */
  recordsChecked: number;
  /** A digest of the run's outcome: equal for equal seeds. */
  digest: number;
}

interface Produce {
  readonly n: number;
  readonly step: number;
  readonly broker: NodeId;
  readonly partition: number;
  readonly acks: Acks;
  readonly values: string[];
  state: "pending" | "acked" | "failed" | "abandoned";
  offsets: number[];
  error?: string;
  /** acks=1: the partition's leader when the ack came, and how many lives it had had then. */
  leader?: { id: NodeId; lives: number };
}

function withoutWallClock(line: string): string {
  const { ts: _ts, ...rest } = JSON.parse(line) as Record<string, unknown>;
  return JSON.stringify(rest);
}


// ---- the simulation ----

class SimFailure extends Error {}

export class ClusterSim {
  readonly clock = new SimClock();
  readonly random: () => number;
  readonly network: MemNetwork;
  readonly ids: NodeId[];
  readonly disks = new Map<NodeId, MemFileSystem>();
  readonly lives = new Map<NodeId, Life>();
  private readonly lifeCount = new Map<NodeId, number>();
  readonly checker: ClusterChecker;
  readonly produces: Produce[] = [];
  private step = 0;
  private partitions = 0;
  private readonly tail: string[] = [];
  private readonly stats = { crashes: 0, restarts: 0, partitions: 0, reassignments: 0 };
  private readonly startMs: number;
  private readonly logger: Logger;

  constructor(
    readonly seed: number,
    readonly options: ClusterSimOptions,
  ) {
    this.random = rng(seed);
    this.network = new MemNetwork({ clock: this.clock, random: this.child(), lossRate: 0, duplicateRate: 0, minDelayMs: 1, maxDelayMs: 5 });
    this.ids = Array.from({ length: options.brokers }, (_, i) => i + 1);
    for (const id of this.ids) this.disks.set(id, new MemFileSystem());
    this.checker = new ClusterChecker((m) => this.fail(m));
    this.startMs = this.clock.now();
    this.logger = options.trace ? createLogger("warn", (line) => this.note(`  log ${withoutWallClock(line)}`)) : silentLogger;
  }

  /** A new seeded stream drawn from the run's one source. */
  child(): () => number {
    return rng(Math.floor(this.random() * 2 ** 32));
  }

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.random() * xs.length)]!;
  }

  fail(message: string): never {
    throw new SimFailure(`${message}\n  at step ${this.step}, sim time ${this.clock.now() - this.startMs} ms\n  recent steps:\n${this.tail.join("\n")}`);
  }

  private note(line: string): void {
    const text = `[${this.step} +${Math.round(this.clock.now() - this.startMs)}ms] ${line}`;
    this.tail.push(text);
    if (this.tail.length > 40) this.tail.shift();
    this.options.trace?.(text);
  }

  live(): Life[] {
    return this.ids.map((id) => this.lives.get(id)).filter((l): l is Life => l !== undefined && l.alive && l.broker !== null);
  }

  // ---- driving ----

  /** Fire every timer due up to `now + ms`, one due time at a time, draining the event loop after each. */
  async advance(ms: number): Promise<void> {
    const target = this.clock.exactNow + ms;
    await macrotask();
    for (;;) {
      const next = this.clock.nextTimerAt();
      if (next === null || next > target) break;
      this.clock.advanceTo(next);
      await macrotask();
    }
    this.clock.advanceTo(target);
    await macrotask();
  }

  /** Wait for `p` while the simulation runs (up to `maxMs` of sim time); fails if it does not settle. */
  async until<T>(p: Promise<T>, maxMs: number, what: string): Promise<T> {
    let done = false;
    const settled = p.finally(() => {
      done = true;
    });
    settled.catch(() => {});
    const deadline = this.clock.now() + maxMs;
    await macrotask();
    while (!done && this.clock.now() < deadline) await this.advance(5);
    if (!done) this.fail(`${what} did not settle within ${maxMs} ms`);
    return settled;
  }

  /** Wait for `p` without moving the clock (it needs only the disk); fails if it would need time. */
  readonly drive = async <T>(p: Promise<T>): Promise<T> => {
    let done = false;
    const settled = p.finally(() => {
      done = true;
    });
    settled.catch(() => {});
    for (let i = 0; i < 50 && !done; i++) await macrotask();
    if (!done) this.fail("a read through broker.fetch did not complete without the clock moving");
    return settled;
  };

  /** Advance until `cond` holds, in `stepMs` steps, for at most `maxMs`. */
  async waitFor(cond: () => boolean, maxMs: number, what: string, stepMs = 10): Promise<void> {
    const deadline = this.clock.now() + maxMs;
    while (!cond()) {
      if (this.clock.now() >= deadline) this.fail(`${what}: not reached within ${maxMs} ms\n${this.describeState()}`);
      await this.advance(stepMs);
    }
  }

  /** Every live broker's groups, for failure messages. */
  describeState(): string {
    const lines: string[] = [];
    for (const l of this.live()) {
      let topic = "no topic";
      try {
        topic = l.broker!.describeTopic(TOPIC).partitions.map((p) => `hw=${p.highWatermark}/leo=${p.logEndOffset}`).join(" ");
      } catch {
        // not reconciled yet
      }
      lines.push(`  broker ${l.id} (life ${l.number}): ${topic}`);
      for (const g of l.broker!.cluster!.host.allGroups()) {
        const n = g.node;
        lines.push(`    ${g.id}: ${n.role} term=${n.term} lead=${n.lead} commit=${n.log.committed} applied=${n.log.applied} last=${n.log.lastIndex()}${g.isStopped ? " STOPPED" : ""}`);
      }
    }
    const pending = this.produces.filter((p) => p.state === "pending").map((p) => `#${p.n}@${p.broker}`);
    lines.push(`  pending produces: ${pending.join(" ") || "none"}`);
    return lines.join("\n");
  }

  // ---- lives ----

  /** Set by the seed at setup: retention.bytes, or null for none. */
  private retentionBytes: number | null = null;
  /**
   * Set by the seed at setup: log.preallocate.bytes. The default extends a 4 KiB segment whole at
   * its first write, and mem-fs undoes a write into synced extended space whole on a power cut,
   * so torn tails need 0 or a small extension.
   */
  private preallocateBytes = 0;

  private config(id: NodeId) {
    const retention = this.retentionBytes === null ? {} : { "retention.bytes": String(this.retentionBytes), "maintenance.interval.ms": "500" };
    return defaultConfig({
      ...retention,
      "cluster.node.id": String(id),
      "cluster.peers": this.ids.map((i) => `${i}@sim:${i}`).join(","),
      "data.dir": "/data",
      "segment.bytes": "4096",
      "log.preallocate.bytes": String(this.preallocateBytes),
      "cluster.tick.ms": String(this.options.tickMs),
      "cluster.request.timeout.ms": String(this.options.requestTimeoutMs),
    });
  }

  /** Start broker `id` (a first start, or a restart after a crash); resolves once Broker.open has. */
  async start(id: NodeId): Promise<void> {
    const number = (this.lifeCount.get(id) ?? 0) + 1;
    this.lifeCount.set(id, number);
    const life = new Life(id, number, this.disks.get(id)!, this.clock);
    const transport = number === 1 ? this.network.transport(id) : this.network.restart(id);
    this.lives.set(id, life);
    const opened = Broker.open(this.config(id), { fs: life.fs, clock: life.clock, logger: this.logger, cluster: { transport, random: this.child(), batchIndex: SIM_BATCH_INDEX } });
    life.broker = await this.until(opened, 10_000, `Broker.open of broker ${id}`);
  }

  /** Power cut: the disk loses what was not synced (torn tails), the network drops the peer, the Broker is abandoned. */
  crash(id: NodeId): void {
    const life = this.lives.get(id)!;
    life.alive = false;
    this.disks.get(id)!.crash("power", { random: this.child(), tornTail: true });
    this.network.crash(id);
    for (const p of this.produces) if (p.broker === id && p.state === "pending") p.state = "abandoned";
    this.stats.crashes++;
  }

  // ---- steps ----

  async setup(): Promise<void> {
    if (this.random() < this.options.retentionChance) this.retentionBytes = this.pick([4096, 8192, 12288]);
    this.preallocateBytes = this.pick([0, 512, 1 << 20]);
    await Promise.all(this.ids.map((id) => this.start(id)));
    this.note(`opened ${this.ids.length} brokers${this.retentionBytes === null ? "" : `, retention.bytes ${this.retentionBytes}`}, log.preallocate.bytes ${this.preallocateBytes}`);
    await this.waitFor(() => this.live().some((l) => l.broker!.cluster!.controller.group.isLeader), 20_000, "a controller leader");
    this.partitions = 2 + Math.floor(this.random() * 2);
    const via = this.pick(this.live());
    await this.until(via.broker!.createTopic(TOPIC, this.partitions), 20_000, "createTopic");
    this.note(`created ${TOPIC} with ${this.partitions} partitions via broker ${via.id}`);
    await this.waitFor(() => this.converged(), 20_000, "every partition led after setup");
    this.check();
    await this.checkRecords();
  }

  /** One step chosen by the seed. */
  async runStep(): Promise<void> {
    this.step++;
    const live = this.live();
    const down = this.ids.filter((id) => !this.lives.get(id)?.alive);
    const majority = Math.floor(this.ids.length / 2) + 1;
    const r = this.random();
    if (r < 0.4 && live.length > 0) return this.produce(this.pick(live));
    if (r < 0.7) return this.advanceStep();
    if (r < 0.76 && live.length > 0) {
      // A crash that would leave a minority alive is rarer: the cluster should mostly have a quorum.
      if (live.length - 1 < majority && this.random() > 0.15) return this.advanceStep();
      const victim = this.pick(live);
      this.note(`crash broker ${victim.id}`);
      return this.crash(victim.id);
    }
    if (r < 0.84 && down.length > 0) {
      const id = this.pick(down);
      this.note(`restart broker ${id}`);
      this.stats.restarts++;
      return this.start(id);
    }
    if (r < 0.88) return this.partitionStep();
    if (r < 0.93) {
      this.note("heal the network");
      return this.network.heal();
    }
    if (r < 0.96) return this.faultsStep();
    if (r < 0.98 && live.length > 0) return this.reassignStep(this.pick(live));
    return this.advanceStep();
  }

  /**
   * Move one partition's replicas (src/cluster/reassign.ts), when none of its moves is under way:
   * shrink by one when every peer holds it, else grow by one or replace one by the peer left out.
   */
  private reassignStep(life: Life): void {
    const topic = life.broker!.cluster!.metadata.topic(TOPIC);
    const partition = Math.floor(this.random() * this.partitions);
    if (!topic || topic.targets?.[partition]) return this.note(`no reassignment of partition ${partition}: ${topic ? "a move is under way" : "no topic yet"}`);
    const replicas = topic.replicas[partition]!;
    const spare = this.ids.filter((id) => !replicas.includes(id));
    let target: NodeId[];
    if (spare.length === 0) {
      if (replicas.length === 1) return this.note(`no reassignment of partition ${partition}: one replica, no spare`);
      const gone = this.pick([...replicas]);
      target = replicas.filter((id) => id !== gone);
    } else if (this.random() < 0.5) {
      target = [...replicas, this.pick(spare)];
    } else {
      const gone = this.pick([...replicas]);
      const to = this.pick(spare);
      target = replicas.map((id) => (id === gone ? to : id));
    }
    this.stats.reassignments++;
    this.note(`reassign partition ${partition} from ${replicas.join(",")} to ${target.join(",")} via broker ${life.id}`);
    life.broker!.reassignPartition(TOPIC, partition, target).then(
      () => life.alive && this.note(`  reassignment of partition ${partition} recorded`),
      (e: unknown) => life.alive && this.note(`  reassignment of partition ${partition} refused: ${isTributaryError(e) ? e.code : (e as Error).message}`),
    );
  }

  /** Every live broker's metadata has no move under way. */
  private noMoves(): boolean {
    return this.live().every((l) => !(l.broker!.cluster!.metadata.topics().some((t) => t.targets?.some((x) => x))));
  }

  private async advanceStep(): Promise<void> {
    const ms = 1 + Math.floor(this.random() * 200);
    this.note(`advance ${ms} ms`);
    await this.advance(ms);
  }

  private produce(life: Life): void {
    const n = this.produces.length;
    const acks = this.pick([0, 1, 1, -1, -1, -1] as const);
    const partition = Math.floor(this.random() * this.partitions);
    const count = 1 + Math.floor(this.random() * 4);
    // Padded, so a partition's segments (4 KiB) roll every few dozen records.
    const pad = "x".repeat(Math.floor(this.random() * 200));
    const values = Array.from({ length: count }, (_, i) => `s${this.seed}-p${n}-r${i}-${pad}`);
    const p: Produce = { n, step: this.step, broker: life.id, partition, acks, values, state: "pending", offsets: [] };
    this.produces.push(p);
    this.note(`produce #${n} to broker ${life.id}: ${count} records to partition ${partition}, acks=${acks === -1 ? "all" : acks}`);
    const records = values.map((v) => ({ key: null, value: enc.encode(v), partition }));
    life.broker!.produce(TOPIC, records, acks).then(
      (results) => {
        if (!life.alive || p.state !== "pending") return; // answered after the crash: no client saw it
        p.state = "acked";
        p.offsets = results.map((x) => x.offset);
        if (acks === 1) p.leader = this.leaderOf(partition);
        this.note(`  #${n} acked at ${p.offsets.join(",")}`);
      },
      (e: unknown) => {
        if (!life.alive || p.state !== "pending") return;
        p.state = "failed";
        p.error = isTributaryError(e) ? e.code : `${(e as Error).message}`;
        this.note(`  #${n} failed: ${p.error}`);
      },
    );
  }

  /** The live broker leading `partition` in the highest term, with its life count. */
  private leaderOf(partition: number): { id: NodeId; lives: number } | undefined {
    let best: { id: NodeId; lives: number; term: number } | undefined;
    for (const l of this.live()) {
      const topic = l.broker!.cluster!.metadata.topic(TOPIC);
      const g = topic && l.broker!.cluster!.host.group(`${topic.record.id}/${partition}`);
      if (g?.isLeader && (!best || g.node.term > best.term)) best = { id: l.id, lives: l.number, term: g.node.term };
    }
    return best && { id: best.id, lives: best.lives };
  }

  private partitionStep(): void {
    const a = this.pick(this.ids);
    const others = this.ids.filter((id) => id !== a);
    const kind = this.random();
    this.stats.partitions++;
    if (kind < 0.2) {
      this.note(`isolate broker ${a}`);
      return this.network.isolate(a);
    }
    const b = this.pick(others);
    const oneWay = kind < 0.6;
    this.note(`partition ${a} ${oneWay ? "->" : "<->"} ${b}`);
    this.network.partition(a, b, oneWay ? "a->b" : "both");
  }

  private faultsStep(): void {
    const faults: Partial<MemNetworkFaults> = {
      lossRate: this.pick([0, 0, 0.01, 0.05, 0.2]),
      duplicateRate: this.pick([0, 0, 0.02, 0.1]),
      maxDelayMs: this.pick([2, 5, 10, 30]),
      wholeFrames: this.random() < 0.5,
    };
    this.note(`network faults ${JSON.stringify(faults)}`);
    this.network.configure(faults);
  }

  // ---- checks ----

  check(full = this.step % 25 === 0): void {
    this.checker.checkGroups(this.live(), full);
  }

  async checkRecords(): Promise<void> {
    for (const life of this.live()) await this.checker.checkRecords(life, TOPIC, this.partitions, this.drive);
  }

  /** The partition groups (and the controller) each have one leader that every live replica follows and has caught up with. */
  converged(): boolean {
    const live = this.live();
    if (live.length === 0) return false;
    const groups = new Map<string, RaftGroup[]>();
    for (const l of live) {
      for (const g of l.broker!.cluster!.host.allGroups()) {
        let list = groups.get(g.id);
        if (!list) groups.set(g.id, (list = []));
        list.push(g);
      }
    }
    // Every live broker knows the topic, and every partition's group is present on its replicas.
    for (const l of live) {
      try {
        if (l.broker!.describeTopic(TOPIC).partitions.length !== this.partitions) return false;
      } catch {
        return false;
      }
    }
    if (groups.size < this.partitions + 1) return false;
    for (const [, list] of groups) {
      const leaders = list.filter((g) => g.isLeader);
      if (leaders.length !== 1) return false;
      const lead = leaders[0]!.node;
      const last = lead.log.lastIndex();
      if (lead.log.committed !== last) return false;
      for (const g of list) if (g.node.lead !== leaders[0]!.node.id || g.node.log.committed !== last || g.node.log.applied !== last) return false;
    }
    return true;
  }

  // ---- the end ----

  async finish(): Promise<void> {
    this.note("heal everything, restart every crashed broker");
    this.network.heal();
    this.network.configure({ lossRate: 0, duplicateRate: 0, maxDelayMs: 5 });
    for (const id of this.ids) {
      if (!this.lives.get(id)?.alive) {
        this.stats.restarts++;
        await this.start(id);
      }
    }
    const expectGroups = () => this.live().every((l) => [...l.broker!.cluster!.host.allGroups()].length === this.groupsOn(l.id));
    // Answered first (a produce still retrying may append more), then caught up everywhere.
    await this.waitFor(() => this.produces.every((p) => p.state !== "pending"), this.options.settleMs, "every produce answered after the final heal", 20);
    await this.waitFor(() => this.live().length === this.ids.length && this.noMoves() && expectGroups() && this.converged() && this.highWatermarksMatch(), this.options.settleMs, "convergence after the final heal", 20);
    this.check(true);
    for (const l of this.live()) l.checkedTo.clear();
    await this.checkRecords();
    this.checkAcknowledged();
  }

  /** Groups broker `id` should hold: the controller, and every partition (offsets topic included) placed on it. */
  private groupsOn(id: NodeId): number {
    const meta = this.live()[0]!.broker!.cluster!.metadata;
    let n = 1;
    for (const t of meta.topics()) for (const replicas of t.replicas) if (replicas.includes(id)) n++;
    return n;
  }

  private minLogStart(partition: number): number {
    let min = Number.MAX_SAFE_INTEGER;
    for (const l of this.live()) {
      const d = l.broker!.describeTopic(TOPIC).partitions[partition]!;
      if (d.highWatermark >= 0) min = Math.min(min, d.logStartOffset);
    }
    return min;
  }

  private highWatermarksMatch(): boolean {
    for (let p = 0; p < this.partitions; p++) {
      const hws = new Set<number>();
      for (const l of this.live()) {
        const hw = l.broker!.describeTopic(TOPIC).partitions[p]!.highWatermark;
        if (hw >= 0) hws.add(hw);
      }
      if (hws.size !== 1) return false;
    }
    return true;
  }

  /** acks=all: on every replica at its offset. acks=1: counted when lost. */
  private checkAcknowledged(): void {
    let lost1 = 0;
    let lostDeposed = 0;
    for (const p of this.produces) {
      if (p.state !== "acked" || p.acks === 0) continue;
      const m = this.checker.records.get(p.partition);
      p.values.forEach((v, i) => {
        const offset = p.offsets[i]!;
        const there = m?.get(offset);
        if (there === `|${v}`) return;
        if (there === undefined && offset < this.minLogStart(p.partition)) return; // retention took it everywhere
        if (p.acks === -1) this.fail(`acks=all record lost: produce #${p.n} (step ${p.step}, via broker ${p.broker}) record ${v} at partition ${p.partition} offset ${offset} holds ${there === undefined ? "nothing" : JSON.stringify(there)}`);
        // Never seen committed (the run's record map has another record there, or none): its
        // leader lost it before a quorum had it, by crashing or by being deposed.
        lost1++;
        const leader = p.leader;
        if (leader && this.lifeCount.get(leader.id) === leader.lives) lostDeposed++;
      });
    }
    this.lostAcks1 = lost1;
    this.lostAcks1Deposed = lostDeposed;
    // Every replica served every offset it holds; the checker compared them. Each replica must hold the whole committed log.
    for (const l of this.live()) {
      for (let p = 0; p < this.partitions; p++) {
        const d = l.broker!.describeTopic(TOPIC).partitions[p]!;
        if (d.highWatermark < 0) continue;
        const m = this.checker.records.get(p);
        const max = m ? Math.max(-1, ...m.keys()) : -1;
        if (max >= d.highWatermark) this.fail(`broker ${l.id} partition ${p} high watermark ${d.highWatermark} is below a record seen at ${max}`);
      }
    }
  }

  private lostAcks1 = 0;
  private lostAcks1Deposed = 0;

  result(): ClusterSimStats {
    const count = (f: (p: Produce) => boolean) => this.produces.filter(f).length;
    const s: Omit<ClusterSimStats, "digest"> = {
      steps: this.step,
      produced: this.produces.length,
      ackedAll: count((p) => p.state === "acked" && p.acks === -1),
      acked1: count((p) => p.state === "acked" && p.acks === 1),
      sent0: count((p) => p.state === "acked" && p.acks === 0),
      failed: count((p) => p.state === "failed"),
      abandoned: count((p) => p.state === "abandoned"),
      lostAcks1: this.lostAcks1,
      lostAcks1Deposed: this.lostAcks1Deposed,
      crashes: this.stats.crashes,
      restarts: this.stats.restarts,
      partitions: this.stats.partitions,
      reassignments: this.stats.reassignments,
      leaderTerms: this.checker.leaderTerms,
      simMs: this.clock.now() - this.startMs,
      recordsChecked: this.checker.recordsChecked,
    };
    let digest = crc32c(enc.encode(JSON.stringify(s)));
    for (const p of this.produces) digest = crc32c(enc.encode(`${digest}:${p.state}:${p.offsets.join(",")}:${p.error ?? ""}`));
    for (const [part, m] of [...this.checker.records].sort((a, b) => a[0] - b[0])) {
      for (const [o, id] of [...m].sort((a, b) => a[0] - b[0])) digest = crc32c(enc.encode(`${digest}:${part}:${o}:${id}`));
    }
    return { ...s, digest };
  }
}

/**
 * Seeded bytes for `crypto.getRandomValues` during a run: topic ids (src/topic-metadata.ts) come
 * from it, and a replay must name its directories and groups the same way.
 */
function seedCrypto(random: () => number): () => void {
  const original = crypto.getRandomValues.bind(crypto);
  const c = crypto as { getRandomValues: typeof crypto.getRandomValues };
  c.getRandomValues = (<T extends ArrayBufferView | null>(array: T): T => {
    if (array) {
      const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
    }
    return array;
  }) as typeof crypto.getRandomValues;
  return () => {
    c.getRandomValues = original;
  };
}

/** One whole run. Throws (naming the seed's step) on the first broken property. */
export async function simulateCluster(seed: number, options: Partial<ClusterSimOptions> = {}): Promise<ClusterSimStats> {
  const sim = new ClusterSim(seed, { ...CLUSTER_SIM_DEFAULTS, ...options });
  const restore = seedCrypto(sim.child());
  try {
    await sim.setup();
    for (let i = 0; i < sim.options.steps; i++) {
      await sim.runStep();
      sim.check();
      await sim.checkRecords();
    }
    await sim.finish();
    return sim.result();
  } finally {
    restore();
    // Abandon every life: their timers must not fire into the next run (the clock dies with the sim).
    for (const l of sim.lives.values()) l.alive = false;
  }
}

