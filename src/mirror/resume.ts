/**
 * The resume planner (pure): where a mirror link resumes one source partition after it (re)opens,
 * and which source offsets are gaps to report. Run by the edge on every open of a link: after a
 * reconnect, an edge leader change, a central leader change, a restart.
 *
 * The central's position is the truth for what the central holds (its records and its position
 * are one write, see index.ts); the edge's checkpoint only says what the central had acknowledged
 * when the edge last wrote it. So:
 *
 * | central position `c` | plan |
 * |---|---|
 * | logStart <= c <= hw | resume at c: no gap, nothing sent twice |
 * | c < logStart | the edge deleted [c, logStart): resume at logStart, report those offsets as gaps, each with its reason (drop ledger: `disk-budget`/`retention`; below the checkpoint: `central-lost`, the central lost what it had acknowledged; otherwise `retention`) |
 * | hw < c <= logEnd | wait: a new edge leader's high watermark (its Raft commit) has not yet caught up with what the old one committed and the central holds; plan again once hw moves |
 * | c > logEnd | diverged: the central holds source offsets this log never had (the edge lost its log, or the topic was recreated under the same id); nothing is sent, an operator must reset the link |
 * | none (null), no checkpoint | a new link: resume at logStart |
 * | none (null), a checkpoint | a reset central (target deleted, or a new central): resume at logStart, noted |
 *
 * Notes say what else the plan saw: the checkpoint was missing, stale (behind the central: written
 * lazily, or lost), or ahead of the central (`central-behind`), or ahead of the log itself (it
 * belongs to an older log and is ignored). The checkpoint to write back is `from`: everything below
 * it is at the central or reported lost, so edge retention may delete it.
 *
 * Invariants (tested as properties): `from` lies in [logStart, hw]; `from` >= c; the gaps are
 * sorted, disjoint, and cover [c, from) exactly, so every offset the central lacks below the
 * resume point is reported; when the central's position is still in the log there are no gaps.
 *
 * @example
 *   planResume({ checkpoint: 90, central: 100, logStartOffset: 0, highWatermark: 150, logEndOffset: 150, dropped: [] });
 *   // { kind: "resume", from: 100, gaps: [], checkpoint: 100, notes: ["checkpoint-stale"] }
 */
import { assert } from "../errors.ts";
import { clipRanges, normalizeRanges } from "./ranges.ts";
import type { DroppedRange, Gap, GapReason } from "./types.ts";

export interface ResumeInput {
  /** The edge's checkpoint: the central had acknowledged offsets below it. null: none stored. */
  readonly checkpoint: number | null;
  /** The central's position from the link's handshake: the next source offset it expects. null: it holds nothing of this partition. */
  readonly central: number | null;
  readonly logStartOffset: number;
  /** What a mirror may read: the edge's committed end. */
  readonly highWatermark: number;
  /** The end of the edge's log, committed or not (in a cluster the leader's log holds everything ever committed). */
  readonly logEndOffset: number;
  /** The drop ledger: ranges the edge deleted unmirrored. Any order; may overlap. */
  readonly dropped: readonly DroppedRange[];
}

export type ResumeNote =
  | "new-link" // no checkpoint, the central holds nothing
  | "central-reset" // a checkpoint, but the central holds nothing
  | "checkpoint-missing" // the central holds data the edge has no checkpoint for (lost, or never written)
  | "checkpoint-stale" // the checkpoint is behind the central
  | "central-behind" // the central is behind what it once acknowledged: it lost data
  | "checkpoint-ahead-of-log"; // the checkpoint lies past the log's end: from an older log, ignored

export type ResumePlan =
  | { readonly kind: "resume"; readonly from: number; readonly gaps: readonly Gap[]; readonly checkpoint: number; readonly notes: readonly ResumeNote[] }
  | { readonly kind: "wait"; readonly central: number; readonly highWatermark: number }
  | { readonly kind: "diverged"; readonly central: number; readonly logEndOffset: number; readonly message: string };

function checkInput(i: ResumeInput): void {
  const off = (n: number | null) => n === null || (Number.isSafeInteger(n) && n >= 0);
  assert(off(i.checkpoint) && off(i.central), `checkpoint ${i.checkpoint} and central position ${i.central} must be offsets or null`);
  assert(
    Number.isSafeInteger(i.logStartOffset) && i.logStartOffset >= 0 && i.highWatermark >= i.logStartOffset && i.logEndOffset >= i.highWatermark && Number.isSafeInteger(i.logEndOffset),
    `log bounds must hold 0 <= logStart ${i.logStartOffset} <= hw ${i.highWatermark} <= logEnd ${i.logEndOffset}`,
  );
}

export function planResume(input: ResumeInput): ResumePlan {
  checkInput(input);
  const { central, logStartOffset: start, highWatermark: hw, logEndOffset: end } = input;
  // A checkpoint past the log's end cannot describe this log: it is ignored, and said so.
  const checkpoint = input.checkpoint !== null && input.checkpoint <= end ? input.checkpoint : null;
  const notes: ResumeNote[] = input.checkpoint !== null && checkpoint === null ? ["checkpoint-ahead-of-log"] : [];

  if (central === null) {
    notes.push(checkpoint === null ? "new-link" : "central-reset");
    return { kind: "resume", from: start, gaps: [], checkpoint: start, notes };
  }
  if (central > end) {
    return {
      kind: "diverged",
      central,
      logEndOffset: end,
      message: `the central holds source offsets up to ${central}, past this log's end ${end}: the edge lost its log or the topic was recreated; reset the link`,
    };
  }
  if (central > hw) return { kind: "wait", central, highWatermark: hw };

  if (checkpoint === null) notes.push("checkpoint-missing");
  else if (checkpoint < central) notes.push("checkpoint-stale");
  else if (checkpoint > central) notes.push("central-behind");
  const from = Math.max(central, start);
  const gaps = from > central ? classifyGap(central, from, checkpoint, input.dropped) : [];
  return { kind: "resume", from, gaps, checkpoint: from, notes };
}

/**
 * Reasons for the lost offsets [from, to): the drop ledger's reason where it has one; below the
 * checkpoint, `central-lost` (the central had them); anything else went by `retention`.
 */
function classifyGap(from: number, to: number, checkpoint: number | null, dropped: readonly DroppedRange[]): Gap[] {
  const byReason = (a: Gap, b: Gap) => a.reason === b.reason;
  const ledger = clipRanges(normalizeRanges(dropped, byReason), from, to);
  const fallback: Gap[] = [];
  if (checkpoint !== null && checkpoint > from) fallback.push({ from, to: Math.min(checkpoint, to), reason: "central-lost" });
  fallback.push({ from, to, reason: "retention" as GapReason });
  // Earlier ranges win overlaps: the ledger first, then central-lost, then retention for the rest.
  return normalizeRanges<Gap>([...ledger, ...fallback], byReason);
}
