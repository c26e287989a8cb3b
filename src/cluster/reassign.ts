/**
 * Moving a partition's replicas between peers: the driver that runs on the partition's leader.
 *
 * The controller records a move as the partition's target replicas (`reassign-partition` in
 * metadata.ts); every peer in replicas or target then holds a local replica (a new one opens an
 * empty replica log whose voters are the old replicas, so it never campaigns, and catches up by
 * ordinary log replication, or by a snapshot, which resets its log to the leader's log start).
 * The leader changes its Raft group one voter at a time (single-server changes, src/raft/conf-change.ts)
 * until the group's applied voters are the target, then proposes `complete-reassignment`, after
 * which the peers left out drop their local files.
 *
 * Nothing of the move's progress is kept but the metadata and the group's own configuration: each
 * pass compares the group's applied voters with the target (`nextMoveStep`), so a new leader after a
 * crash or an election simply carries on. The order of steps:
 *
 * 1. a voter to remove that the leader has not heard from lately (a dead peer) goes first: a
 *    3-voter group with one dead peer still has a quorum of 2 to commit its removal, while adding
 *    first would need the new replica caught up before anything commits again;
 * 2. while the group is no bigger than the target (or holds no target peer yet), add a missing peer;
 * 3. remove a surplus voter once every live target voter is caught up and the voters left hold a
 *    quorum of caught-up ones. Caught up: live, holding the entries the leader had committed when
 *    it first saw the current voters (so a new one holds the change that added it), and within
 *    `CATCH_UP_ENTRIES` of the leader's log. The leader never removes itself but, last, hands
 *    leadership to a caught-up target voter.
 */
import type { Logger } from "../logger.ts";
import type { Clock } from "../runtime/clock.ts";
import type { ConfChange, ProposeResult } from "../raft/index.ts";
import type { RaftGroup } from "./group.ts";
import type { ClusterMetadata, ReassignCommand } from "./metadata.ts";
import { partitionGroupId, type GroupId, type NodeId } from "./types.ts";

/** How often the leader looks at the moves under way. */
export const REASSIGN_INTERVAL_MS = 50;
/** A new voter within this many entries of the leader's last index counts as caught up. */
export const CATCH_UP_ENTRIES = 64;

/** What the leader sees of its group. */
export interface MoveView {
  readonly self: NodeId;
  /** The group's applied voters. */
  readonly voters: readonly NodeId[];
  readonly target: readonly NodeId[];
  readonly lastIndex: number;
  /**
   * The leader's commit index when it first saw the current voters: at or past the change that
   * made them voters, so a voter whose log reaches it holds that change (and will vote).
   */
  readonly baseline: number;
  /** The leader heard from the voter within the last election timeout. */
  active(id: NodeId): boolean;
  /** The voter's highest index known to match the leader's log. */
  match(id: NodeId): number;
}

export type MoveStep =
  | { readonly kind: "add"; readonly peer: NodeId }
  | { readonly kind: "remove"; readonly peer: NodeId }
  | { readonly kind: "transfer"; readonly to: NodeId }
  | { readonly kind: "complete" }
  | { readonly kind: "wait" };

/** The next step of a move (pure): see the order in the file comment. */
export function nextMoveStep(v: MoveView): MoveStep {
  const toAdd = v.target.filter((id) => !v.voters.includes(id));
  const toRemove = v.voters.filter((id) => !v.target.includes(id));
  if (toAdd.length === 0 && toRemove.length === 0) return { kind: "complete" };
  const dead = toRemove.find((id) => id !== v.self && !v.active(id));
  if (dead !== undefined && v.voters.length > 1) return { kind: "remove", peer: dead };
  const staying = v.voters.filter((id) => v.target.includes(id));
  // With no target voter yet, one must come in before anyone can take over from the leader.
  if (toAdd.length > 0 && (v.voters.length <= v.target.length || staying.length === 0)) return { kind: "add", peer: toAdd[0]! };
  const caughtUp = (id: NodeId) => id === v.self || (v.active(id) && v.match(id) >= v.baseline && v.match(id) + CATCH_UP_ENTRIES >= v.lastIndex);
  // A removal must leave a quorum of caught-up voters, or the group could not commit (or elect) after it.
  const leavesQuorum = (peer: NodeId) => {
    const after = v.voters.filter((id) => id !== peer);
    return after.filter(caughtUp).length >= Math.floor(after.length / 2) + 1;
  };
  // Every live target voter catches up first (a dead one does not hold the move up).
  if (!staying.every((id) => caughtUp(id) || !v.active(id))) return { kind: "wait" };
  const other = toRemove.find((id) => id !== v.self && leavesQuorum(id));
  if (other !== undefined) return { kind: "remove", peer: other };
  if (!toRemove.includes(v.self) || !leavesQuorum(v.self)) return { kind: "wait" };
  // Only the leader itself is left to go: it hands over to the most caught-up target voter.
  const to = staying.filter((id) => id !== v.self && caughtUp(id)).sort((a, b) => v.match(b) - v.match(a))[0];
  return to === undefined ? { kind: "wait" } : { kind: "transfer", to };
}

export interface ReassignerDeps {
  readonly self: NodeId;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metadata: () => ClusterMetadata;
  readonly group: (id: GroupId) => RaftGroup | undefined;
  /** Propose `complete-reassignment` through the controller's leader. */
  readonly complete: (cmd: ReassignCommand) => Promise<void>;
}

/** Drives, on this peer, every move of a partition whose group it leads. */
export class Reassigner {
  private cancel: (() => void) | null = null;
  /** Completions proposed and not answered yet, so a pass does not propose one twice. */
  private readonly completing = new Set<GroupId>();
  /** Per group led here: the voters last seen and the commit index when they were first seen. */
  private readonly baselines = new Map<GroupId, { voters: string; commit: number }>();

  constructor(private readonly deps: ReassignerDeps) {}

  start(): void {
    const run = () => {
      this.pass();
      this.cancel = this.deps.clock.setTimer(REASSIGN_INTERVAL_MS, run);
    };
    this.cancel = this.deps.clock.setTimer(REASSIGN_INTERVAL_MS, run);
  }

  stop(): void {
    this.cancel?.();
    this.cancel = null;
  }

  /** One look at every move under way: one step each for those this peer leads. */
  pass(): void {
    const seen = new Set<GroupId>();
    for (const topic of this.deps.metadata().topics()) {
      topic.targets?.forEach((target, partition) => {
        if (!target) return;
        const id = partitionGroupId(topic.record.id, partition);
        const group = this.deps.group(id);
        if (!group?.isLeader) return;
        seen.add(id);
        const cmd: ReassignCommand = { type: "complete-reassignment", name: topic.record.name, topicId: topic.record.id, partition, replicas: target };
        this.step(group, cmd);
      });
    }
    for (const id of this.baselines.keys()) if (!seen.has(id)) this.baselines.delete(id);
  }

  /** The commit index when this peer, leading, first saw the group's current voters. */
  private baselineOf(group: RaftGroup): number {
    const voters = group.node.confState().voters.join(",");
    const known = this.baselines.get(group.id);
    if (known && known.voters === voters) return known.commit;
    const commit = group.node.log.committed;
    this.baselines.set(group.id, { voters, commit });
    return commit;
  }

  private step(group: RaftGroup, cmd: ReassignCommand): void {
    const n = group.node;
    const step = nextMoveStep({
      self: this.deps.self,
      voters: n.confState().voters,
      target: cmd.replicas,
      lastIndex: n.log.lastIndex(),
      baseline: this.baselineOf(group),
      active: (id) => n.progress(id)?.recentActive ?? false,
      match: (id) => n.progress(id)?.match ?? 0,
    });
    const where = { topic: cmd.name, partition: cmd.partition, target: cmd.replicas.join(",") };
    switch (step.kind) {
      case "add":
      case "remove": {
        const cc: ConfChange = { type: step.kind === "add" ? "add-voter" : "remove-voter", nodeId: step.peer };
        let r: ProposeResult = { ok: false, reason: "not-leader", leader: 0 };
        group.poke((node) => {
          r = node.proposeConfChange(cc);
        });
        // A refusal (a change still pending, an election) is retried on a later pass.
        if (r.ok) this.deps.logger.info(`reassignment: ${cc.type} ${step.peer}`, where);
        return;
      }
      case "transfer":
        this.deps.logger.info("reassignment: the leader leaves the partition; handing over leadership", { ...where, to: step.to });
        group.poke((node) => node.transferLeadership(step.to));
        return;
      case "complete":
        this.completeOnce(group.id, cmd);
        return;
      case "wait":
        return;
    }
  }

  private completeOnce(id: GroupId, cmd: ReassignCommand): void {
    if (this.completing.has(id)) return;
    this.completing.add(id);
    this.deps
      .complete(cmd)
      .then(() => this.deps.logger.info("reassignment complete", { topic: cmd.name, partition: cmd.partition, replicas: cmd.replicas.join(",") }))
      .catch((e: unknown) => this.deps.logger.warn("could not record a completed reassignment; retrying", { topic: cmd.name, partition: cmd.partition, error: e }))
      .finally(() => this.completing.delete(id));
  }
}
