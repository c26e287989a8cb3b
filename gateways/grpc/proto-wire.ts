/**
 * The few protobuf wire-format pieces the hand-written encoders share (gateways/peer/codec.ts,
 * record-replies.ts): sizes and writers of varint and length-delimited fields, as protobuf-es
 * writes them, so a hand-encoded message is byte for byte what toBinary would produce.
 *
 * Every field number here is below 16, so every tag (field << 3 | wire type) is one byte.
 *
 * @example
 *   const size = varintFieldSize(42) + lengthDelimitedSize(bytes.length);
 *   const w = new Writer(new Uint8Array(size));
 *   writeVarintField(w, 1, 42);
 *   w.int8((2 << 3) | WIRE_LEN).uvarint(bytes.length).bytes(bytes);
 */
import { sizeOfInt64Varint, sizeOfUvarint, type Writer } from "../../src/storage/bytes.ts";

/** Wire type of varints (int32, int64, uint64, bool, enums). */
export const WIRE_VARINT = 0;
/** Wire type of bytes, strings, nested messages and packed repeated scalars. */
export const WIRE_LEN = 2;

/** Bytes of a length-delimited field of `size` bytes, tag included. */
export function lengthDelimitedSize(size: number): number {
  return 1 + sizeOfUvarint(size) + size;
}

/** A varint field (int64 or unsigned): absent when zero (proto3 implicit presence), as protobuf-es writes it. */
export function varintFieldSize(n: number): number {
  return n === 0 ? 0 : 1 + sizeOfInt64Varint(n);
}

export function writeVarintField(w: Writer, field: number, n: number): void {
  if (n !== 0) w.int8((field << 3) | WIRE_VARINT).int64Varint(n);
}

/**
 * A reply already in wire bytes (record-replies.ts): the gRPC bridge hands these bytes to grpc-js
 * as they are, where other replies go through protobuf-es's toBinary.
 */
export class EncodedMessage {
  constructor(readonly bytes: Uint8Array) {}
}
