/**
 * The source stamp and the central's admission rule (pure): how a mirrored batch carries its
 * source offsets into the central's log, and which batches of a send the central writes, so that
 * a replay writes nothing twice and a gap is never silent. See index.ts for why the stamp lives in
 * the batch header.
 *
 * Stamp layout: the producer fields of the RecordBatch v2 header (inside the CRC), rewritten by
 * the edge's Tributary sink before it sends; records are not touched:
 *
 *   43  producerId     int64   the source base offset (the batch's baseOffset in the edge's log)
 *   51  producerEpoch  int16   -2: MIRROR_STAMP_EPOCH (no producer has a negative epoch but -1)
 *   53  baseSequence   int32   -1: not an idempotent batch (so producer-state rebuilds skip it)
 *
 * The source offset of record i is then `producerId + offsetDelta_i`, exactly, because offset
 * deltas and lastOffsetDelta travel unchanged; the batch's central offsets are its own
 * baseOffset + the same deltas. The CRC is checked before the rewrite (a corrupt batch is
 * refused, never laundered by a fresh CRC) and recomputed after, so the central's log checks the
 * stamp like the records, end to end from the edge.
 *
 * Admission (`admitSend`), with P the central's position: the end of the newest stamped batch in
 * the target partition's log, so the next source offset it expects. P is a function of the log
 * alone, the same in memory and rebuilt after a restart or a leader change
 * (`positionFromBatches`), and it moves in the same Raft entry as the records: nothing to lose.
 * - the batches lie at or after fromOffset, in order, not overlapping, none a control batch; else INVALID_REQUEST;
 * - a batch wholly below P: already written, skipped (a whole send below P is a replay, acknowledged with P);
 * - a batch straddling P cannot come from an unchanged source (batch bounds never change at the
 *   edge; compaction keeps them): INVALID_REQUEST;
 * - fromOffset > P: accepted only if the send's `gaps` cover [P, fromOffset) (the edge lost those
 *   offsets and says so: resume.ts), else OUT_OF_ORDER_SEQUENCE (the edge re-opens the link and
 *   plans again);
 * - P unknown (the central holds nothing of the source): anything is a start.
 * Once the written batches are committed, P is the end of the last one.
 *
 * @example
 *   stampBatch(batch);                                   // at the edge, before the send
 *   const a = admitSend(1200, { fromOffset: 1200, gaps: [] }, headers);
 *   // a.write: indexes of the batches to append; a.position: the end of the last, once committed
 */
import { TributaryError, assert } from "../errors.ts";
import { Writer } from "../storage/bytes.ts";
import { crc32c } from "../storage/crc32c.ts";
import { BATCH_LENGTH_PREFIX_BYTES, CRC_START, readBatchHeader, verifyBatchCrc, type BatchHeader } from "../storage/record-batch.ts";
import { normalizeRanges } from "./ranges.ts";
import type { OffsetRange } from "./types.ts";

export const MIRROR_STAMP_EPOCH = -2;
const PRODUCER_ID_AT = 43;
const CRC_AT = 17;

/** Write the source stamp into one batch in place (baseOffset = its source offset). CORRUPT_RECORD if its CRC is bad. */
export function stampBatch(batch: Uint8Array): void {
  const h = readBatchHeader(batch);
  if (!verifyBatchCrc(batch)) throw new TributaryError("CORRUPT_RECORD", `batch at source offset ${h.baseOffset} fails its CRC-32C: not stamped`);
  assert(!h.isControl, "control batches carry no records and are not mirrored");
  new Writer(batch, PRODUCER_ID_AT).int64(h.baseOffset).int16(MIRROR_STAMP_EPOCH).int32(-1);
  new Writer(batch, CRC_AT).uint32(crc32c(batch, CRC_START, h.batchLength + BATCH_LENGTH_PREFIX_BYTES));
}

/** The source offsets a stamped batch holds (first, last), or null for a batch without a stamp. */
export function readStamp(h: BatchHeader): OffsetRange | null {
  if (h.isControl || h.producerEpoch !== MIRROR_STAMP_EPOCH || h.producerId < 0) return null;
  return { from: h.producerId, to: h.producerId + h.lastOffsetDelta + 1 };
}

/** The position a target partition's log implies: the end of its newest stamped batch; null if it has none. Headers oldest first. */
export function positionFromBatches(headers: readonly BatchHeader[]): number | null {
  for (let i = headers.length - 1; i >= 0; i--) {
    const s = readStamp(headers[i]!);
    if (s) return s.to;
  }
  return null;
}

export interface SendBounds {
  readonly fromOffset: number;
  readonly gaps: readonly OffsetRange[];
}

export interface Admission {
  /** Indexes (into the send's batches) to append, in order. */
  readonly write: readonly number[];
  /** Batches below the position, dropped. */
  readonly skipped: number;
  /** The position once `write` is committed (null: the central still holds nothing). */
  readonly position: number | null;
  /** The declared gap accepted: [P, fromOffset), or null. */
  readonly gap: OffsetRange | null;
}

/**
 * Which of a send's batches (their headers as sent: baseOffset is the source offset) the central
 * appends, given its position (null: it holds nothing of this source).
 */
export function admitSend(position: number | null, send: SendBounds, batches: readonly BatchHeader[]): Admission {
  const from = send.fromOffset;
  const bad = (why: string) => new TributaryError("INVALID_REQUEST", `mirror send from source offset ${from}: ${why}`);
  if (!(Number.isSafeInteger(from) && from >= 0)) throw bad("bad offset");
  let end = from;
  for (const h of batches) {
    if (h.isControl) throw bad("control batches are not mirrored");
    if (h.baseOffset < end) throw bad(`batch at ${h.baseOffset} overlaps the one before or starts below fromOffset`);
    end = h.baseOffset + h.lastOffsetDelta + 1;
  }
  if (batches.length === 0 || (position !== null && end <= position)) return { write: [], skipped: batches.length, position, gap: null };
  let gap: OffsetRange | null = null;
  if (position !== null && from > position) {
    const covered = normalizeRanges(send.gaps).some((g) => g.from <= position && g.to >= from);
    if (!covered) throw new TributaryError("OUT_OF_ORDER_SEQUENCE", `mirror send starts at source offset ${from}, the central expects ${position}: offsets [${position}, ${from}) would be a silent gap`);
    gap = { from: position, to: from };
  }
  const write: number[] = [];
  batches.forEach((h, i) => {
    const batchEnd = h.baseOffset + h.lastOffsetDelta + 1;
    if (position === null || h.baseOffset >= position) write.push(i);
    else if (batchEnd > position) throw bad(`batch [${h.baseOffset}, ${batchEnd}) straddles the central's position ${position}: the source's batches changed`);
  });
  return { write, skipped: batches.length - write.length, position: end, gap };
}
