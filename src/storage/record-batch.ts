/**
 * CONTRACT STUB — the codec helper replaces the bodies (and adds the on-disk layout comment).
 * The exported names and types below are what the log, the broker and the gateways build against.
 */

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
}

/** Size of the fixed header, up to and including recordCount. */
export const BATCH_HEADER_BYTES = 61;
/** Bytes before the batchLength-counted part: baseOffset (8) + batchLength (4). */
export const BATCH_LENGTH_PREFIX_BYTES = 12;

/** Encode records into one RecordBatch v2 with a valid CRC-32C. Offsets are baseOffset + index. */
export function encodeBatch(_records: readonly RecordInput[], _options: EncodeOptions): Uint8Array {
  throw new Error("not implemented");
}

/**
 * Decode the fixed header at `pos`. Throws TributaryError("CORRUPT_RECORD") when fewer than
 * BATCH_HEADER_BYTES are available, magic is not 2, or lengths are impossible. Does not check the CRC.
 */
export function readBatchHeader(_buf: Uint8Array, _pos?: number): BatchHeader {
  throw new Error("not implemented");
}

/** Total bytes of the batch starting at `pos` (batchLength + 12), or -1 if fewer than 12 bytes remain. */
export function batchSizeAt(_buf: Uint8Array, _pos?: number): number {
  throw new Error("not implemented");
}

/** True when the stored CRC-32C matches the bytes from attributes to the end of the batch. */
export function verifyBatchCrc(_batch: Uint8Array): boolean {
  throw new Error("not implemented");
}

/**
 * Rewrite, in place, the fields outside the CRC's coverage: baseOffset and partitionLeaderEpoch.
 * The log calls this on append to assign offsets without re-encoding.
 */
export function setBatchBaseOffset(_batch: Uint8Array, _baseOffset: number): void {
  throw new Error("not implemented");
}
export function setPartitionLeaderEpoch(_batch: Uint8Array, _epoch: number): void {
  throw new Error("not implemented");
}

/** Decode every record of one batch (decompressing gzip). Throws CORRUPT_RECORD on bad framing. */
export function decodeRecords(_batch: Uint8Array): DecodedRecord[] {
  throw new Error("not implemented");
}

/**
 * Split a buffer of concatenated batches into views of whole batches. A partial batch at the end
 * is left out (the caller asked for maxBytes). Throws CORRUPT_RECORD on impossible framing.
 */
export function splitBatches(_buf: Uint8Array): Uint8Array[] {
  throw new Error("not implemented");
}
