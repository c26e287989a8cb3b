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
import type { MessageInitShape } from "@bufbuild/protobuf";
import { assert, TributaryError } from "../../src/errors.ts";
import { sizeOfUvarint, Writer } from "../../src/storage/bytes.ts";
import type { GroupMessage, NodeId } from "../../src/cluster/types.ts";
import { EntryType, MessageType, type Entry, type Message, type Snapshot } from "../../src/raft/index.ts";
import { lengthDelimitedSize, varintFieldSize, writeVarintField } from "../grpc/proto-wire.ts";
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

/**
 * One FramesRequest's bytes, written by hand rather than through protobuf-es's writer: the sizes
 * are computed first, then one buffer is allocated and filled, so each entry's data is copied
 * once (the generic writer grows its buffer by doubling, shifts every nested message to fit its
 * length prefix and copies the whole result out at the end: five copies of every byte a leader
 * replicates, measured at a fifth of the sender's CPU). The bytes are those protobuf-es writes
 * (test/peer-codec.test.ts compares them), so the receiver decodes with the generated schema.
 * `headroom` bytes are left free before them, so a transport can put its own prefix there
 * without copying the frame (the peer link: gRPC's 5-byte message prefix).
 */
export function encodeFrame(from: NodeId, frame: readonly GroupMessage[], headroom = 0): Uint8Array {
  u32(from, "from");
  const groups = frame.map((g) => utf8.encode(g.group));
  const sizes = frame.map((g) => raftMessageSize(g.message));
  let total = from === 0 ? 0 : 1 + sizeOfUvarint(from);
  for (let i = 0; i < frame.length; i++) total += lengthDelimitedSize(groupMessageSize(groups[i]!, sizes[i]!));
  const w = new Writer(new Uint8Array(headroom + total), headroom);
  if (from !== 0) w.int8(FRAMES_FROM).uvarint(from);
  for (let i = 0; i < frame.length; i++) {
    const group = groups[i]!;
    w.int8(FRAMES_MESSAGES).uvarint(groupMessageSize(group, sizes[i]!));
    if (group.length > 0) w.int8(GROUP_NAME).uvarint(group.length).bytes(group);
    w.int8(GROUP_MESSAGE).uvarint(sizes[i]!);
    writeRaftMessage(w, frame[i]!.message);
  }
  assert(w.pos === headroom + total, `frame encoded to ${w.pos - headroom} bytes, sized ${total}`);
  return w.buf;
}

// Tags (field number << 3 | wire type) of proto/tributary/peer/v1/peer.proto; 0 varint, 2 bytes.
const FRAMES_FROM = (1 << 3) | 0;
const FRAMES_MESSAGES = (2 << 3) | 2;
const GROUP_NAME = (1 << 3) | 2;
const GROUP_MESSAGE = (2 << 3) | 2;
const utf8 = new TextEncoder();

function groupMessageSize(group: Uint8Array, messageSize: number): number {
  return (group.length > 0 ? lengthDelimitedSize(group.length) : 0) + lengthDelimitedSize(messageSize);
}

function entrySize(e: Entry): number {
  return varintFieldSize(e.term) + varintFieldSize(e.index) + varintFieldSize(entryType(e)) + (e.data.length > 0 ? lengthDelimitedSize(e.data.length) : 0);
}

function snapshotMetaSize(s: Snapshot): number {
  const voters = votersSize(s);
  return varintFieldSize(s.meta.index) + varintFieldSize(s.meta.term) + (voters > 0 ? lengthDelimitedSize(voters) : 0);
}

function votersSize(s: Snapshot): number {
  let n = 0;
  for (const v of s.meta.confState.voters) n += sizeOfUvarint(u32(v, "voter"));
  return n;
}

function snapshotSize(s: Snapshot): number {
  return lengthDelimitedSize(snapshotMetaSize(s)) + (s.data.length > 0 ? lengthDelimitedSize(s.data.length) : 0);
}

function raftMessageSize(m: Message): number {
  let n = varintFieldSize(messageType(m)) + varintFieldSize(u32(m.from, "from")) + varintFieldSize(u32(m.to, "to"));
  n += varintFieldSize(u64n(m.term, "term")) + varintFieldSize(u64n(m.logTerm, "logTerm")) + varintFieldSize(u64n(m.index, "index"));
  for (const e of m.entries) n += lengthDelimitedSize(entrySize(e));
  n += varintFieldSize(u64n(m.commit, "commit")) + (m.reject ? 2 : 0) + varintFieldSize(u64n(m.rejectHint, "rejectHint"));
  if (m.snapshot !== undefined) n += lengthDelimitedSize(snapshotSize(m.snapshot));
  if (m.transfer !== undefined) n += 2;
  return n;
}

function writeBytesField(w: Writer, field: number, b: Uint8Array): void {
  if (b.length > 0) w.int8((field << 3) | 2).uvarint(b.length).bytes(b);
}

function writeRaftMessage(w: Writer, m: Message): void {
  writeVarintField(w, 1, messageType(m));
  writeVarintField(w, 2, m.from);
  writeVarintField(w, 3, m.to);
  writeVarintField(w, 4, m.term);
  writeVarintField(w, 5, m.logTerm);
  writeVarintField(w, 6, m.index);
  for (const e of m.entries) {
    w.int8((7 << 3) | 2).uvarint(entrySize(e));
    writeVarintField(w, 1, e.term);
    writeVarintField(w, 2, e.index);
    writeVarintField(w, 3, entryType(e));
    writeBytesField(w, 4, e.data);
  }
  writeVarintField(w, 8, m.commit);
  if (m.reject) w.int8(9 << 3).int8(1);
  writeVarintField(w, 10, m.rejectHint);
  if (m.snapshot !== undefined) writeSnapshot(w, m.snapshot);
  if (m.transfer !== undefined) w.int8(12 << 3).int8(m.transfer ? 1 : 0);
}

function writeSnapshot(w: Writer, s: Snapshot): void {
  w.int8((11 << 3) | 2).uvarint(snapshotSize(s));
  w.int8((1 << 3) | 2).uvarint(snapshotMetaSize(s));
  writeVarintField(w, 1, s.meta.index);
  writeVarintField(w, 2, s.meta.term);
  const voters = votersSize(s);
  if (voters > 0) {
    w.int8((3 << 3) | 2).uvarint(voters); // packed, as proto3 repeated scalars are
    for (const v of s.meta.confState.voters) w.uvarint(v);
  }
  writeBytesField(w, 2, s.data);
}

function messageType(m: Message): number {
  const type = TO_PROTO_TYPE.get(m.type);
  assert(type !== undefined, `message type ${m.type}`);
  return type;
}

function entryType(e: Entry): number {
  const type = TO_PROTO_ENTRY.get(e.type);
  assert(type !== undefined, `entry type ${e.type}`);
  return type;
}

/** A term or index checked for the wire (the number itself: uvarlong writes it without a bigint). */
function u64n(n: number, field: string): number {
  assert(Number.isSafeInteger(n) && n >= 0, `${field} ${n} is not a non-negative safe integer`);
  return n;
}

/**
 * The sender and messages of a FramesRequest; INVALID_REQUEST for bytes that are not one.
 *
 * Read by hand, like the encoder writes: protobuf-es's generic reader builds every message
 * through its reflection (a context per message, a bigint per uint64 field) and was the largest
 * single cost of a follower's frame. The result equals `messageFromProto(fromBinary(...))`
 * (test/peer-codec.test.ts checks it against the generated schema): fields in any order, the
 * last of a repeated scalar field winning, unknown fields skipped, voters packed or not, entry
 * data and snapshot data as views of `bytes`.
 */
export function decodeFrame(bytes: Uint8Array): { from: NodeId; frame: GroupMessage[] } {
  const r = new ProtoReader(bytes, 0, bytes.length);
  let from = 0;
  const frame: GroupMessage[] = [];
  while (r.more()) {
    const tag = r.tag();
    if (tag === FRAMES_FROM) from = r.uint32();
    else if (tag === FRAMES_MESSAGES) frame.push(readGroupMessage(r.sub()));
    else r.skip(tag);
  }
  return { from, frame };
}

function readGroupMessage(r: ProtoReader): GroupMessage {
  let group = "";
  let message: Message | undefined;
  while (r.more()) {
    const tag = r.tag();
    if (tag === GROUP_NAME) group = utf8Decoder.decode(r.bytes());
    else if (tag === GROUP_MESSAGE) message = readRaftMessage(r.sub());
    else r.skip(tag);
  }
  if (message === undefined) throw new TributaryError("INVALID_REQUEST", `a group message of ${group} without its message`);
  return { group, message };
}

function readRaftMessage(r: ProtoReader): Message {
  let type = 0, from = 0, to = 0, term = 0, logTerm = 0, index = 0, commit = 0, rejectHint = 0;
  let reject = false;
  let transfer: boolean | undefined;
  let snapshot: Snapshot | undefined;
  const entries: Entry[] = [];
  while (r.more()) {
    const tag = r.tag();
    switch (tag) {
      case (1 << 3) | 0: type = r.int32(); break;
      case (2 << 3) | 0: from = r.uint32(); break;
      case (3 << 3) | 0: to = r.uint32(); break;
      case (4 << 3) | 0: term = r.uint64("term"); break;
      case (5 << 3) | 0: logTerm = r.uint64("logTerm"); break;
      case (6 << 3) | 0: index = r.uint64("index"); break;
      case (7 << 3) | 2: entries.push(readEntry(r.sub())); break;
      case (8 << 3) | 0: commit = r.uint64("commit"); break;
      case (9 << 3) | 0: reject = r.bool(); break;
      case (10 << 3) | 0: rejectHint = r.uint64("rejectHint"); break;
      case (11 << 3) | 2: snapshot = readSnapshot(r.sub()); break;
      case (12 << 3) | 0: transfer = r.bool(); break;
      default: r.skip(tag);
    }
  }
  const coreType = FROM_PROTO_TYPE.get(type);
  if (coreType === undefined) throw new TributaryError("INVALID_REQUEST", `message type ${type} is not one the core knows`);
  const m: Message = { type: coreType, from, to, term, logTerm, index, entries, commit, reject, rejectHint };
  if (snapshot === undefined && transfer === undefined) return m;
  return { ...m, ...(snapshot === undefined ? {} : { snapshot }), ...(transfer === undefined ? {} : { transfer }) };
}

function readEntry(r: ProtoReader): Entry {
  let term = 0, index = 0, type = 0;
  let data: Uint8Array = EMPTY;
  while (r.more()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | 0)) term = r.uint64("entry term");
    else if (tag === ((2 << 3) | 0)) index = r.uint64("entry index");
    else if (tag === ((3 << 3) | 0)) type = r.int32();
    else if (tag === ((4 << 3) | 2)) data = r.bytes();
    else r.skip(tag);
  }
  const coreType = FROM_PROTO_ENTRY.get(type);
  if (coreType === undefined) throw new TributaryError("INVALID_REQUEST", `entry type ${type} is not one the core knows`);
  return { term, index, type: coreType, data };
}

function readSnapshot(r: ProtoReader): Snapshot {
  let meta: Snapshot["meta"] | undefined;
  let data: Uint8Array = EMPTY;
  while (r.more()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | 2)) meta = readSnapshotMeta(r.sub());
    else if (tag === ((2 << 3) | 2)) data = r.bytes();
    else r.skip(tag);
  }
  if (meta === undefined) throw new TributaryError("INVALID_REQUEST", "a snapshot without its meta");
  return { meta, data };
}

function readSnapshotMeta(r: ProtoReader): Snapshot["meta"] {
  let index = 0, term = 0;
  const voters: number[] = [];
  while (r.more()) {
    const tag = r.tag();
    if (tag === ((1 << 3) | 0)) index = r.uint64("snapshot index");
    else if (tag === ((2 << 3) | 0)) term = r.uint64("snapshot term");
    else if (tag === ((3 << 3) | 0)) voters.push(r.uint32());
    else if (tag === ((3 << 3) | 2)) {
      const packed = r.sub();
      while (packed.more()) voters.push(packed.uint32());
    } else r.skip(tag);
  }
  return { index, term, confState: { voters } };
}

const EMPTY = new Uint8Array(0);
const utf8Decoder = new TextDecoder();
const TWO_POW_32 = 2 ** 32;

function bad(what: string): TributaryError {
  return new TributaryError("INVALID_REQUEST", `the request is not a valid ${FramesRequestSchema.typeName}: ${what}`);
}

/** Protobuf wire reading over [pos, end) of one buffer; every fault is INVALID_REQUEST. */
class ProtoReader {
  constructor(
    private readonly buf: Uint8Array,
    private pos: number,
    private readonly end: number,
  ) {}

  more(): boolean {
    return this.pos < this.end;
  }

  tag(): number {
    const t = this.varint();
    if (t.hi !== 0 || t.lo >>> 3 === 0) throw bad(`a bad field tag at ${this.pos}`);
    return t.lo;
  }

  /** A varint as its low and high 32 bits (at most 10 bytes). */
  private varint(): { lo: number; hi: number } {
    let lo = 0, hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw bad("a varint past the end");
      const b = this.buf[this.pos++]!;
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >>> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if (b < 0x80) return { lo: lo >>> 0, hi: hi >>> 0 };
    }
    throw bad("a varint longer than 10 bytes");
  }

  uint32(): number {
    return this.varint().lo;
  }

  int32(): number {
    return this.varint().lo | 0;
  }

  bool(): boolean {
    const v = this.varint();
    return v.lo !== 0 || v.hi !== 0;
  }

  uint64(field: string): number {
    const v = this.varint();
    const n = v.hi * TWO_POW_32 + v.lo;
    if (n > Number.MAX_SAFE_INTEGER) throw new TributaryError("INVALID_REQUEST", `${field} ${BigInt(v.hi) * 2n ** 32n + BigInt(v.lo)} is past 2^53`);
    return n;
  }

  private length(): number {
    const v = this.varint();
    if (v.hi !== 0 || v.lo > this.end - this.pos) throw bad(`a length past the end at ${this.pos}`);
    return v.lo;
  }

  /** A length-delimited field's bytes, as a view. */
  bytes(): Uint8Array {
    const n = this.length();
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** A reader over a length-delimited field (an embedded message). */
  sub(): ProtoReader {
    const n = this.length();
    const r = new ProtoReader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }

  skip(tag: number): void {
    switch (tag & 7) {
      case 0: this.varint(); return;
      case 1: return this.advance(8);
      case 2: return this.advance(this.length());
      case 5: return this.advance(4);
      default: throw bad(`wire type ${tag & 7} of field ${tag >>> 3}`);
    }
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw bad("a field past the end");
    this.pos += n;
  }
}
