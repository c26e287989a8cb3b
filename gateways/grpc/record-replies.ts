/**
 * Fetch and Subscribe replies written straight from decoded records into protobuf wire bytes,
 * without building protobuf-es messages: the sizes are computed first, then one buffer is
 * allocated and filled, so each key and value (views into the segment read buffer) is copied
 * once. protobuf-es's generic writer builds an object per record and header, grows its buffer by
 * doubling, shifts nested messages to fit their length prefix and copies the result out; on a
 * catch-up read that garbage outran the collector (bench/RESULTS.md, "(e) catch-up"). The bytes
 * are those toBinary writes (test/grpc-record-replies.test.ts compares them), so clients decode
 * them with the generated schemas.
 *
 * Grammar (proto/tributary/v1/records.proto, consumer.proto; fields in number order, a proto3
 * scalar absent when zero or empty, an `optional` one present whenever it is set):
 *
 *   SubscribeResponse = { 1: StoredRecord } [2: next_offset int64] [3: high_watermark int64]
 *   FetchResponse     = { 1: StoredRecord } [2: next_offset] [3: high_watermark] [4: log_start_offset]
 *   StoredRecord      = [1: offset int64] [2: timestamp_ms int64] [3: key bytes, unless null]
 *                       [4: value bytes, unless null] { 5: Header }
 *   Header            = [1: key string, unless ""] [2: value bytes, unless null]
 *
 * A Subscribe read is cut into messages of at most `maxRecords` records and `maxBytes` encoded
 * bytes each (grpc.subscribe.max.bytes); a record that alone is larger still goes out, alone.
 *
 * @example
 *   for (const bytes of subscribeResponses(r.records, r.nextOffset, r.highWatermark, { maxRecords: 500, maxBytes: 256 * 1024 })) await send(bytes);
 */
import { assert } from "../../src/errors.ts";
import { sizeOfUtf8, Writer } from "../../src/storage/bytes.ts";
import type { DecodedRecord, RecordHeader } from "../../src/storage/record-batch.ts";
import { lengthDelimitedSize, varintFieldSize, WIRE_LEN, writeVarintField } from "./proto-wire.ts";

export interface MessageLimits {
  maxRecords: number;
  /** Encoded bytes of one message; exceeded only by a message of one record. */
  maxBytes: number;
}

const RECORDS_TAG = (1 << 3) | WIRE_LEN;
const KEY_TAG = (3 << 3) | WIRE_LEN;
const VALUE_TAG = (4 << 3) | WIRE_LEN;
const HEADERS_TAG = (5 << 3) | WIRE_LEN;
const HEADER_KEY_TAG = (1 << 3) | WIRE_LEN;
const HEADER_VALUE_TAG = (2 << 3) | WIRE_LEN;

/** Optional bytes: present (even empty) unless null. */
function optionalBytesSize(b: Uint8Array | null): number {
  return b === null ? 0 : lengthDelimitedSize(b.length);
}

function headerSize(h: RecordHeader, keyBytes: number): number {
  return (keyBytes > 0 ? lengthDelimitedSize(keyBytes) : 0) + optionalBytesSize(h.value);
}

/** Bytes of one StoredRecord message, without its own tag and length. */
export function storedRecordSize(r: DecodedRecord): number {
  let n = varintFieldSize(r.offset) + varintFieldSize(r.timestamp) + optionalBytesSize(r.key) + optionalBytesSize(r.value);
  for (const h of r.headers) n += lengthDelimitedSize(headerSize(h, sizeOfUtf8(h.key)));
  return n;
}

function writeOptionalBytes(w: Writer, tag: number, b: Uint8Array | null): void {
  if (b !== null) w.int8(tag).uvarint(b.length).bytes(b);
}

function writeStoredRecord(w: Writer, r: DecodedRecord, size: number): void {
  w.int8(RECORDS_TAG).uvarint(size);
  const start = w.pos;
  writeVarintField(w, 1, r.offset);
  writeVarintField(w, 2, r.timestamp);
  writeOptionalBytes(w, KEY_TAG, r.key);
  writeOptionalBytes(w, VALUE_TAG, r.value);
  for (const h of r.headers) {
    const keyBytes = sizeOfUtf8(h.key);
    w.int8(HEADERS_TAG).uvarint(headerSize(h, keyBytes));
    if (keyBytes > 0) w.int8(HEADER_KEY_TAG).uvarint(keyBytes).utf8(h.key, keyBytes);
    writeOptionalBytes(w, HEADER_VALUE_TAG, h.value);
  }
  assert(w.pos - start === size, `stored record ${r.offset} wrote ${w.pos - start} bytes, sized ${size}`);
}

/** records[start, end) as field 1, then `tail[i]` as the int64 field i + 2. */
function encodeReply(records: readonly DecodedRecord[], sizes: Int32Array, start: number, end: number, tail: readonly number[]): Buffer {
  let total = 0;
  for (let i = start; i < end; i++) total += lengthDelimitedSize(sizes[i]!);
  for (const v of tail) total += varintFieldSize(v);
  // Unzeroed: every byte is written below, which the final assert checks.
  const w = new Writer(Buffer.allocUnsafe(total));
  for (let i = start; i < end; i++) writeStoredRecord(w, records[i]!, sizes[i]!);
  for (let i = 0; i < tail.length; i++) writeVarintField(w, i + 2, tail[i]!);
  assert(w.pos === total, `reply encoded to ${w.pos} bytes, sized ${total}`);
  return w.buf as Buffer;
}

function sizesOf(records: readonly DecodedRecord[]): Int32Array {
  const sizes = new Int32Array(records.length);
  for (let i = 0; i < records.length; i++) sizes[i] = storedRecordSize(records[i]!);
  return sizes;
}

/** A FetchResponse's bytes. */
export function encodeFetchResponse(records: readonly DecodedRecord[], nextOffset: number, highWatermark: number, logStartOffset: number): Buffer {
  return encodeReply(records, sizesOf(records), 0, records.length, [nextOffset, highWatermark, logStartOffset]);
}

/**
 * The SubscribeResponse messages of one read, in order, each within `limits`; every message but
 * the last says the offset after its own last record as next_offset, the last says `nextOffset`
 * (which may lie past the last record: compaction gaps, control batches). None for no records.
 * A generator, so one message at a time is held while the caller waits to send it.
 */
export function* subscribeResponses(records: readonly DecodedRecord[], nextOffset: number, highWatermark: number, limits: MessageLimits): Generator<Buffer> {
  const sizes = sizesOf(records);
  // next_offset of any message is at most `nextOffset`, so this bounds every message's tail.
  const tailBytes = varintFieldSize(nextOffset) + varintFieldSize(highWatermark);
  let start = 0;
  while (start < records.length) {
    let end = start + 1;
    let bytes = tailBytes + lengthDelimitedSize(sizes[start]!);
    while (end < records.length && end - start < limits.maxRecords) {
      const more = lengthDelimitedSize(sizes[end]!);
      if (bytes + more > limits.maxBytes) break;
      bytes += more;
      end++;
    }
    const next = end === records.length ? nextOffset : records[end - 1]!.offset + 1;
    yield encodeReply(records, sizes, start, end, [next, highWatermark]);
    start = end;
  }
}
