/**
 * Half-open offset ranges ([from, to)) as the mirror's planners use them: normalising a list
 * (sorted, empty ranges gone, overlapping or touching ranges of one kind merged), clipping it, and
 * keeping a ledger of them bounded.
 *
 * @example
 *   normalizeRanges([{ from: 5, to: 9 }, { from: 0, to: 5 }]);  // [{ from: 0, to: 9 }]
 */
import { assert } from "../errors.ts";
import type { OffsetRange } from "./types.ts";

/** Ranges in a drop ledger, at most: the ledger travels in one checkpoint record. */
export const MAX_LEDGER_RANGES = 64;

function checkRange(r: OffsetRange): void {
  assert(Number.isSafeInteger(r.from) && Number.isSafeInteger(r.to) && r.from >= 0 && r.to >= r.from, `bad offset range [${r.from}, ${r.to})`);
}

/**
 * Sorted by `from`, empty ranges dropped, and overlapping or touching ranges merged when `same`
 * says they are of one kind (by default all are). Where ranges of different kinds overlap, the
 * earlier one in the input wins the overlap.
 */
export function normalizeRanges<R extends OffsetRange>(ranges: readonly R[], same: (a: R, b: R) => boolean = () => true): R[] {
  for (const r of ranges) checkRange(r);
  // Carve each range against those before it in the input, so earlier ones win overlaps.
  const carved: R[] = [];
  for (const r of ranges) {
    let pieces: R[] = [r];
    for (const c of carved) pieces = pieces.flatMap((p) => subtract(p, c));
    carved.push(...pieces.filter((p) => p.to > p.from));
  }
  carved.sort((a, b) => a.from - b.from);
  const out: R[] = [];
  for (const r of carved) {
    const last = out[out.length - 1];
    if (last && last.to >= r.from && same(last, r)) out[out.length - 1] = { ...last, to: Math.max(last.to, r.to) };
    else out.push(r);
  }
  return out;
}

/** The parts of `r` outside `cut`. */
function subtract<R extends OffsetRange>(r: R, cut: OffsetRange): R[] {
  if (cut.to <= r.from || cut.from >= r.to) return [r];
  const out: R[] = [];
  if (cut.from > r.from) out.push({ ...r, to: cut.from });
  if (cut.to < r.to) out.push({ ...r, from: cut.to });
  return out;
}

/** The parts of normalised `ranges` inside [from, to). */
export function clipRanges<R extends OffsetRange>(ranges: readonly R[], from: number, to: number): R[] {
  const out: R[] = [];
  for (const r of ranges) {
    const a = Math.max(r.from, from);
    const b = Math.min(r.to, to);
    if (b > a) out.push({ ...r, from: a, to: b });
  }
  return out;
}

/**
 * Add `added` to a ledger, keeping at most `max` ranges: past it, the two oldest neighbours are
 * merged into one, so the oldest part of the ledger grows coarse (a reported gap may then name a
 * kept range as dropped; it lies below the log start either way, so nothing is resent wrongly).
 */
export function addToLedger<R extends OffsetRange>(ledger: readonly R[], added: readonly R[], same: (a: R, b: R) => boolean, max = MAX_LEDGER_RANGES): R[] {
  assert(max >= 1, "a ledger holds at least one range");
  const out = normalizeRanges([...ledger, ...added], same);
  while (out.length > max) {
    const [a, b] = out as [R, R];
    out.splice(0, 2, { ...a, to: b.to });
  }
  return out;
}
