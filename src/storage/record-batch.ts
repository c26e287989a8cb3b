/**
 * Kafka RecordBatch v2 (magic 2): the one byte format of the partition log, the Raft log, fetch
 * responses and mirror links. A record is encoded once here and read back from the same bytes.
 *
 * Batch layout (big-endian; offsets in bytes from the start of the batch):
 *
 *    0  baseOffset            int64   offset of the first record                  ┐ outside
 *    8  batchLength           int32   bytes after this field (batch = 12 + this)  │ the CRC
 *   12  partitionLeaderEpoch  int32   leader epoch (later: Raft term) at append   ┘
 *   16  magic                 int8    2
 *   17  crc                   uint32  CRC-32C of bytes 21 .. end of batch
 *   21  attributes            int16   bits 0-2 codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd),
 *                                     bit 3 timestamp type (1 = log append time),
 *                                     bit 4 transactional, bit 5 control
 *   23  lastOffsetDelta       int32   offset delta of the last offset the batch covers
 *   27  baseTimestamp         int64   first record's timestamp (ms since the epoch)
 *   35  maxTimestamp          int64   largest record timestamp
 *   43  producerId            int64   -1 without an idempotent producer
 *   51  producerEpoch         int16   -1 likewise
 *   53  baseSequence          int32   -1 likewise
 *   57  recordCount           int32
 *   61  records               recordCount records; with a codec, these bytes compressed
 *
 * Record layout (varint/varlong: zigzag base-128, see bytes.ts):
 *
 *   length varint (bytes after this field) · attributes int8 (unused, 0) · timestampDelta varlong
 *   · offsetDelta varint · keyLength varint (-1 = null) · key · valueLength varint (-1 = null)
 *   · value · headerCount varint · headerCount × (keyLength varint · key UTF-8
 *   · valueLength varint (-1 = null) · value)
 *
 * Why baseOffset and partitionLeaderEpoch sit outside the CRC: the producer cannot know them. The
 * log assigns the offset and stamps the leader epoch when it appends, in place
 * (setBatchBaseOffset, setPartitionLeaderEpoch), without re-encoding or re-checksumming; records
 * carry only deltas from baseOffset. So the CRC a producer computed still protects everything it
 * wrote, end to end. partitionLeaderEpoch will hold the Raft term of the entry.
 *
 * Compression covers the records only (from byte 61), never the header, so the log can read
 * offsets and counts without inflating. gzip (codec 1) is supported through node:zlib, which Bun,
 * Deno and Node all provide; snappy, lz4 and zstd are refused as CORRUPT_RECORD "unsupported".
 *
 * Everything read is distrusted: readBatchHeader, decodeRecords and splitBatches throw only
 * TributaryError("CORRUPT_RECORD") on bad bytes. Misuse by the caller (an offset delta that goes
 * backwards, say) is a bug and fails an assert instead.
 *
 * @example
 *   const batch = encodeBatch([{ key: null, value: bytes }], { timestamp: Date.now() });
 *   setBatchBaseOffset(batch, 42);                    // the log, on append
 *   verifyBatchCrc(batch);                            // true: the CRC does not cover the offset
 *   decodeRecords(batch)[0].offset;                   // 42
 */
import { gunzipSync, gzipSync } from "node:zlib";
import { TributaryError, assert } from "../errors.ts";
import { Reader, Writer, sizeOfUtf8, sizeOfVarint, sizeOfVarlong } from "./bytes.ts";
import { crc32c } from "./crc32c.ts";

/** A record header: Kafka headers have string keys and byte values (null allowed). */
export interface RecordHeader {
  key: string;
  value: Uint8Array | null;
}

/** What a producer hands over: the codec assigns offsets and timestamp deltas. */
export interface RecordInput {
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers?: RecordHeader[];
  /** Milliseconds since the epoch; defaults to the batch's `timestamp` option. */
  timestamp?: number;
  /**
   * Offset delta from the batch's baseOffset; defaults to the record's index. Compaction passes
   * the original deltas to re-encode a batch with gaps. Must be strictly increasing in a batch.
   */
  offsetDelta?: number;
}

/** A record as read back: absolute offset and timestamp. */
export interface DecodedRecord {
  offset: number;
  timestamp: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: RecordHeader[];
}

export type Compression = "none" | "gzip";

/** The fixed 61-byte batch header, decoded. Offsets, ids and timestamps are JS numbers (< 2^53). */
export interface BatchHeader {
  baseOffset: number;
  /** Bytes after the batchLength field: the whole batch is `batchLength + 12` bytes. */
  batchLength: number;
  partitionLeaderEpoch: number;
  magic: number;
  crc: number;
  attributes: number;
  compression: Compression;
  /** attributes bit 3: "log-append" means every record's timestamp is maxTimestamp. */
  timestampType: "create" | "log-append";
  /** attributes bit 4: a transactional batch. */
  isTransactional: boolean;
  /** attributes bit 5: a control batch. */
  isControl: boolean;
  lastOffsetDelta: number;
  firstTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
}

export interface EncodeOptions {
  baseOffset?: number; // default 0 (the log rewrites it on append)
  partitionLeaderEpoch?: number; // default 0
  producerId?: number; // default -1
  producerEpoch?: number; // default -1
  baseSequence?: number; // default -1
  compression?: Compression; // default "none"
  /** Timestamp for records that carry none; default Date.now() is NOT used: callers pass it. */
  timestamp: number;
  /**
   * Offset delta of the last offset the batch covers; default the last record's delta. Compaction
   * keeps the original value when it drops trailing records, so offsets are never reused. Must be
   * >= the last record's delta; required for an empty batch.
   */
  lastOffsetDelta?: number;
  /** attributes bit 4; default false. Compaction keeps the original batch's flags. */
  isTransactional?: boolean;
  /** attributes bit 5; default false. */
  isControl?: boolean;
}

export interface DecodeOptions {
  /** Check the CRC first and throw CORRUPT_RECORD on a mismatch; default false (the log checks). */
  verifyCrc?: boolean;
  /** Largest decompressed records section accepted; default MAX_UNCOMPRESSED_BYTES. */
  maxUncompressedBytes?: number;
}

/** Size of the fixed header, up to and including recordCount. */
export const BATCH_HEADER_BYTES = 61;
/** Bytes before the batchLength-counted part: baseOffset (8) + batchLength (4). */
export const BATCH_LENGTH_PREFIX_BYTES = 12;
/** First byte the CRC covers (attributes). */
export const CRC_START = 21;
/**
 * Default bound on a decompressed records section: a gzip bomb of a few KiB could otherwise
 * inflate to gigabytes. 64 MiB is 64 times the default max.message.bytes, far above any ratio
 * real telemetry compresses by, and small enough for a gateway-class machine.
 */
export const MAX_UNCOMPRESSED_BYTES = 64 * 1024 * 1024;

const MAGIC = 2;
const MIN_BATCH_LENGTH = BATCH_HEADER_BYTES - BATCH_LENGTH_PREFIX_BYTES; // 49
/** attributes, timestampDelta, offsetDelta, keyLength, valueLength, headerCount: 1 byte each at least. */
const MIN_RECORD_BODY_BYTES = 6;
const CODEC_MASK = 0x07;
const CODEC_GZIP = 1;
const ATTR_LOG_APPEND_TIME = 0x08;
const ATTR_TRANSACTIONAL = 0x10;
const ATTR_CONTROL = 0x20;
const INT32_MAX = 0x7fffffff;
const UNSUPPORTED_CODECS = ["", "", "snappy", "lz4", "zstd"] as const;

const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function corrupt(message: string, cause?: unknown): TributaryError {
  return new TributaryError("CORRUPT_RECORD", `record batch: ${message}`, cause === undefined ? undefined : { cause });
}

// ---- encode -------------------------------------------------------------------------------------

/** Record body sizes between the sizing and the writing pass: one buffer reused, not one per call. */
let sizeScratch = new Int32Array(256);

/**
 * Encode records into one RecordBatch v2 with a valid CRC-32C. Offsets are baseOffset + index
 * (or + offsetDelta). The exact size is computed first so the batch is written into one
 * allocation (two with gzip: the plain records, then the batch around their compressed form).
 *
 * @example
 *   encodeBatch([{ key: enc.encode("k"), value: enc.encode("v") }], { timestamp: 1795300000000 })
 */
export function encodeBatch(records: readonly RecordInput[], options: EncodeOptions): Uint8Array {
  const n = records.length;
  const defaultTs = options.timestamp;
  checkTimestamp(defaultTs);
  const baseTs = n > 0 ? (records[0]!.timestamp ?? defaultTs) : defaultTs;
  let maxTs = baseTs;
  if (sizeScratch.length < n) sizeScratch = new Int32Array(Math.max(n, sizeScratch.length * 2));
  const sizes = sizeScratch;

  let recordsBytes = 0;
  let prevDelta = -1;
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    const ts = r.timestamp ?? defaultTs;
    if (ts !== defaultTs) checkTimestamp(ts);
    if (ts > maxTs) maxTs = ts;
    const delta = r.offsetDelta ?? i;
    assert(delta > prevDelta && delta <= INT32_MAX && Number.isInteger(delta), `offset delta ${delta} of record ${i} must be an int32 above ${prevDelta}`);
    prevDelta = delta;
    const size = recordBodySize(r, ts - baseTs, delta);
    sizes[i] = size;
    recordsBytes += sizeOfVarint(size) + size;
  }
  const lastOffsetDelta = options.lastOffsetDelta ?? prevDelta;
  assert(n > 0 || options.lastOffsetDelta !== undefined, "an empty batch needs lastOffsetDelta: which offsets does it cover?");
  assert(Number.isInteger(lastOffsetDelta) && lastOffsetDelta >= prevDelta && lastOffsetDelta <= INT32_MAX, `lastOffsetDelta ${lastOffsetDelta} below the last record's delta ${prevDelta}`);

  const compression = options.compression ?? "none";
  let batch: Uint8Array;
  if (compression === "none") {
    batch = allocBatch(recordsBytes);
    writeRecords(new Writer(batch, BATCH_HEADER_BYTES), records, sizes, baseTs, defaultTs, batch.length);
  } else {
    const plain = new Uint8Array(recordsBytes);
    writeRecords(new Writer(plain), records, sizes, baseTs, defaultTs, plain.length);
    const packed = gzipSync(plain);
    batch = allocBatch(packed.length);
    batch.set(packed, BATCH_HEADER_BYTES);
  }

  let attributes = compression === "gzip" ? CODEC_GZIP : 0;
  if (options.isTransactional) attributes |= ATTR_TRANSACTIONAL;
  if (options.isControl) attributes |= ATTR_CONTROL;
  new Writer(batch)
    .int64(options.baseOffset ?? 0)
    .int32(batch.length - BATCH_LENGTH_PREFIX_BYTES)
    .int32(options.partitionLeaderEpoch ?? 0)
    .int8(MAGIC)
    .uint32(0) // crc, below
    .int16(attributes)
    .int32(lastOffsetDelta)
    .int64(baseTs)
    .int64(maxTs)
    .int64(options.producerId ?? -1)
    .int16(options.producerEpoch ?? -1)
    .int32(options.baseSequence ?? -1)
    .int32(n);
  new DataView(batch.buffer, batch.byteOffset, batch.byteLength).setUint32(17, crc32c(batch, CRC_START));
  return batch;
}

function allocBatch(recordsBytes: number): Uint8Array {
  const total = BATCH_HEADER_BYTES + recordsBytes;
  if (total > INT32_MAX) {
    throw new TributaryError("RECORD_TOO_LARGE", `a record batch of ${total} bytes exceeds the format's 2 GiB limit`);
  }
  return new Uint8Array(total);
}

function checkTimestamp(ts: number): void {
  if (!Number.isSafeInteger(ts)) {
    throw new TributaryError("INVALID_REQUEST", `record timestamp must be an integer of milliseconds, got ${String(ts)}`);
  }
}

function lengthFieldSize(b: Uint8Array | null): number {
  return b === null ? 1 : sizeOfVarint(b.length) + b.length;
}

/** Bytes of one record after its length field. */
function recordBodySize(r: RecordInput, tsDelta: number, offsetDelta: number): number {
  let size = 1 + sizeOfVarlong(tsDelta) + sizeOfVarint(offsetDelta) + lengthFieldSize(r.key) + lengthFieldSize(r.value);
  const headers = r.headers;
  const hn = headers === undefined ? 0 : headers.length;
  size += sizeOfVarint(hn);
  for (let j = 0; j < hn; j++) {
    const h = headers![j]!;
    const kl = sizeOfUtf8(h.key);
    size += sizeOfVarint(kl) + kl + lengthFieldSize(h.value);
  }
  return size;
}

function writeRecords(w: Writer, records: readonly RecordInput[], sizes: Int32Array, baseTs: number, defaultTs: number, end: number): void {
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    w.varint(sizes[i]!);
    const start = w.pos;
    w.int8(0);
    w.varlong((r.timestamp ?? defaultTs) - baseTs);
    w.varint(r.offsetDelta ?? i);
    writeNullableBytes(w, r.key);
    writeNullableBytes(w, r.value);
    const headers = r.headers;
    const hn = headers === undefined ? 0 : headers.length;
    w.varint(hn);
    for (let j = 0; j < hn; j++) {
      const h = headers![j]!;
      const kl = sizeOfUtf8(h.key);
      w.varint(kl);
      w.utf8(h.key, kl);
      writeNullableBytes(w, h.value);
    }
    assert(w.pos - start === sizes[i], `record ${i} wrote ${w.pos - start} bytes, sized ${sizes[i]}`);
  }
  assert(w.pos === end, `records wrote ${w.pos} bytes of ${end}`);
}

function writeNullableBytes(w: Writer, b: Uint8Array | null): void {
  if (b === null) {
    w.varint(-1);
  } else {
    w.varint(b.length);
    w.bytes(b);
  }
}

// ---- header, framing, in-place rewrites --------------------------------------------------------

/**
 * Decode the fixed header at `pos`. Throws TributaryError("CORRUPT_RECORD") when fewer than
 * BATCH_HEADER_BYTES are available, magic is not 2, the codec is unsupported, or lengths are
 * impossible. Needs only the header's bytes, not the whole batch. Does not check the CRC.
 */
export function readBatchHeader(buf: Uint8Array, pos = 0): BatchHeader {
  if (!(pos >= 0 && buf.length - pos >= BATCH_HEADER_BYTES)) {
    throw corrupt(`header needs ${BATCH_HEADER_BYTES} bytes at ${pos}, ${Math.max(0, buf.length - pos)} available`);
  }
  const magic = buf[pos + 16]!;
  if (magic !== MAGIC) throw corrupt(`magic ${magic} at ${pos + 16}, only RecordBatch v2 (magic 2) is supported`);
  const r = new Reader(buf, pos, pos + BATCH_HEADER_BYTES);
  const baseOffset = r.int64();
  const batchLength = r.int32();
  if (batchLength < MIN_BATCH_LENGTH) throw corrupt(`batchLength ${batchLength} at ${pos + 8} is below ${MIN_BATCH_LENGTH}`);
  const partitionLeaderEpoch = r.int32();
  r.int8();
  const crc = r.uint32();
  const attributes = r.int16();
  const compression = compressionOf(attributes);
  const lastOffsetDelta = r.int32();
  const firstTimestamp = r.int64();
  const maxTimestamp = r.int64();
  const producerId = r.int64();
  const producerEpoch = r.int16();
  const baseSequence = r.int32();
  const recordCount = r.int32();
  if (recordCount < 0) throw corrupt(`negative record count ${recordCount}`);
  // Offset deltas are distinct and at most lastOffsetDelta, so there cannot be more records.
  if (recordCount > lastOffsetDelta + 1) throw corrupt(`${recordCount} records cannot fit in offset deltas 0..${lastOffsetDelta}`);
  if (!Number.isSafeInteger(baseOffset + lastOffsetDelta)) throw corrupt(`last offset beyond 2^53`);
  return {
    baseOffset,
    batchLength,
    partitionLeaderEpoch,
    magic,
    crc,
    attributes,
    compression,
    timestampType: attributes & ATTR_LOG_APPEND_TIME ? "log-append" : "create",
    isTransactional: (attributes & ATTR_TRANSACTIONAL) !== 0,
    isControl: (attributes & ATTR_CONTROL) !== 0,
    lastOffsetDelta,
    firstTimestamp,
    maxTimestamp,
    producerId,
    producerEpoch,
    baseSequence,
    recordCount,
  };
}

function compressionOf(attributes: number): Compression {
  const codec = attributes & CODEC_MASK;
  if (codec === 0) return "none";
  if (codec === CODEC_GZIP) return "gzip";
  const name = UNSUPPORTED_CODECS[codec];
  throw corrupt(name ? `compression codec ${codec} (${name}) is unsupported: only none and gzip` : `unknown compression codec ${codec}`);
}

/**
 * Total bytes of the batch starting at `pos` (batchLength + 12), or -1 if fewer than 12 bytes
 * remain. Throws CORRUPT_RECORD when batchLength is below the 49 bytes any batch has, so a scan
 * over zeroes cannot loop in place.
 */
export function batchSizeAt(buf: Uint8Array, pos = 0): number {
  if (buf.length - pos < BATCH_LENGTH_PREFIX_BYTES) return -1;
  const batchLength = ((buf[pos + 8]! << 24) | (buf[pos + 9]! << 16) | (buf[pos + 10]! << 8) | buf[pos + 11]!) | 0;
  if (batchLength < MIN_BATCH_LENGTH) throw corrupt(`batchLength ${batchLength} at ${pos + 8} is below ${MIN_BATCH_LENGTH}`);
  return batchLength + BATCH_LENGTH_PREFIX_BYTES;
}

/**
 * True when the stored CRC-32C of the batch starting at byte 0 matches its bytes from attributes to
 * its end (batchLength + 12). False, not an exception, when the bytes are too short to hold it.
 */
export function verifyBatchCrc(batch: Uint8Array): boolean {
  if (batch.length < BATCH_HEADER_BYTES) return false;
  const size = ((batch[8]! << 24) | (batch[9]! << 16) | (batch[10]! << 8) | batch[11]!) | 0;
  const end = size + BATCH_LENGTH_PREFIX_BYTES;
  if (size < MIN_BATCH_LENGTH || end > batch.length) return false;
  const stored = ((batch[17]! << 24) | (batch[18]! << 16) | (batch[19]! << 8) | batch[20]!) >>> 0;
  return crc32c(batch, CRC_START, end) === stored;
}

/**
 * Rewrite, in place, the fields outside the CRC's coverage: baseOffset and partitionLeaderEpoch.
 * The log calls this on append to assign offsets without re-encoding.
 */
export function setBatchBaseOffset(batch: Uint8Array, baseOffset: number): void {
  assert(batch.length >= BATCH_HEADER_BYTES, `a batch has at least ${BATCH_HEADER_BYTES} bytes, got ${batch.length}`);
  assert(Number.isSafeInteger(baseOffset) && baseOffset >= 0, `base offset ${baseOffset} must be a non-negative safe integer`);
  new Writer(batch).int64(baseOffset);
}

export function setPartitionLeaderEpoch(batch: Uint8Array, epoch: number): void {
  assert(batch.length >= BATCH_HEADER_BYTES, `a batch has at least ${BATCH_HEADER_BYTES} bytes, got ${batch.length}`);
  assert(epoch === (epoch | 0), `partition leader epoch ${epoch} must be an int32`);
  new Writer(batch, 12).int32(epoch);
}

/**
 * Split a buffer of concatenated batches into views of whole batches. A partial batch at the end
 * is left out (the caller asked for maxBytes). Throws CORRUPT_RECORD on impossible framing
 * (a batchLength below 49, or a whole batch whose magic is not 2).
 */
export function splitBatches(buf: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  for (;;) {
    const size = batchSizeAt(buf, pos);
    if (size < 0 || size > buf.length - pos) break;
    const magic = buf[pos + 16]!;
    if (magic !== MAGIC) throw corrupt(`magic ${magic} at ${pos + 16}, only RecordBatch v2 (magic 2) is supported`);
    out.push(buf.subarray(pos, pos + size));
    pos += size;
  }
  return out;
}

// ---- decode -------------------------------------------------------------------------------------

/**
 * Decode every record of one batch (decompressing gzip). `batch` must hold exactly one batch.
 * Throws CORRUPT_RECORD on bad framing: records that do not exactly fill the batch, a count that
 * does not match, offset deltas that do not increase, bad UTF-8 in a header key. Uncompressed keys,
 * values and header values are views into `batch`, not copies: copy them to keep them past the
 * buffer's reuse.
 *
 * @example
 *   for (const r of decodeRecords(batch)) console.log(r.offset, r.value);
 */
export function decodeRecords(batch: Uint8Array, options: DecodeOptions = {}): DecodedRecord[] {
  const h = readBatchHeader(batch, 0);
  const size = h.batchLength + BATCH_LENGTH_PREFIX_BYTES;
  if (batch.length !== size) {
    throw corrupt(batch.length < size ? `truncated: batch of ${size} bytes, ${batch.length} present` : `${batch.length - size} bytes after a batch of ${size}`);
  }
  if (options.verifyCrc && !verifyBatchCrc(batch)) throw corrupt(`CRC-32C mismatch in batch at offset ${h.baseOffset}`);

  let body = batch;
  let start = BATCH_HEADER_BYTES;
  if (h.compression === "gzip") {
    body = gunzip(batch.subarray(BATCH_HEADER_BYTES), options.maxUncompressedBytes ?? MAX_UNCOMPRESSED_BYTES);
    start = 0;
  }
  if (h.recordCount > (body.length - start) / (MIN_RECORD_BODY_BYTES + 1)) {
    throw corrupt(`${h.recordCount} records cannot fit in ${body.length - start} bytes`);
  }

  const r = new Reader(body, start, body.length);
  const out: DecodedRecord[] = new Array<DecodedRecord>(h.recordCount);
  const logAppendTime = h.timestampType === "log-append";
  let prevDelta = -1;
  for (let i = 0; i < h.recordCount; i++) {
    const length = r.varint();
    if (length < MIN_RECORD_BODY_BYTES || length > r.remaining) throw corrupt(`record ${i} length ${length} with ${r.remaining} bytes left`);
    const recordEnd = r.pos + length;
    r.int8(); // record attributes: unused by the format
    const tsDelta = r.varlong();
    const offsetDelta = r.varint();
    if (offsetDelta <= prevDelta || offsetDelta > h.lastOffsetDelta) {
      throw corrupt(`record ${i} offset delta ${offsetDelta} not in (${prevDelta}, ${h.lastOffsetDelta}]`);
    }
    prevDelta = offsetDelta;
    const key = readNullableBytes(r);
    const value = readNullableBytes(r);
    const headers = readHeaders(r, recordEnd);
    if (r.pos !== recordEnd) throw corrupt(`record ${i} is ${r.pos - recordEnd + length} bytes, its length says ${length}`);
    const timestamp = logAppendTime ? h.maxTimestamp : h.firstTimestamp + tsDelta;
    if (!Number.isSafeInteger(timestamp)) throw corrupt(`record ${i} timestamp beyond 2^53`);
    out[i] = { offset: h.baseOffset + offsetDelta, timestamp, key, value, headers };
  }
  if (r.pos !== body.length) throw corrupt(`${body.length - r.pos} bytes after the last of ${h.recordCount} records`);
  return out;
}

function readNullableBytes(r: Reader): Uint8Array | null {
  const n = r.varint();
  if (n === -1) return null;
  if (n < 0) throw corrupt(`length ${n} at ${r.pos}`);
  return r.bytes(n);
}

function readHeaders(r: Reader, recordEnd: number): RecordHeader[] {
  const count = r.varint();
  // Each header takes at least 2 bytes: refuse an absurd count before looping over it.
  if (count < 0 || count * 2 > recordEnd - r.pos) throw corrupt(`header count ${count} with ${recordEnd - r.pos} bytes left in the record`);
  const headers: RecordHeader[] = [];
  for (let j = 0; j < count; j++) {
    const kl = r.varint();
    if (kl < 0) throw corrupt(`header key length ${kl} at ${r.pos}`);
    const keyBytes = r.bytes(kl);
    let key: string;
    try {
      key = utf8Decoder.decode(keyBytes);
    } catch (e) {
      throw corrupt(`header key at ${r.pos - kl} is not UTF-8`, e);
    }
    headers.push({ key, value: readNullableBytes(r) });
  }
  return headers;
}

function gunzip(packed: Uint8Array, maxOutputLength: number): Uint8Array {
  let out: Uint8Array;
  try {
    out = gunzipSync(packed, { maxOutputLength });
  } catch (e) {
    throw corrupt(`gzip records do not inflate within ${maxOutputLength} bytes: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  // A plain Uint8Array view over the Buffer, so records compare and behave alike in both paths.
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}
