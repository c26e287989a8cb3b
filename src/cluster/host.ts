/**
 * `RaftHost`: every Raft group of one peer (the controller and one group per local partition
 * replica) over one `Transport` and one `Clock`.
 *
 * - Time: one timer ticks every group each `tickMs`; the core counts ticks, milliseconds exist only
 *   here (`electionTicks * tickMs` is the election timeout).
 * - Coalescing: messages the groups emit during one turn of the event loop are gathered per peer
 *   and leave as one frame per peer, so the heartbeats of a hundred partitions between two peers
 *   are one frame, not a hundred calls.
 * - Receiving: a frame is split by group; a message for a group this peer does not have (yet: the
 *   topic is being created here) is dropped, and Raft sends it again.
 * - Unreachable peers (the transport says so): every group stops pipelining to them.
 *
 * @example
 *   const host = new RaftHost({ self: 1, transport, clock, random, logger, tickMs: 100 });
 *   const group = host.addGroup(META_GROUP, { voters: [1, 2, 3] }, store, machine);
 *   host.start();
 */
import type { Clock } from "../runtime/clock.ts";
import type { Logger } from "../logger.ts";
import { RaftNode, type Message, type NodeId, type RaftConfig } from "../raft/index.ts";
import { RaftGroup, type GroupMachine, type GroupStore } from "./group.ts";
import type { GroupId, GroupMessage, Transport } from "./types.ts";

export interface RaftTiming {
  /** Milliseconds per tick. */
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
}

/** 100 ms ticks, an election after 1 to 2 s of silence, heartbeats every 100 ms. */
export const DEFAULT_TIMING: RaftTiming = { tickMs: 100, electionTicks: 10, heartbeatTicks: 1 };

export interface GroupLimits {
  readonly maxInflightMsgs: number;
  readonly maxSizePerMsg: number;
  readonly maxUncommittedBytes: number;
}

export const DEFAULT_GROUP_LIMITS: GroupLimits = { maxInflightMsgs: 16, maxSizePerMsg: 1 << 20, maxUncommittedBytes: 64 << 20 };

export interface RaftHostOptions {
  readonly self: NodeId;
  readonly transport: Transport;
  readonly clock: Clock;
  /** Uniform in [0, 1): election jitter. Seeded in simulations. */
  readonly random: () => number;
  readonly logger: Logger;
  readonly timing?: RaftTiming;
  readonly limits?: GroupLimits;
  /** Forwarded calls from peers (produce, fetch, admin). */
  readonly onCall?: (from: NodeId, method: string, body: Uint8Array) => Promise<Uint8Array>;
}

export interface AddGroupOptions {
  /** The voters when the store holds no configuration yet (a new group). */
  readonly voters: readonly NodeId[];
  /** The last index already applied (a state that survives restarts, such as a partition log). */
  readonly applied?: number;
  /** See RaftConfig.voteFloor: a replica this peer held before and deleted. */
  readonly voteFloor?: { readonly index: number; readonly term: number };
}

export class RaftHost {
  readonly self: NodeId;
  readonly timing: RaftTiming;
  private readonly groups = new Map<GroupId, RaftGroup>();
  private outbox = new Map<NodeId, GroupMessage[]>();
  private flushScheduled = false;
  private cancelTick: (() => void) | null = null;
  private closed = false;
  private readonly limits: GroupLimits;

  constructor(private readonly options: RaftHostOptions) {
    this.self = options.self;
    this.timing = options.timing ?? DEFAULT_TIMING;
    this.limits = options.limits ?? DEFAULT_GROUP_LIMITS;
    options.transport.listen({
      frame: (from, frame) => this.receive(from, frame),
      call: (from, method, body) => {
        if (!options.onCall) return Promise.reject(new Error(`no call handler for ${method}`));
        return options.onCall(from, method, body);
      },
      unreachable: (peer) => {
        for (const g of this.groups.values()) g.poke((n) => n.reportUnreachable(peer));
      },
    });
  }

  get transport(): Transport {
    return this.options.transport;
  }

  /** Start ticking. Groups added before or after take part. */
  start(): void {
    if (this.cancelTick || this.closed) return;
    const clock = this.options.clock;
    const tickMs = this.timing.tickMs;
    // Each tick is due tickMs after the previous one was due, not after it ran: a busy event loop
    // delays a tick but does not stretch every later one (20 ticks of a late timer each would make
    // a 2 s election timeout 2.5 s). A tick more than one behind is skipped, never run in a burst.
    let dueMs = clock.now() + tickMs;
    const tick = () => {
      if (this.closed) return;
      for (const g of this.groups.values()) g.tick();
      const now = clock.now();
      dueMs = Math.max(dueMs + tickMs, now);
      this.cancelTick = clock.setTimer(dueMs - now, tick);
    };
    this.cancelTick = clock.setTimer(tickMs, tick);
  }

  addGroup(id: GroupId, options: AddGroupOptions, store: GroupStore, machine: GroupMachine): RaftGroup {
    if (this.groups.has(id)) throw new Error(`invariant broken: raft group ${id} added twice`);
    const config: RaftConfig = {
      id: this.self,
      peers: options.voters,
      electionTicks: this.timing.electionTicks,
      heartbeatTicks: this.timing.heartbeatTicks,
      preVote: true,
      checkQuorum: true,
      maxInflightMsgs: this.limits.maxInflightMsgs,
      maxSizePerMsg: this.limits.maxSizePerMsg,
      maxUncommittedBytes: this.limits.maxUncommittedBytes,
      random: this.options.random,
      ...(options.applied !== undefined ? { applied: options.applied } : {}),
      ...(options.voteFloor ? { voteFloor: options.voteFloor } : {}),
    };
    const node = new RaftNode(config, store);
    const group = new RaftGroup(id, node, store, machine, (to, g, m) => this.enqueue(to, g, m), this.options.logger);
    this.groups.set(id, group);
    return group;
  }

  group(id: GroupId): RaftGroup | undefined {
    return this.groups.get(id);
  }

  allGroups(): IterableIterator<RaftGroup> {
    return this.groups.values();
  }

  /** Stop a group and forget it (topic deleted, replica moved away). */
  removeGroup(id: GroupId): void {
    const g = this.groups.get(id);
    if (!g) return;
    g.stop();
    this.groups.delete(id);
  }

  /** Stop ticking and every group; the transport is the caller's to close. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancelTick?.();
    this.flush();
    const groups = [...this.groups.values()];
    for (const g of groups) g.stop();
    await Promise.all(groups.map((g) => g.idle()));
  }

  /** Send what the groups queued this turn now rather than at its end (the event loop is about to block). */
  flushNow(): void {
    if (this.flushScheduled && !this.closed) this.flush();
  }

  private enqueue(to: NodeId, group: GroupId, message: Message): void {
    if (this.closed) return;
    let q = this.outbox.get(to);
    if (!q) this.outbox.set(to, (q = []));
    q.push({ group, message });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // A zero timer, not a microtask: every group that runs this turn adds its messages first,
      // which is the point of coalescing. Through the injected clock, so a simulation orders it.
      this.options.clock.setTimer(0, () => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const out = this.outbox;
    this.outbox = new Map();
    for (const [to, frame] of out) this.options.transport.send(to, frame);
  }

  private receive(from: NodeId, frame: readonly GroupMessage[]): void {
    if (this.closed) return;
    for (const { group, message } of frame) {
      if (message.from !== from || message.to !== this.self) continue; // a peer speaks only for itself
      this.groups.get(group)?.step(message);
    }
  }
}
