/**
 * Mirror-aware retention (pure): which closed segments of the edge's partitions may go, whether
 * new writes must be refused, and which unmirrored offsets are dropped, given each partition's
 * segments, the offset below which everything is at the central, and the disk budget.
 *
 * Three passes, over all partitions of the broker (the disk budget is the whole data directory's):
 *
 * 1. **Retention.** Each partition's own time/size retention (`segmentsToDelete`, the same rule
 *    as without mirroring), except that a segment holding unmirrored records is kept (and so are
 *    the segments after it: only a prefix ever goes). A topic with `mirrorAware: false` is
 *    retained as if it were not mirrored, and what that deletes unmirrored is reported
 *    (`retention`).
 * 2. **Budget, mirrored data.** While the data directory is at or over `diskBudgetBytes`, delete
 *    mirrored segments (all their records are at the central) even within their retention, the
 *    oldest (by newest record) of any partition first. Local consumers lose history before anyone
 *    loses data.
 * 3. **Budget, unmirrored data.** Still at or over the budget, the policy decides:
 *    - `refuse`: nothing more goes; `refuseWrites` is set, and produce calls are refused
 *      (retriable) until the mirror catches up and pass 2 frees room;
 *    - `drop-oldest`: delete the oldest unmirrored segments (across partitions) until under the
 *      budget; each one's unmirrored offsets become a dropped range (`disk-budget`), counted,
 *      logged and kept in the drop ledger, so the mirror reports them as a gap. If even that
 *      cannot get under the budget (only active or unsettled segments are left), writes are
 *      refused too.
 *
 * Only segments marked `deletable` (closed and settled: durable, and committed in a cluster) ever
 * go, and only as a prefix of their partition. `mirroredBelow` is the lowest position of the links
 * mirroring the topic (null: not mirrored, so nothing needs keeping). The caller re-runs the plan
 * whenever a position moves while writes are refused.
 *
 * @example
 *   planRetention({ partitions: [p], diskUsedBytes: 9e9, diskBudgetBytes: 8e9, policy: "drop-oldest", nowMs });
 *   // { deletions: [{ topic, partition, segments: 2, ... }], dropped: [{ from, to, reason: "disk-budget", ... }], refuseWrites: false, ... }
 */
import { assert } from "../errors.ts";
import { segmentsToDelete, type SegmentInfo } from "../storage/retention.ts";
import type { DroppedRange } from "./types.ts";

export type DiskFullPolicy = "refuse" | "drop-oldest";
export type { SegmentInfo };

export interface PartitionRetention {
  readonly topic: string;
  readonly partition: number;
  /** Oldest first; the last one is the active segment. */
  readonly segments: readonly SegmentInfo[];
  /** Offsets below it are at every central mirroring the topic; null: the topic is not mirrored. */
  readonly mirroredBelow: number | null;
  readonly retentionMs: number;
  readonly retentionBytes: number;
  /** Default true: time/size retention keeps unmirrored segments. */
  readonly mirrorAware?: boolean;
}

export interface RetentionPolicyInput {
  readonly partitions: readonly PartitionRetention[];
  /** What the data directory holds now: segments and everything else. */
  readonly diskUsedBytes: number;
  /** -1: no budget. */
  readonly diskBudgetBytes: number;
  readonly policy: DiskFullPolicy;
  readonly nowMs: number;
}

/** Why a segment goes: its retention, the budget (all of it mirrored), or the budget (some of it not). */
export type RemovalReason = "retention" | "budget-mirrored" | "budget-unmirrored";

export interface PartitionDeletion {
  readonly topic: string;
  readonly partition: number;
  /** Segments to delete from the front. */
  readonly segments: number;
  readonly newLogStartOffset: number;
  readonly freedBytes: number;
  /** One per deleted segment, oldest first. */
  readonly reasons: readonly RemovalReason[];
}

export interface DroppedReport extends DroppedRange {
  readonly topic: string;
  readonly partition: number;
  /** Estimated: the segment's bytes in proportion to the offsets dropped. */
  readonly bytes: number;
  readonly newestTimestampMs: number;
}

export interface RetentionDecision {
  /** Partitions that delete something. */
  readonly deletions: readonly PartitionDeletion[];
  readonly dropped: readonly DroppedReport[];
  readonly refuseWrites: boolean;
  readonly usedAfterBytes: number;
}

interface Cursor {
  readonly p: PartitionRetention;
  /** Segments deleted so far, from the front. */
  next: number;
  readonly reasons: RemovalReason[];
  freed: number;
}

function mirrored(p: PartitionRetention, s: SegmentInfo): boolean {
  return p.mirroredBelow === null || s.lastOffset < p.mirroredBelow;
}

function checkPartition(p: PartitionRetention): void {
  let prev = -1;
  for (const s of p.segments) {
    assert(s.baseOffset > prev && s.lastOffset >= s.baseOffset - 1 && s.sizeBytes >= 0, `segments of ${p.topic}/${p.partition} must be in offset order`);
    prev = Math.max(s.lastOffset, s.baseOffset);
  }
}

export function planRetention(input: RetentionPolicyInput): RetentionDecision {
  const cursors: Cursor[] = input.partitions.map((p) => {
    checkPartition(p);
    return { p, next: 0, reasons: [], freed: 0 };
  });
  const dropped: DroppedReport[] = [];
  let used = input.diskUsedBytes;
  const take = (c: Cursor, reason: RemovalReason): void => {
    const s = c.p.segments[c.next++]!;
    c.reasons.push(reason);
    c.freed += s.sizeBytes;
    used -= s.sizeBytes;
    const lost = droppedPart(c.p, s);
    if (lost) dropped.push({ ...lost, reason: reason === "retention" ? "retention" : "disk-budget" });
  };

  for (const c of cursors) {
    const aware = c.p.mirrorAware ?? true;
    const candidates = c.p.segments.map((s) => ({ sizeBytes: s.sizeBytes, maxTimestampMs: s.maxTimestampMs, deletable: s.deletable && (!aware || mirrored(c.p, s)) }));
    const n = segmentsToDelete(candidates, input.nowMs, c.p.retentionMs, c.p.retentionBytes);
    for (let i = 0; i < n; i++) take(c, "retention");
  }

  const budget = input.diskBudgetBytes;
  const over = () => budget >= 0 && used >= budget;
  const drain = (eligible: (p: PartitionRetention, s: SegmentInfo) => boolean, reason: RemovalReason): void => {
    while (over()) {
      const c = oldestFront(cursors, eligible);
      if (!c) return;
      take(c, reason);
    }
  };
  drain((p, s) => mirrored(p, s), "budget-mirrored");
  if (input.policy === "drop-oldest") drain(() => true, "budget-unmirrored");

  const deletions = cursors
    .filter((c) => c.next > 0)
    .map((c): PartitionDeletion => {
      const segs = c.p.segments;
      const newLogStartOffset = c.next < segs.length ? segs[c.next]!.baseOffset : segs[segs.length - 1]!.lastOffset + 1;
      return { topic: c.p.topic, partition: c.p.partition, segments: c.next, newLogStartOffset, freedBytes: c.freed, reasons: c.reasons };
    });
  return { deletions, dropped, refuseWrites: over(), usedAfterBytes: used };
}

/** The partition whose next segment is deletable, eligible, and has the oldest newest record. */
function oldestFront(cursors: readonly Cursor[], eligible: (p: PartitionRetention, s: SegmentInfo) => boolean): Cursor | null {
  let best: Cursor | null = null;
  let bestTs = Infinity;
  for (const c of cursors) {
    const s = c.p.segments[c.next];
    if (!s || !s.deletable || !eligible(c.p, s)) continue;
    // Ties: the input order (callers list partitions by topic and index), so plans are deterministic.
    if (s.maxTimestampMs < bestTs) {
      best = c;
      bestTs = s.maxTimestampMs;
    }
  }
  return best;
}

/** The unmirrored offsets of a segment about to be deleted, or null if it is all at the central. */
function droppedPart(p: PartitionRetention, s: SegmentInfo): Omit<DroppedReport, "reason"> | null {
  if (mirrored(p, s)) return null;
  const from = Math.max(s.baseOffset, p.mirroredBelow!);
  const to = s.lastOffset + 1;
  if (to <= from) return null; // an empty segment
  const span = s.lastOffset + 1 - s.baseOffset;
  return { topic: p.topic, partition: p.partition, from, to, bytes: Math.round((s.sizeBytes * (to - from)) / span), newestTimestampMs: s.maxTimestampMs };
}
