/**
 * Big-endian Writer and Reader over one Uint8Array, with Kafka's variable-length integers.
 *
 * Kafka's varint is the protobuf one: zigzag (0, -1, 1, -2, ... map to 0, 1, 2, 3, ...) then base
 * 128, least significant group first, high bit set on every byte but the last. A varint carries
 * 32 bits (at most 5 bytes), a varlong 64 bits (at most 10 bytes). JS numbers are exact only up to
 * 2^53, so int64 and varlong values beyond ±(2^53 - 1) are refused on both sides.
 *
 * The Writer trusts its caller: the encoder computes the exact size first (the `sizeOf*`
 * functions), allocates once and checks the final position, so bounds are checked once, not per
 * byte. The Reader trusts nothing: every read past its end or malformed varint throws
 * TributaryError("CORRUPT_RECORD"), never a RangeError, so a corrupt batch from disk or the network
 * becomes one typed error.
 *
 * @example
 *   const buf = new Uint8Array(sizeOfVarint(-1) + 8);
 *   new Writer(buf).varint(-1).int64(2 ** 40);
 *   const r = new Reader(buf); r.varint(); // -1
 */
import { TributaryError, assert } from "../errors.ts";

const TWO_POW_32 = 4294967296;

function corrupt(message: string): TributaryError {
  return new TributaryError("CORRUPT_RECORD", message);
}

/** Bytes of `v` (a uint32) as an unsigned varint. */
export function sizeOfUvarint(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  return 5;
}

/** Bytes of `v` (an int32) as a zigzag varint. */
export function sizeOfVarint(v: number): number {
  return sizeOfUvarint(((v << 1) ^ (v >> 31)) >>> 0);
}

/** Bytes of `v` (a safe integer) as a zigzag varlong. */
export function sizeOfVarlong(v: number): number {
  if (v === (v | 0)) return sizeOfVarint(v);
  // zigzag(v) = 2u + sign, with u = |v| or |v| - 1: one 6-bit group, then 7-bit groups of u.
  let rest = Math.floor((v >= 0 ? v : -v - 1) / 64);
  let n = 1;
  while (rest > 0) {
    n++;
    rest = Math.floor(rest / 128);
  }
  return n;
}

/** Bytes of `v` (a non-negative safe integer) as an unsigned varint (protobuf's uint64). */
export function sizeOfUvarlong(v: number): number {
  if (v < TWO_POW_32) return sizeOfUvarint(v);
  let n = 5;
  for (let rest = Math.floor(v / 2 ** 35); rest > 0; rest = Math.floor(rest / 128)) n++;
  return n;
}

/**
 * Bytes of `v` (a safe integer) as protobuf's int64: a plain varint of its 64-bit two's
 * complement, so 10 bytes for any negative value (no zigzag; that is sint64).
 */
export function sizeOfInt64Varint(v: number): number {
  return v < 0 ? 10 : sizeOfUvarlong(v);
}

/** UTF-8 length as TextEncoder produces it (a lone surrogate becomes U+FFFD, 3 bytes). */
export function sizeOfUtf8(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      n += 1;
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a surrogate pair: 2 code units, 4 bytes
      i++;
    } else {
      n += 2;
    }
  }
  return n;
}

const utf8Encoder = new TextEncoder();

export class Writer {
  readonly buf: Uint8Array;
  readonly view: DataView;
  pos: number;

  constructor(buf: Uint8Array, pos = 0) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = pos;
  }

  int8(v: number): this {
    this.buf[this.pos++] = v;
    return this;
  }

  int16(v: number): this {
    this.view.setInt16(this.pos, v);
    this.pos += 2;
    return this;
  }

  int32(v: number): this {
    this.view.setInt32(this.pos, v);
    this.pos += 4;
    return this;
  }

  uint32(v: number): this {
    this.view.setUint32(this.pos, v);
    this.pos += 4;
    return this;
  }

  /** A safe integer as a signed 64-bit big-endian value. */
  int64(v: number): this {
    assert(Number.isSafeInteger(v), `int64 value ${v} is not a safe integer`);
    const hi = Math.floor(v / TWO_POW_32);
    this.view.setInt32(this.pos, hi);
    this.view.setUint32(this.pos + 4, v - hi * TWO_POW_32);
    this.pos += 8;
    return this;
  }

  /** A uint32 as an unsigned varint. */
  uvarint(v: number): this {
    const buf = this.buf;
    let pos = this.pos;
    let u = v >>> 0;
    while (u >= 0x80) {
      buf[pos++] = (u & 0x7f) | 0x80;
      u >>>= 7;
    }
    buf[pos++] = u;
    this.pos = pos;
    return this;
  }

  /** A non-negative safe integer as an unsigned varint (protobuf's uint64, no zigzag). */
  uvarlong(v: number): this {
    if (v < TWO_POW_32) return this.uvarint(v);
    assert(Number.isSafeInteger(v), `uvarlong value ${v} is not a safe integer`);
    const buf = this.buf;
    let pos = this.pos;
    // Division, not shifts: v exceeds 32 bits here.
    let rest = v;
    while (rest >= 0x80) {
      const next = Math.floor(rest / 128);
      buf[pos++] = (rest - next * 128) | 0x80;
      rest = next;
    }
    buf[pos++] = rest;
    this.pos = pos;
    return this;
  }

  /** A safe integer as protobuf's int64 (see sizeOfInt64Varint): negatives as 10 bytes. */
  int64Varint(v: number): this {
    if (v >= 0) return this.uvarlong(v);
    assert(Number.isSafeInteger(v), `int64 value ${v} is not a safe integer`);
    // Two's complement in two 32-bit halves: hi is negative, so every group carries on to the 10th byte.
    const hi = Math.floor(v / TWO_POW_32);
    const lo = v - hi * TWO_POW_32;
    const buf = this.buf;
    let pos = this.pos;
    for (let shift = 0; shift < 28; shift += 7) buf[pos++] = ((lo >>> shift) & 0x7f) | 0x80;
    buf[pos++] = ((lo >>> 28) & 0x0f) | ((hi & 0x07) << 4) | 0x80;
    for (let shift = 3; shift < 31; shift += 7) buf[pos++] = ((hi >>> shift) & 0x7f) | 0x80;
    buf[pos++] = (hi >>> 31) & 0x01;
    this.pos = pos;
    return this;
  }

  /** An int32 as a zigzag varint. */
  varint(v: number): this {
    return this.uvarint((v << 1) ^ (v >> 31));
  }

  /** A safe integer as a zigzag varlong. */
  varlong(v: number): this {
    if (v === (v | 0)) return this.varint(v);
    assert(Number.isSafeInteger(v), `varlong value ${v} is not a safe integer`);
    const u = v >= 0 ? v : -v - 1;
    const buf = this.buf;
    let pos = this.pos;
    // Low group: six bits of u above the sign bit. Division, not shifts: u exceeds 32 bits here.
    let rest = Math.floor(u / 64);
    buf[pos++] = ((u - rest * 64) * 2 + (v < 0 ? 1 : 0)) | (rest > 0 ? 0x80 : 0);
    while (rest > 0) {
      const next = Math.floor(rest / 128);
      buf[pos++] = (rest - next * 128) | (next > 0 ? 0x80 : 0);
      rest = next;
    }
    this.pos = pos;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** `s` as UTF-8, `byteLength` being sizeOfUtf8(s). */
  utf8(s: string, byteLength: number): this {
    const buf = this.buf;
    let pos = this.pos;
    if (byteLength === s.length) {
      // All ASCII, as header keys nearly always are: cheaper than a subarray and encodeInto.
      for (let i = 0; i < s.length; i++) buf[pos++] = s.charCodeAt(i);
    } else {
      const { written } = utf8Encoder.encodeInto(s, buf.subarray(pos, pos + byteLength));
      assert(written === byteLength, `utf-8 wrote ${written} bytes, sized ${byteLength}`);
      pos += byteLength;
    }
    this.pos = pos;
    return this;
  }
}

export class Reader {
  readonly buf: Uint8Array;
  readonly view: DataView;
  pos: number;
  /** One past the last byte this reader may read. */
  readonly end: number;

  constructor(buf: Uint8Array, pos = 0, end = buf.length) {
    assert(pos >= 0 && pos <= end && end <= buf.length, `reader range [${pos}, ${end}) outside ${buf.length} bytes`);
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = pos;
    this.end = end;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): void {
    if (this.end - this.pos < n) {
      throw corrupt(`truncated: needed ${n} bytes at ${this.pos}, ${this.end - this.pos} left`);
    }
  }

  int8(): number {
    this.need(1);
    return (this.buf[this.pos++]! << 24) >> 24;
  }

  int16(): number {
    this.need(2);
    const v = this.view.getInt16(this.pos);
    this.pos += 2;
    return v;
  }

  int32(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos);
    this.pos += 4;
    return v;
  }

  uint32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  /** A signed 64-bit value; CORRUPT_RECORD when it lies beyond ±(2^53 - 1). */
  int64(): number {
    this.need(8);
    const v = this.view.getInt32(this.pos) * TWO_POW_32 + this.view.getUint32(this.pos + 4);
    if (!Number.isSafeInteger(v)) throw corrupt(`int64 at ${this.pos} is beyond 2^53`);
    this.pos += 8;
    return v;
  }

  /** An unsigned varint of at most 5 bytes (32 bits). */
  uvarint(): number {
    const buf = this.buf;
    const end = this.end;
    let pos = this.pos;
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      if (pos >= end) throw corrupt(`truncated varint at ${this.pos}`);
      const b = buf[pos++]!;
      if (shift === 28) {
        if (b > 0x0f) throw corrupt(`varint at ${this.pos} is longer than 32 bits`);
        v |= b << 28;
        break;
      }
      v |= (b & 0x7f) << shift;
      if (b < 0x80) break;
    }
    this.pos = pos;
    return v >>> 0;
  }

  /** A zigzag varint: an int32. */
  varint(): number {
    // Fast path: one byte, as for most lengths and deltas.
    const pos = this.pos;
    if (pos < this.end) {
      const b = this.buf[pos]!;
      if (b < 0x80) {
        this.pos = pos + 1;
        return (b >>> 1) ^ -(b & 1);
      }
    }
    const u = this.uvarint();
    return (u >>> 1) ^ -(u & 1);
  }

  /** A zigzag varlong of at most 10 bytes; CORRUPT_RECORD when it lies beyond ±(2^53 - 1). */
  varlong(): number {
    const buf = this.buf;
    const end = this.end;
    const start = this.pos;
    let pos = start;
    if (pos >= end) throw corrupt(`truncated varlong at ${start}`);
    let b = buf[pos++]!;
    const negative = (b & 1) === 1;
    // u = zigzag >> 1, accumulated in float arithmetic: exact while below 2^53, checked after.
    let u = (b & 0x7f) >>> 1;
    let scale = 64;
    while (b >= 0x80) {
      if (pos - start === 10) throw corrupt(`varlong at ${start} is longer than 10 bytes`);
      if (pos >= end) throw corrupt(`truncated varlong at ${start}`);
      b = buf[pos++]!;
      u += (b & 0x7f) * scale;
      scale *= 128;
    }
    const v = negative ? -u - 1 : u;
    if (!Number.isSafeInteger(v)) throw corrupt(`varlong at ${start} is beyond 2^53`);
    this.pos = pos;
    return v;
  }

  /** A view (no copy) of the next `n` bytes. */
  bytes(n: number): Uint8Array {
    if (n < 0) throw corrupt(`negative length ${n} at ${this.pos}`);
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}
