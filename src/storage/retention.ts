/**
 * Which old segments retention deletes: a pure decision, so it is tested with plain numbers.
 *
 * Only a prefix of closed, sealed segments ever goes (never the active one, never a hole in the
 * middle), so the log stays contiguous from logStartOffset:
 * - by time: while the oldest segment's newest record is older than `nowMs - retentionMs`;
 * - by size: while the whole log is larger than `retentionBytes`.
 * -1 turns either off.
 *
 * @example
 *   segmentsToDelete([{ sizeBytes: 100, maxTimestampMs: 5, deletable: true }], 1000, 10, -1); // 1
 */
export interface RetentionCandidate {
  sizeBytes: number;
  maxTimestampMs: number;
  /** Closed and fully durable: false stops the prefix. */
  deletable: boolean;
}

/** One segment as retention planners see it (PartitionLog.segmentInfos, the mirror's retention policy). */
export interface SegmentInfo {
  readonly baseOffset: number;
  /** The last offset the segment covers (baseOffset - 1 when it is empty). */
  readonly lastOffset: number;
  readonly sizeBytes: number;
  /** Timestamp of its newest record; -1 when empty. */
  readonly maxTimestampMs: number;
  /** Closed and settled (durable, and committed in a replicated log); the active segment never is. */
  readonly deletable: boolean;
}

/** How many segments from the front to delete. */
export function segmentsToDelete(
  segments: readonly RetentionCandidate[],
  nowMs: number,
  retentionMs: number,
  retentionBytes: number,
): number {
  let total = 0;
  for (const s of segments) total += s.sizeBytes;
  let n = 0;
  for (const s of segments) {
    if (!s.deletable) break;
    const expired = retentionMs >= 0 && s.maxTimestampMs < nowMs - retentionMs;
    const oversize = retentionBytes >= 0 && total > retentionBytes;
    if (!expired && !oversize) break;
    total -= s.sizeBytes;
    n++;
  }
  return n;
}
