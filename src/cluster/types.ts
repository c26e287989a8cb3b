/**
 * The seams of the cluster layer: who the peers are, how Raft groups are named, and the
 * `Transport` that carries Raft messages and forwarded client calls between peers. The real
 * transport is gRPC (`gateways/peer/`); the in-memory twin is `mem-transport.ts`.
 */
import type { Message, NodeId } from "../raft/index.ts";

export type { NodeId } from "../raft/index.ts";

/** One peer of the cluster, as listed in `cluster.peers`: `id@host:port` (the peer listener). */
export interface PeerInfo {
  readonly id: NodeId;
  /** host:port of the peer's peer-transport listener. */
  readonly address: string;
}

/**
 * A Raft group's name. The controller is `META_GROUP`; a partition's group is
 * `partitionGroupId(topicId, partition)`. Stable across restarts and topic renames.
 */
export type GroupId = string;
export const META_GROUP: GroupId = "__meta";

export function partitionGroupId(topicId: string, partition: number): GroupId {
  return `${topicId}/${partition}`;
}

/** One Raft message of one group. A frame carries many, to one peer. */
export interface GroupMessage {
  readonly group: GroupId;
  readonly message: Message;
}

/**
 * Carries frames of Raft messages between peers, and forwarded client calls.
 *
 * `send` never throws and never waits: Raft tolerates loss, so a frame that cannot go (the peer
 * is down, or `maxInflightFrames` frames to it are already unanswered) is dropped and counted,
 * and `onUnreachable` tells the driver so it stops pipelining to that peer. Frames to one peer
 * arrive in the order sent or not at all (one stream per peer), which the core does not need but
 * makes the pipeline efficient.
 *
 * `call` is a request/response to one peer (produce and fetch forwarded to a leader, topic admin
 * forwarded to the controller's leader): the method name and a CBOR body, the reply a CBOR body.
 * A handler's `TributaryError` reaches the caller as the same code and message. Rejects with
 * `PEER_UNAVAILABLE` when the peer cannot be reached before `deadlineMs` (epoch ms).
 */
export interface Transport {
  send(to: NodeId, frame: readonly GroupMessage[]): void;
  call(to: NodeId, method: string, body: Uint8Array, deadlineMs: number): Promise<Uint8Array>;
  /** Installs the receiver; called once, before any frame can arrive. */
  listen(handlers: TransportHandlers): void;
  /**
   * The cluster's peers changed (a peer added, removed or moved, as the controller applied it):
   * talk to these from now on; frames from others are dropped.
   */
  setPeers(peers: readonly PeerInfo[]): void;
  close(): Promise<void>;
}

export interface TransportHandlers {
  frame(from: NodeId, frame: readonly GroupMessage[]): void;
  call(from: NodeId, method: string, body: Uint8Array): Promise<Uint8Array>;
  unreachable(peer: NodeId): void;
}

/** Bounds of the transport, per peer. */
export interface TransportLimits {
  /** Frames sent and not yet answered to one peer; past it new frames are dropped. */
  readonly maxInflightFrames: number;
  /** Largest frame in bytes; a bigger one is refused by the receiver. */
  readonly maxFrameBytes: number;
  /** Bytes of unanswered frames to one peer (the real transport; the twin counts frames only). */
  readonly maxInflightBytes?: number;
}

/**
 * Frames also carry heartbeats, responses and commit-only appends, so the frame window is well
 * above a group's own append window (DEFAULT_GROUP_LIMITS.maxInflightMsgs, 16): a slow follower
 * must not make the transport drop appends Raft counted as sent. Bytes bound the memory instead.
 */
export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = { maxInflightFrames: 256, maxFrameBytes: 16 * 1024 * 1024, maxInflightBytes: 32 * 1024 * 1024 };
