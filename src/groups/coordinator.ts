/**
 * The consumer-group coordinator: membership, target assignments, generations, and committed
 * offsets (kept in the internal compacted topic `__consumer_offsets`, see offsets-store.ts).
 *
 * Protocol: server-side assignment in the manner of Kafka's KIP-848, one call instead of
 * JoinGroup/SyncGroup.
 *
 *   member ── heartbeat {groupId, memberId?, topics?, ownedPartitions?} ──► coordinator
 *          ◄── {memberId, generationId, assignment, pendingPartitions, rebalanceInProgress}
 *
 * - Join: a heartbeat without memberId. The coordinator makes an id, and any change of membership
 *   or subscriptions (join, leave, session expiry, a new subscription, a topic created or deleted
 *   under a subscription) bumps the group's generation and computes a new target assignment with
 *   the group's assignor (a pure function, assignors.ts).
 * - Revoke before reassign: a partition that moves from A to B is withheld from B (it shows in
 *   B's `pendingPartitions`) until A heartbeats without it in `ownedPartitions` (or omits
 *   ownedPartitions, meaning "I hold what you told me"), or A leaves or expires. So at every moment
 *   each partition is held by at most one member, and in each generation's target exactly one.
 * - Generations fence commits: a commit must carry the current generation and a member id that
 *   holds the partition (ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID otherwise), so a member that was
 *   expired, or lost the partition, cannot overwrite its new owner's progress.
 * - Sessions: every heartbeat restarts the member's session timer on the injected Clock; on
 *   expiry the member is removed as if it had left. A group going from empty to its first member
 *   waits group.initial.rebalance.delay.ms (members hear rebalanceInProgress and no partitions)
 *   so members starting together do not cause a rebalance each.
 * - A heartbeat from an unknown member id gets UNKNOWN_MEMBER_ID: it joins again without an id.
 *
 * Bounds: MAX_GROUPS groups (with members or committed offsets), MAX_MEMBERS_PER_GROUP members;
 * beyond either a join gets OVERLOADED.
 *
 * @example
 *   const hb = await broker.groups.heartbeat({ groupId: "g", topics: ["telemetry"] });
 *   await broker.groups.commitOffsets({ groupId: "g", memberId: hb.memberId, generationId: hb.generationId,
 *     offsets: [{ topic: "telemetry", partition: 0, offset: 42 }] });
 */
import { TributaryError } from "../errors.ts";
import type { Clock } from "../runtime/clock.ts";
import type { Logger } from "../logger.ts";
import type {
  AutoOffsetReset,
  CommitOffsetsRequest,
  CommittedOffset,
  GroupDescription,
  GroupHeartbeatRequest,
  GroupHeartbeatResponse,
  GroupListing,
  OffsetResetTarget,
  TopicPartition,
} from "./types.ts";

export const MAX_GROUPS = 10_000;
export const MAX_MEMBERS_PER_GROUP = 100;

/** What the coordinator needs of the broker: topic shapes and the offsets topic. */
export interface GroupBrokerView {
  /** Partition count of a topic, or undefined when it does not exist. */
  partitionCount(topic: string): number | undefined;
  /** Stored range of a partition now. */
  bounds(topic: string, partition: number): { logStartOffset: number; highWatermark: number };
  offsetForTimestamp(topic: string, partition: number, timestampMs: number): Promise<number | null>;
}

export interface GroupSettings {
  minSessionTimeoutMs: number;
  maxSessionTimeoutMs: number;
  initialRebalanceDelayMs: number;
}

export class GroupCoordinator {
  constructor(
    private readonly view: GroupBrokerView,
    private readonly settings: GroupSettings,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /**
   * Join (no memberId) or heartbeat; see the protocol above.
   * @example const { memberId, generationId, assignment } = await groups.heartbeat({ groupId: "g", topics: ["t"] });
   */
  async heartbeat(_req: GroupHeartbeatRequest): Promise<GroupHeartbeatResponse> {
    throw notImplemented();
  }

  /**
   * Leave the group at once (its partitions move without waiting for the session timeout).
   * @example await groups.leave("g", memberId);
   */
  async leave(_groupId: string, _memberId: string): Promise<void> {
    throw notImplemented();
  }

  /**
   * Commit offsets durably, fenced by generation (see CommitOffsetsRequest).
   * @example await groups.commitOffsets({ groupId: "g", memberId, generationId, offsets: [{ topic: "t", partition: 0, offset: 10 }] });
   */
  async commitOffsets(_req: CommitOffsetsRequest): Promise<void> {
    throw notImplemented();
  }

  /**
   * Committed offsets of a group, all or for the given partitions (those without a commit are left out).
   * @example groups.fetchCommittedOffsets("g", [{ topic: "t", partition: 0 }]) // [{ topic, partition, offset, metadata, commitTimestampMs }]
   */
  fetchCommittedOffsets(_groupId: string, _partitions?: TopicPartition[]): CommittedOffset[] {
    throw notImplemented();
  }

  /**
   * Where a member of the group starts reading a partition: the committed offset when it lies in
   * the log, else the log start ("earliest") or the high watermark ("latest").
   * @example const offset = groups.startOffset("g", "t", 0, "earliest");
   */
  startOffset(_groupId: string, _topic: string, _partition: number, _reset: AutoOffsetReset): number {
    throw notImplemented();
  }

  /**
   * Every group with members or committed offsets, sorted by id.
   * @example groups.listGroups() // [{ groupId: "g", state: "stable", members: 3, assignor: "range" }]
   */
  listGroups(): GroupListing[] {
    throw notImplemented();
  }

  /**
   * Members, their assignments, committed offsets and lag per partition. GROUP_NOT_FOUND if unknown.
   * @example groups.describeGroup("g").partitions[0].lag
   */
  describeGroup(_groupId: string): GroupDescription {
    throw notImplemented();
  }

  /**
   * Move a group's committed offsets for a topic (all partitions, or the given ones); only while the
   * group has no members (GROUP_NOT_EMPTY otherwise), as Kafka requires. Returns the new offsets.
   * @example await groups.resetOffsets("g", "t", { to: "earliest" });
   */
  async resetOffsets(_groupId: string, _topic: string, _target: OffsetResetTarget, _partitions?: number[]): Promise<CommittedOffset[]> {
    throw notImplemented();
  }

  /**
   * Delete a group without members and its committed offsets (GROUP_NOT_EMPTY / GROUP_NOT_FOUND).
   * @example await groups.deleteGroup("g");
   */
  async deleteGroup(_groupId: string): Promise<void> {
    throw notImplemented();
  }
}

function notImplemented(): TributaryError {
  return new TributaryError("NOT_READY", "consumer groups are not implemented yet");
}
