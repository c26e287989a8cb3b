/**
 * The peer codec (gateways/peer/codec.ts): every Raft message survives a frame's round trip
 * exactly (fast-check), numbers past 2^32 included; bytes from outside that are not a frame, or
 * carry what the core cannot hold (a value past 2^53, an unknown or unspecified enum, a group
 * message without its message), are INVALID_REQUEST and never another exception. The hand-written
 * encoder writes the same bytes as protobuf-es does for the schema.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TributaryError } from "../src/errors.ts";
import { META_GROUP, type GroupMessage } from "../src/cluster/types.ts";
import { EntryType, MessageType, type Message } from "../src/raft/index.ts";
import { decodeFrame, encodeFrame, messageFromProto, messageToProto } from "../gateways/peer/codec.ts";
import { FramesRequestSchema, GroupMessageSchema, MessageType as ProtoMessageType, EntryType as ProtoEntryType } from "../gateways/grpc/gen/tributary/peer/v1/peer_pb.ts";
import { codeOf } from "./support/errors.ts";

const safe = fc.maxSafeNat();
// Plain objects, as the core makes them (fast-check may otherwise give null-prototype ones).
const plain = { noNullPrototype: true } as const;
const nodeId = fc.integer({ min: 0, max: 0xffff_ffff });
const bytes = fc.uint8Array({ maxLength: 64 });

const entry = fc.record({ term: safe, index: safe, type: fc.constantFrom(EntryType.Normal, EntryType.ConfChange), data: bytes }, plain);
const snapshot = fc.record(
  {
    meta: fc.record({ index: safe, term: safe, confState: fc.record({ voters: fc.array(nodeId, { maxLength: 5 }) }, plain) }, plain),
    data: bytes,
  },
  plain,
);

const message: fc.Arbitrary<Message> = fc.record(
  {
    type: fc.constantFrom(...Object.values(MessageType)),
    from: nodeId,
    to: nodeId,
    term: safe,
    logTerm: safe,
    index: safe,
    entries: fc.array(entry, { maxLength: 4 }),
    commit: safe,
    reject: fc.boolean(),
    rejectHint: safe,
    snapshot,
    transfer: fc.boolean(),
  },
  { ...plain, requiredKeys: ["type", "from", "to", "term", "logTerm", "index", "entries", "commit", "reject", "rejectHint"] },
);

const frame: fc.Arbitrary<GroupMessage[]> = fc.array(fc.record({ group: fc.oneof(fc.constant(META_GROUP), fc.string({ maxLength: 20 })), message }, plain), { maxLength: 5 });

function heartbeat(over: Partial<Message> = {}): Message {
  return { type: MessageType.Heartbeat, from: 1, to: 2, term: 3, logTerm: 0, index: 0, entries: [], commit: 7, reject: false, rejectHint: 0, ...over };
}

describe("peer codec round trip", () => {
  it("decodes what it encoded, field for field, absent optionals staying absent", () => {
    fc.assert(
      fc.property(nodeId, frame, (from, f) => {
        const back = decodeFrame(encodeFrame(from, f));
        expect(back.from).toBe(from);
        expect(back.frame).toStrictEqual(f);
        back.frame.forEach((g, i) => {
          expect("snapshot" in g.message).toBe("snapshot" in f[i]!.message);
          expect("transfer" in g.message).toBe("transfer" in f[i]!.message);
        });
      }),
      { numRuns: 300 },
    );
  });

  it("writes the very bytes protobuf-es writes for the schema (the receiver decodes with it)", () => {
    const reference = (from: number, f: readonly GroupMessage[]) =>
      toBinary(FramesRequestSchema, create(FramesRequestSchema, { from, messages: f.map((g) => ({ group: g.group, message: messageToProto(g.message) })) }));
    fc.assert(
      fc.property(nodeId, frame, (from, f) => {
        expect(encodeFrame(from, f)).toStrictEqual(reference(from, f));
      }),
      { numRuns: 300 },
    );
    const big = heartbeat({ type: MessageType.App, term: 2 ** 35, index: Number.MAX_SAFE_INTEGER, commit: 2 ** 32, rejectHint: 2 ** 42 - 1 });
    expect(encodeFrame(7, [{ group: "", message: big }])).toStrictEqual(reference(7, [{ group: "", message: big }]));
  });

  it("the hand-written decoder reads what protobuf-es reads: the schema's own encoding, fields reordered, unknown fields and unpacked voters", () => {
    const viaSchema = (bytes: Uint8Array) => {
      const req = fromBinary(FramesRequestSchema, bytes);
      return { from: req.from, frame: req.messages.map((g) => ({ group: g.group, message: messageFromProto(g.message!) })) };
    };
    const reference = (from: number, f: readonly GroupMessage[]) =>
      toBinary(FramesRequestSchema, create(FramesRequestSchema, { from, messages: f.map((g) => ({ group: g.group, message: messageToProto(g.message) })) }));
    fc.assert(
      fc.property(nodeId, frame, (from, f) => {
        const bytes = reference(from, f);
        expect(decodeFrame(bytes)).toStrictEqual(viaSchema(bytes));
        // The same fields the other way round, plus an unknown varint and an unknown length-delimited field.
        const w = new BinaryWriter();
        for (const g of [...f].reverse()) w.tag(2, WireType.LengthDelimited).bytes(toBinary(GroupMessageSchema, create(GroupMessageSchema, { message: messageToProto(g.message), group: g.group })));
        w.tag(15, WireType.Varint).uint64(12345n).tag(16, WireType.LengthDelimited).bytes(new Uint8Array([1, 2, 3]));
        if (from !== 0) w.tag(1, WireType.Varint).uint32(from);
        const shuffled = w.finish();
        expect(decodeFrame(shuffled)).toStrictEqual(viaSchema(shuffled));
      }),
      { numRuns: 300 },
    );
    // Voters written unpacked (one varint field each), as an older writer may.
    const meta = new BinaryWriter().tag(1, WireType.Varint).uint64(9n).tag(3, WireType.Varint).uint32(1).tag(3, WireType.Varint).uint32(3).finish();
    const snap = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(meta).finish();
    const msg = new BinaryWriter().tag(1, WireType.Varint).int32(ProtoMessageType.SNAP).tag(11, WireType.LengthDelimited).bytes(snap).finish();
    const group = new BinaryWriter().tag(1, WireType.LengthDelimited).string("__meta").tag(2, WireType.LengthDelimited).bytes(msg).finish();
    const unpacked = new BinaryWriter().tag(2, WireType.LengthDelimited).bytes(group).finish();
    expect(decodeFrame(unpacked)).toStrictEqual(viaSchema(unpacked));
    expect(decodeFrame(unpacked).frame[0]!.message.snapshot!.meta.confState.voters).toEqual([1, 3]);
  });

  it("keeps terms and indexes past 2^32 exact", () => {
    const big = 2 ** 40 + 3;
    const m = heartbeat({ type: MessageType.App, term: big, index: Number.MAX_SAFE_INTEGER, entries: [{ term: big, index: big + 1, type: EntryType.Normal, data: new Uint8Array([1]) }] });
    expect(decodeFrame(encodeFrame(1, [{ group: "t/0", message: m }])).frame[0]!.message).toStrictEqual(m);
  });

  it("refuses to encode what is not a safe integer (a bug in the caller)", () => {
    expect(() => encodeFrame(1, [{ group: "g", message: heartbeat({ term: 1.5 }) }])).toThrow(/invariant broken/);
    expect(() => encodeFrame(2 ** 32, [])).toThrow(/invariant broken/);
  });
});

describe("peer codec on bad bytes", () => {
  const raw = (messages: object[]) => toBinary(FramesRequestSchema, create(FramesRequestSchema, { from: 1, messages }));
  const good = { type: ProtoMessageType.HEARTBEAT, term: 1n };

  it("garbage is INVALID_REQUEST", async () => {
    expect(await codeOf(() => decodeFrame(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff])))).toBe("INVALID_REQUEST");
    expect(await codeOf(() => decodeFrame(new Uint8Array([0x12, 0x40, 0x01])))).toBe("INVALID_REQUEST"); // length past the end
  });

  it("values the core cannot hold are INVALID_REQUEST", async () => {
    expect(await codeOf(() => decodeFrame(raw([{ group: "g", message: { ...good, term: 2n ** 53n } }])))).toBe("INVALID_REQUEST");
    expect(await codeOf(() => decodeFrame(raw([{ group: "g", message: { ...good, type: ProtoMessageType.UNSPECIFIED } }])))).toBe("INVALID_REQUEST");
    expect(await codeOf(() => decodeFrame(raw([{ group: "g", message: { ...good, type: 99 } }])))).toBe("INVALID_REQUEST");
    expect(await codeOf(() => decodeFrame(raw([{ group: "g", message: { ...good, entries: [{ type: ProtoEntryType.UNSPECIFIED }] } }])))).toBe("INVALID_REQUEST");
    expect(await codeOf(() => decodeFrame(raw([{ group: "g", message: { ...good, snapshot: { data: new Uint8Array(1) } } }])))).toBe("INVALID_REQUEST");
    expect(await codeOf(() => decodeFrame(raw([{ group: "g" }])))).toBe("INVALID_REQUEST");
  });

  it("random, truncated and bit-flipped frames decode or fail with INVALID_REQUEST, nothing else", () => {
    const attempt = (b: Uint8Array) => {
      try {
        decodeFrame(b);
      } catch (e) {
        expect(e).toBeInstanceOf(TributaryError);
        expect((e as TributaryError).code).toBe("INVALID_REQUEST");
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), attempt), { numRuns: 500 });
    fc.assert(
      fc.property(frame, fc.nat(), fc.nat(), (f, cut, flip) => {
        const b = encodeFrame(1, f);
        attempt(b.subarray(0, cut % (b.length + 1)));
        if (b.length > 0) {
          const c = b.slice();
          c[flip % c.length]! ^= 1 << flip % 8;
          attempt(c);
        }
      }),
      { numRuns: 300 },
    );
  });
});
