/**
 * The values the Raft core exchanges with its driver: log entries, messages between peers,
 * persisted state, snapshots and the `Ready` batch. Plain data only, so a transport can encode
 * them however it likes (the driver's business, not the core's).
 */

/** A peer id. 0 means "none" (no leader, no vote). */
export type NodeId = number;
export const NONE: NodeId = 0;

export const EntryType = { Normal: 0, ConfChange: 1 } as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** Normal: the application's bytes (empty for the no-op a new leader appends). ConfChange: `encodeConfChange`. */
  readonly data: Uint8Array;
}

/** The voters of a group. Single-server changes only, so there is never a joint configuration. */
export interface ConfState {
  readonly voters: readonly NodeId[];
}

export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

/** The application state up to and including `meta.index`, as bytes the application chose. */
export interface Snapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

/** What must be on disk before any message of the same Ready leaves the node. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

export type StateRole = "follower" | "precandidate" | "candidate" | "leader";

/** Volatile state the driver may want to observe (who leads); never persisted. */
export interface SoftState {
  readonly lead: NodeId;
  readonly role: StateRole;
}

export const MessageType = {
  App: "app", // leader → follower: entries after (index, logTerm), and the leader's commit
  AppResp: "app-resp", // follower → leader: accepted up to index, or rejected with a hint
  Vote: "vote",
  VoteResp: "vote-resp",
  PreVote: "pre-vote", // a vote for term+1 that changes nobody's term (Raft thesis §9.6)
  PreVoteResp: "pre-vote-resp",
  Heartbeat: "heartbeat", // carries min(match, commit) so a follower never commits what it lacks
  HeartbeatResp: "heartbeat-resp",
  Snap: "snap", // leader → follower far behind: install this snapshot
  TimeoutNow: "timeout-now", // leadership transfer: campaign now, skipping pre-vote and the lease
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  /** App: term of the entry at `index`. Vote: the candidate's last term. Reject: the follower's term at `rejectHint`. */
  readonly logTerm: number;
  /** App: the index before `entries`. AppResp: last accepted index, or the rejected index. Vote: last index. */
  readonly index: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  readonly reject: boolean;
  readonly rejectHint: number;
  readonly snapshot?: Snapshot;
  /** Vote requests sent because of a leadership transfer: voters grant them even inside a leader lease. */
  readonly transfer?: boolean;
}

/**
 * One batch of work for the driver. The order is the contract: persist `snapshot`, `entries` and
 * `hardState`; then send `messages`; then apply `snapshot` and `committedEntries` to the state
 * machine; then call `advance(ready)`.
 */
export interface Ready {
  readonly softState?: SoftState;
  readonly hardState?: HardState;
  readonly snapshot?: Snapshot;
  readonly entries: readonly Entry[];
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
}

export function entryBytes(e: Entry): number {
  // The fixed part approximates term, index and type on the wire, so empty entries still count.
  return e.data.byteLength + 24;
}
