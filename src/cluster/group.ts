/**
 * `RaftGroup`: the driver of one Raft group on one peer. It owns a `RaftNode` (src/raft) and that
 * group's store, and keeps the core's contract in one loop:
 *
 *   while node.hasReady():
 *     rd = node.ready()
 *     send the leader's appends and heartbeats                     0. node.sendableBeforePersist(m)
 *     await store.persist(rd.entries, rd.hardState, rd.snapshot)   1. durable before the rest leaves
 *     machine.persisted(rd.entries)                                    (acks=1 waiters resolve here)
 *     send the other rd.messages                                   2. through the host's outbox
 *     await machine.apply(rd.snapshot, rd.committedEntries)        3. (acks=all waiters, metadata)
 *     node.advance(rd)                                             4.
 *
 * One Ready is in flight at a time, so everything proposed while a persist runs goes into the next
 * one: that is the group commit of a replicated partition. A leader's appends go out before its
 * own persist (Raft thesis §10.2.1), so followers write in parallel with it; the core counts the
 * leader's own entries toward the commit only after `advance`. Inputs (`step`, `tick`, `propose`) only
 * poke the node and schedule the loop; they never wait.
 *
 * A store that keeps only the recent tail in memory answers some `entries()` with null; the loop
 * then loads what was missed and asks the node to retry the append (`RaftNode.retryAppend`).
 *
 * A failed persist is a failed disk: the group stops (no more Readies, so nothing unpersisted is
 * ever sent or acknowledged) and reports it; the broker then refuses that partition's writes.
 */
import type { Logger } from "../logger.ts";
import type { Entry, HardState, Message, NodeId, ProposeResult, RaftNode, Snapshot, SoftState, Storage } from "../raft/index.ts";
import type { GroupId } from "./types.ts";

/** The store a group persists to: the core's read-only `Storage` plus the driver's writes. */
export interface GroupStore extends Storage {
  /** Persist a Ready's snapshot, entries (cutting a conflicting stored suffix) and hard state; durable on resolve. */
  persist(entries: readonly Entry[], hardState: HardState | undefined, snapshot: Snapshot | undefined): Promise<void>;
  /** Indexes `entries()` answered null for since the last call (stores that keep everything in memory: none). */
  takeMisses?(): number[];
  /** Bring entries from `lo` on into memory, so the next `entries()` answers. */
  load?(lo: number): Promise<void>;
}

/** What the group's log drives: a partition replica, or the cluster metadata. */
export interface GroupMachine {
  /** Entries of `rd.entries` are durable on this peer (called before they are sent anywhere). */
  persisted?(entries: readonly Entry[]): void;
  /** Apply a received snapshot (if any), then committed entries, in index order. */
  apply(snapshot: Snapshot | undefined, committed: readonly Entry[]): void | Promise<void>;
  /** Leader or role changed. */
  softState?(state: SoftState, term: number): void;
  /** The store failed: the group has stopped. */
  failed?(error: unknown): void;
}

export type Outbox = (to: NodeId, group: GroupId, message: Message) => void;

export class RaftGroup {
  private running = false;
  private stopped = false;
  private rerun = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly id: GroupId,
    readonly node: RaftNode,
    private readonly store: GroupStore,
    private readonly machine: GroupMachine,
    private readonly outbox: Outbox,
    private readonly logger: Logger,
  ) {}

  get leader(): NodeId {
    return this.node.lead;
  }
  get isLeader(): boolean {
    return this.node.role === "leader";
  }
  get isStopped(): boolean {
    return this.stopped;
  }

  step(m: Message): void {
    if (this.stopped) return;
    this.node.step(m);
    this.schedule();
  }

  tick(): void {
    if (this.stopped) return;
    this.node.tick();
    this.schedule();
  }

  propose(data: Uint8Array): ProposeResult {
    if (this.stopped) return { ok: false, reason: "not-leader", leader: 0 };
    const r = this.node.propose(data);
    if (r.ok) this.schedule();
    return r;
  }

  /** Anything else done to the node from outside (campaign, transfer, conf change): then schedule. */
  poke(fn: (node: RaftNode) => void): void {
    if (this.stopped) return;
    fn(this.node);
    this.schedule();
  }

  /** Resolves once no Ready is pending or being handled (for tests and orderly shutdown). */
  idle(): Promise<void> {
    if (!this.running && (this.stopped || !this.node.hasReady())) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stop driving: no more Readies. Pending work is dropped (the store keeps what it persisted). */
  stop(): void {
    this.stopped = true;
    if (!this.running) this.wakeIdle();
  }

  private schedule(): void {
    if (this.running) {
      this.rerun = true;
      return;
    }
    if (!this.node.hasReady()) return;
    this.running = true;
    // A microtask, not a synchronous run: a burst of steps and proposals in one turn share a Ready.
    queueMicrotask(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.rerun = false;
        // A Ready with nothing in it: committed entries the store must load first (fetchMisses).
        while (!this.stopped && this.node.hasReady()) if (!(await this.handleReady())) break;
        if (!this.stopped) await this.fetchMisses();
      } while (this.rerun && !this.stopped);
    } catch (e) {
      this.stopped = true;
      this.logger.error("raft group stopped: its store failed", { group: this.id, error: e });
      this.machine.failed?.(e);
    } finally {
      this.running = false;
      this.wakeIdle();
    }
  }

  /** Handles one Ready; false when it held nothing to do. */
  private async handleReady(): Promise<boolean> {
    const rd = this.node.ready();
    const work = rd.entries.length > 0 || rd.messages.length > 0 || rd.committedEntries.length > 0 || !!rd.hardState || !!rd.snapshot || !!rd.softState;
    // A leader's appends leave while its own write runs (the core counts its own entries only
    // after advance); everything else waits for the persist.
    const early = rd.messages.filter((m) => this.node.sendableBeforePersist(m));
    for (const m of early) this.outbox(m.to, this.id, m);
    if (rd.entries.length > 0 || rd.hardState || rd.snapshot) await this.store.persist(rd.entries, rd.hardState, rd.snapshot);
    if (this.stopped) return false;
    if (rd.entries.length > 0) this.machine.persisted?.(rd.entries);
    if (rd.softState) this.machine.softState?.(rd.softState, this.node.term);
    for (const m of rd.messages) if (!early.includes(m)) this.outbox(m.to, this.id, m);
    if (rd.snapshot || rd.committedEntries.length > 0) await this.machine.apply(rd.snapshot, rd.committedEntries);
    this.node.advance(rd);
    return work;
  }

  /** Entries the store had only on disk: load them, then let the node send (and apply) them. */
  private async fetchMisses(): Promise<void> {
    const misses = this.store.takeMisses?.() ?? [];
    if (misses.length === 0 || !this.store.load) return;
    const lo = Math.min(...misses);
    await this.store.load(lo);
    if (this.stopped) return;
    for (const id of this.node.confState().voters) this.node.retryAppend(id);
    this.rerun = this.rerun || this.node.hasReady();
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
