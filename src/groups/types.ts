/**
 * The consumer-group surface the gateways (HTTP, gRPC) call through `broker.groups`. Values only:
 * the protocol is described at the top of coordinator.ts, the assignors in assignors.ts.
 */

export interface TopicPartition {
  topic: string;
  partition: number;
}

/** Assignor names as Kafka spells them in partition.assignment.strategy. */
export const ASSIGNOR_NAMES = ["range", "roundrobin", "cooperative-sticky"] as const;
export type AssignorName = (typeof ASSIGNOR_NAMES)[number];

/** Where a member without a committed offset (or with one outside the log) starts. */
export type AutoOffsetReset = "earliest" | "latest";

/**
 * One heartbeat. Without `memberId` it joins (the reply carries the new id); with it, it keeps the
 * session alive, updates the subscription when `topics` is given, and reports which partitions
 * the member still holds (`ownedPartitions`), which releases those it was asked to give up.
 */
export interface GroupHeartbeatRequest {
  groupId: string;
  /** Absent or "": join as a new member. */
  memberId?: string;
  /** The subscription; required to join, optional afterwards (absent: unchanged). */
  topics?: string[];
  /** Default group.min.session.timeout.ms clamped into [min, max]; outside them INVALID_SESSION_TIMEOUT. */
  sessionTimeoutMs?: number;
  /** The group's assignor is set by its first member; default "cooperative-sticky". */
  assignor?: AssignorName;
  /**
   * Partitions the member holds now. Absent: the member is assumed to hold what it was last told
   * it may consume (so a member that always obeys the reply may leave it out).
   */
  ownedPartitions?: TopicPartition[];
  /** Free text shown by describe (a client or instance name). */
  clientId?: string;
}

export interface GroupHeartbeatResponse {
  memberId: string;
  /** The group's generation; commits must carry it. Bumped on every membership or subscription change. */
  generationId: number;
  /** What the member may consume now: no other member holds any of these. */
  assignment: TopicPartition[];
  /** Target partitions still held by a member that must give them up first: consume them later. */
  pendingPartitions: TopicPartition[];
  /** True while the group's target assignment is not fully in place (initial delay, revocations pending). */
  rebalanceInProgress: boolean;
  /** Heartbeat at least this often (a third of the session timeout). */
  heartbeatIntervalMs: number;
  sessionTimeoutMs: number;
}

export interface OffsetCommit {
  topic: string;
  partition: number;
  offset: number;
  /** Free text stored with the offset (Kafka's commit metadata); at most 4096 characters. */
  metadata?: string;
}

/**
 * A commit by a member: `memberId` and `generationId` must be current, and the member must hold
 * each partition (else UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION). A group without members accepts
 * commits with memberId "" and generationId -1 (tools, simple consumers), as Kafka does.
 */
export interface CommitOffsetsRequest {
  groupId: string;
  memberId: string;
  generationId: number;
  offsets: OffsetCommit[];
}

export interface CommittedOffset {
  topic: string;
  partition: number;
  offset: number;
  metadata: string;
  commitTimestampMs: number;
}

export type GroupState = "empty" | "assigning" | "reconciling" | "stable";

export interface GroupListing {
  groupId: string;
  state: GroupState;
  members: number;
  assignor: AssignorName | null;
}

export interface GroupMemberDescription {
  memberId: string;
  clientId: string;
  topics: string[];
  /** Partitions the member may consume now. */
  assignment: TopicPartition[];
  /** Partitions in its target that another member still holds. */
  pendingPartitions: TopicPartition[];
  sessionTimeoutMs: number;
  lastHeartbeatMs: number;
}

export interface PartitionLag extends TopicPartition {
  /** null: nothing committed yet. */
  committedOffset: number | null;
  highWatermark: number;
  logStartOffset: number;
  /** highWatermark - committedOffset; null without a commit. */
  lag: number | null;
  /** The member holding the partition now, or null. */
  memberId: string | null;
}

export interface GroupDescription {
  groupId: string;
  state: GroupState;
  generationId: number;
  assignor: AssignorName | null;
  members: GroupMemberDescription[];
  /** Every partition of every subscribed topic and every topic with a committed offset, sorted. */
  partitions: PartitionLag[];
  /** Sum of the non-null lags. */
  totalLag: number;
}

/** Where resetOffsets moves a group's committed offsets. */
export type OffsetResetTarget =
  | { to: "earliest" }
  | { to: "latest" }
  | { to: "offset"; offset: number }
  | { to: "timestamp"; timestampMs: number };
