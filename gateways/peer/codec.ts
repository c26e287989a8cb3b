/**
 * Raft messages ↔ the peer protocol (proto/tributary/peer/v1/peer.proto), exactly: what
 * `decodeFrame(encodeFrame(from, frame))` gives back equals what went in, field for field
 * (an absent `snapshot` or `transfer` stays absent).
 *
 * Terms and indexes are uint64 on the wire (bigint in protobuf-es) and safe integers in the core:
 * encoding a number that is not one is a bug (assert); decoding a value above
 * Number.MAX_SAFE_INTEGER, an unspecified or unknown enum value, or bytes that are not a frame is
 * bad input from outside (INVALID_REQUEST), never a crash.
 *
 * @example
 *   const bytes = encodeFrame(1, [{ group: META_GROUP, message }]);
 *   const { from, frame } = decodeFrame(bytes);
 */
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { assert, TributaryError } from "../../src/errors.ts";
import type { GroupMessage, NodeId } from "../../src/cluster/types.ts";
import { EntryType, MessageType, type Entry, type Message, type Snapshot } from "../../src/raft/index.ts";
import { decodeRequest } from "../grpc/bridge.ts";
import {
  EntryType as ProtoEntryType,
  FramesRequestSchema,
  MessageType as ProtoMessageType,
  type Entry as ProtoEntry,
  type EntrySchema,
  type RaftMessage,
  type RaftMessageSchema,
  type Snapshot as ProtoSnapshot,
  type SnapshotSchema,
} from "../grpc/gen/tributary/peer/v1/peer_pb.ts";

const MESSAGE_TYPES: readonly [MessageType, ProtoMessageType][] = [
  [MessageType.App, ProtoMessageType.APP],
  [MessageType.AppResp, ProtoMessageType.APP_RESP],
  [MessageType.Vote, ProtoMessageType.VOTE],
  [MessageType.VoteResp, ProtoMessageType.VOTE_RESP],
  [MessageType.PreVote, ProtoMessageType.PRE_VOTE],
  [MessageType.PreVoteResp, ProtoMessageType.PRE_VOTE_RESP],
  [MessageType.Heartbeat, ProtoMessageType.HEARTBEAT],
  [MessageType.HeartbeatResp, ProtoMessageType.HEARTBEAT_RESP],
  [MessageType.Snap, ProtoMessageType.SNAP],
  [MessageType.TimeoutNow, ProtoMessageType.TIMEOUT_NOW],
];
const TO_PROTO_TYPE = new Map(MESSAGE_TYPES);
const FROM_PROTO_TYPE = new Map(MESSAGE_TYPES.map(([a, b]) => [b, a]));

const ENTRY_TYPES: readonly [EntryType, ProtoEntryType][] = [
  [EntryType.Normal, ProtoEntryType.NORMAL],
  [EntryType.ConfChange, ProtoEntryType.CONF_CHANGE],
];
const TO_PROTO_ENTRY = new Map(ENTRY_TYPES);
const FROM_PROTO_ENTRY = new Map(ENTRY_TYPES.map(([a, b]) => [b, a]));

function u64(n: number, field: string): bigint {
  assert(Number.isSafeInteger(n) && n >= 0, `${field} ${n} is not a non-negative safe integer`);
  return BigInt(n);
}

function num(n: bigint, field: string): number {
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new TributaryError("INVALID_REQUEST", `${field} ${n} is past 2^53`);
  return Number(n);
}

function u32(n: number, field: string): number {
  assert(Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff, `${field} ${n} is not a uint32`);
  return n;
}

function entryToProto(e: Entry): MessageInitShape<typeof EntrySchema> {
  const type = TO_PROTO_ENTRY.get(e.type);
  assert(type !== undefined, `entry type ${e.type}`);
  return { term: u64(e.term, "entry term"), index: u64(e.index, "entry index"), type, data: e.data };
}

function snapshotToProto(s: Snapshot): MessageInitShape<typeof SnapshotSchema> {
  const meta = s.meta;
  return {
    meta: { index: u64(meta.index, "snapshot index"), term: u64(meta.term, "snapshot term"), voters: meta.confState.voters.map((v) => u32(v, "voter")) },
    data: s.data,
  };
}

export function messageToProto(m: Message): MessageInitShape<typeof RaftMessageSchema> {
  const type = TO_PROTO_TYPE.get(m.type);
  assert(type !== undefined, `message type ${m.type}`);
  return {
    type,
    from: u32(m.from, "from"),
    to: u32(m.to, "to"),
    term: u64(m.term, "term"),
    logTerm: u64(m.logTerm, "logTerm"),
    index: u64(m.index, "index"),
    entries: m.entries.map(entryToProto),
    commit: u64(m.commit, "commit"),
    reject: m.reject,
    rejectHint: u64(m.rejectHint, "rejectHint"),
    ...(m.snapshot === undefined ? {} : { snapshot: snapshotToProto(m.snapshot) }),
    ...(m.transfer === undefined ? {} : { transfer: m.transfer }),
  };
}

function entryFromProto(e: ProtoEntry): Entry {
  const type = FROM_PROTO_ENTRY.get(e.type);
  if (type === undefined) throw new TributaryError("INVALID_REQUEST", `entry type ${e.type} is not one the core knows`);
  return { term: num(e.term, "entry term"), index: num(e.index, "entry index"), type, data: e.data };
}

function snapshotFromProto(s: ProtoSnapshot): Snapshot {
  if (s.meta === undefined) throw new TributaryError("INVALID_REQUEST", "a snapshot without its meta");
  const meta = { index: num(s.meta.index, "snapshot index"), term: num(s.meta.term, "snapshot term"), confState: { voters: s.meta.voters } };
  return { meta, data: s.data };
}

export function messageFromProto(p: RaftMessage): Message {
  const type = FROM_PROTO_TYPE.get(p.type);
  if (type === undefined) throw new TributaryError("INVALID_REQUEST", `message type ${p.type} is not one the core knows`);
  return {
    type,
    from: p.from,
    to: p.to,
    term: num(p.term, "term"),
    logTerm: num(p.logTerm, "logTerm"),
    index: num(p.index, "index"),
    entries: p.entries.map(entryFromProto),
    commit: num(p.commit, "commit"),
    reject: p.reject,
    rejectHint: num(p.rejectHint, "rejectHint"),
    ...(p.snapshot === undefined ? {} : { snapshot: snapshotFromProto(p.snapshot) }),
    ...(p.transfer === undefined ? {} : { transfer: p.transfer }),
  };
}

/** One FramesRequest's bytes. */
export function encodeFrame(from: NodeId, frame: readonly GroupMessage[]): Uint8Array {
  const messages = frame.map((g) => ({ group: g.group, message: messageToProto(g.message) }));
  return toBinary(FramesRequestSchema, create(FramesRequestSchema, { from: u32(from, "from"), messages }));
}

/** The sender and messages of a FramesRequest; INVALID_REQUEST for bytes that are not one. */
export function decodeFrame(bytes: Uint8Array): { from: NodeId; frame: GroupMessage[] } {
  const req = decodeRequest(FramesRequestSchema, bytes);
  const frame = req.messages.map((g): GroupMessage => {
    if (g.message === undefined) throw new TributaryError("INVALID_REQUEST", `a group message of ${g.group} without its message`);
    return { group: g.group, message: messageFromProto(g.message) };
  });
  return { from: req.from, frame };
}
