/**
 * The central's reading of a mirror target's partition log, for central.ts: what a send's payload
 * holds (inflated under a hard cap, split, every batch checked), where the newest stamped batch
 * lies (the position, rebuilt from the log), and which central offset a source offset maps to.
 *
 * The newest stamped batch is found from the log's end backwards, one segment at a time: a target
 * holds only stamped batches and the Raft control batches of its leaders, so the newest segment
 * almost always has one. Only committed batches count (below the high watermark): a batch that a
 * leader change may still cut is not part of the position.
 *
 * Offset translation is a binary search over central offsets: stamps grow with central offsets,
 * so "the first stamped batch whose source range ends after s" is monotone in the central offset
 * probed. Each probe reads one batch (`log.read` always returns at least one whole batch).
 *
 * @example
 *   const { batches, headers } = unpackSend(payload, "gzip", 64 << 20, 1 << 20);
 *   const newest = await newestStampedBatch(log);       // { base, end, from, to } or null
 *   const offset = await centralOffsetFor(log, newest!, 1234);
 */
import { gunzipSync } from "node:zlib";
import { TributaryError } from "../errors.ts";
import type { PartitionLog } from "../storage/log.ts";
import { readBatchHeader, splitBatches, verifyBatchCrc, type BatchHeader } from "../storage/record-batch.ts";
import { readStamp } from "./stamp.ts";

/** A stamped batch of a target log: central offsets [base, end), source offsets [from, to). */
export interface StampedBatch {
  readonly base: number;
  readonly end: number;
  readonly from: number;
  readonly to: number;
}

export type SendCompression = "none" | "gzip";

/** A header as stored in a target log (baseOffset is the central offset): its stamped view, or null. */
export function stampedBatchOf(h: BatchHeader): StampedBatch | null {
  const s = readStamp(h);
  return s ? { base: h.baseOffset, end: h.baseOffset + h.lastOffsetDelta + 1, from: s.from, to: s.to } : null;
}

/**
 * The batches of one send, inflated (at most `maxInflatedBytes`: a zip bomb gets RECORD_TOO_LARGE)
 * and checked: framing (whole batches only) and CRC (CORRUPT_RECORD), each batch stamped with its own baseOffset, the
 * source offset (INVALID_REQUEST), and within the target's max.message.bytes (RECORD_TOO_LARGE).
 */
export function unpackSend(payload: Uint8Array, compression: SendCompression, maxInflatedBytes: number, maxMessageBytes: number): { batches: Uint8Array[]; headers: BatchHeader[]; bytes: number } {
  const raw = compression === "gzip" ? inflate(payload, maxInflatedBytes) : payload;
  const batches = splitBatches(raw);
  const whole = batches.reduce((n, b) => n + b.length, 0);
  if (whole !== raw.length) throw new TributaryError("CORRUPT_RECORD", `a mirror send's payload ends in a partial batch (${raw.length - whole} bytes after the last whole one)`);
  const headers = batches.map((b) => {
    const h = readBatchHeader(b);
    if (b.length > maxMessageBytes) throw new TributaryError("RECORD_TOO_LARGE", `mirrored batch at source offset ${h.baseOffset} is ${b.length} bytes, over the target's max.message.bytes ${maxMessageBytes}`);
    if (!verifyBatchCrc(b)) throw new TributaryError("CORRUPT_RECORD", `mirrored batch at source offset ${h.baseOffset} fails its CRC-32C`);
    const stamp = readStamp(h);
    // baseOffset lies outside the CRC: the stamp (inside it) must agree with it.
    if (!h.isControl && stamp?.from !== h.baseOffset) throw new TributaryError("INVALID_REQUEST", `batch at source offset ${h.baseOffset} carries no mirror stamp of that offset (stamp the batch before sending it)`);
    return h;
  });
  return { batches, headers, bytes: raw.length };
}

function inflate(payload: Uint8Array, maxBytes: number): Uint8Array {
  let out: Uint8Array;
  try {
    out = gunzipSync(payload, { maxOutputLength: maxBytes });
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (e instanceof RangeError || code === "ERR_BUFFER_TOO_LARGE") throw tooLarge(maxBytes, e);
    throw new TributaryError("CORRUPT_RECORD", `a mirror send's payload is not gzip: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  // A runtime that ignored maxOutputLength still never gets past here with more.
  if (out.length > maxBytes) throw tooLarge(maxBytes, null);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

function tooLarge(maxBytes: number, cause: unknown): TributaryError {
  return new TributaryError("RECORD_TOO_LARGE", `a mirror send inflates past ${maxBytes} bytes (grpc.max.message.bytes x ${INFLATE_FACTOR}): refused`, { cause });
}

/** A send may inflate to this many times grpc.max.message.bytes (telemetry gzips about 6:1). */
export const INFLATE_FACTOR = 8;

/** The newest committed stamped batch of a log, scanning back from its newest segment; null if it has none. */
export async function newestStampedBatch(log: PartitionLog): Promise<StampedBatch | null> {
  const hw = log.highWatermark;
  const bases = log.segmentBaseOffsets;
  for (let k = bases.length - 1; k >= 0; k--) {
    const upTo = Math.min(hw, bases[k + 1] ?? Infinity);
    let newest: StampedBatch | null = null;
    await log.scanBatchHeaders(bases[k]!, (h) => {
      if (h.baseOffset + h.lastOffsetDelta >= upTo) return;
      newest = stampedBatchOf(h) ?? newest;
    });
    if (newest) return newest;
  }
  return null;
}

/**
 * The newest committed stamped batch of a log, kept up to date by scanning only what was
 * committed since the last look (the retention floor of every replica, leader or not). Committed
 * batches never change: compaction keeps headers and stamps, and retention deletes only below the
 * floor this gives, so what it found stays true or is replaced by something newer.
 */
export class StampedTail {
  private scannedTo: number | null = null;
  private newest: StampedBatch | null = null;
  private running: Promise<StampedBatch | null> | null = null;

  constructor(private readonly log: PartitionLog) {}

  refresh(): Promise<StampedBatch | null> {
    this.running ??= this.scan().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async scan(): Promise<StampedBatch | null> {
    const hw = this.log.highWatermark;
    if (this.scannedTo === null) {
      this.newest = await newestStampedBatch(this.log);
    } else if (hw > this.scannedTo) {
      await this.log.scanBatchHeaders(Math.max(this.scannedTo, this.log.logStartOffset), (h) => {
        if (h.baseOffset + h.lastOffsetDelta < hw) this.newest = stampedBatchOf(h) ?? this.newest;
      });
    }
    this.scannedTo = Math.max(this.scannedTo ?? 0, hw);
    return this.newest;
  }
}

/**
 * The central offset at which a consumer continues that has read the source up to `sourceOffset`
 * (the next source offset it reads), for a source offset below the position (`newest.to`): inside
 * a stamped batch, the record with the same offset delta; between batches, the next batch's start.
 */
export async function centralOffsetFor(log: PartitionLog, newest: StampedBatch, sourceOffset: number): Promise<number> {
  if (sourceOffset >= newest.to) return newest.end;
  // Smallest central offset c whose first stamped batch at or after c ends past sourceOffset.
  let lo = log.logStartOffset;
  let hi = Math.max(lo, newest.base);
  let found: StampedBatch = newest;
  while (lo < hi) {
    const mid = lo + Math.floor((hi - lo) / 2);
    const b = (await stampedFrom(log, mid, newest.end)) ?? newest;
    if (b.to > sourceOffset) {
      found = b;
      hi = Math.max(lo, Math.min(mid, b.base));
    } else {
      lo = b.end;
    }
  }
  const b = lo === found.base ? found : ((await stampedFrom(log, lo, newest.end)) ?? newest);
  return sourceOffset >= b.from ? b.base + (sourceOffset - b.from) : b.base;
}

/** The first stamped batch holding central offset `offset` or after it, below `end`; null if none. */
async function stampedFrom(log: PartitionLog, offset: number, end: number): Promise<StampedBatch | null> {
  let at = Math.max(offset, log.logStartOffset);
  while (at < end) {
    const r = await log.read(at, 1);
    if (r.batches.length === 0) return null;
    for (const batch of splitBatches(r.batches)) {
      const h = readBatchHeader(batch);
      const s = stampedBatchOf(h);
      if (s) return s;
      at = h.baseOffset + h.lastOffsetDelta + 1;
    }
  }
  return null;
}
