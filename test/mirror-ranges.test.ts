/** Offset ranges: normalising (earlier ranges win overlaps), clipping, and the bounded drop ledger. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { addToLedger, clipRanges, normalizeRanges } from "../src/mirror/ranges.ts";
import type { DroppedRange } from "../src/mirror/types.ts";

const byReason = (a: DroppedRange, b: DroppedRange) => a.reason === b.reason;
const d = (from: number, to: number, reason: DroppedRange["reason"] = "disk-budget"): DroppedRange => ({ from, to, reason });

/** Offset -> reason, as the ranges say (the first range covering an offset wins). */
function cover(ranges: readonly DroppedRange[], upTo: number): (string | null)[] {
  return Array.from({ length: upTo }, (_, o) => ranges.find((r) => r.from <= o && o < r.to)?.reason ?? null);
}

describe("offset ranges", () => {
  it("sorts, drops empty ranges, merges touching ranges of one kind, and lets earlier ranges win overlaps", () => {
    expect(normalizeRanges([d(5, 9), d(0, 5), d(3, 3)])).toEqual([d(0, 9)]);
    expect(normalizeRanges([d(0, 10, "retention"), d(5, 20)], byReason)).toEqual([d(0, 10, "retention"), d(10, 20)]);
    expect(normalizeRanges([d(5, 20), d(0, 10, "retention")], byReason)).toEqual([d(0, 5, "retention"), d(5, 20)]);
    expect(clipRanges([d(0, 5), d(8, 12)], 3, 10)).toEqual([d(3, 5), d(8, 10)]);
  });

  it("normalises without changing what covers each offset, into sorted disjoint ranges", () => {
    const arb = fc.array(fc.record({ from: fc.nat({ max: 60 }), len: fc.nat({ max: 20 }), reason: fc.constantFrom("disk-budget" as const, "retention" as const) }), { maxLength: 12 });
    fc.assert(
      fc.property(arb, (raw) => {
        const ranges = raw.map((r) => d(r.from, r.from + r.len, r.reason));
        const out = normalizeRanges(ranges, byReason);
        expect(cover(out, 90)).toEqual(cover(ranges, 90));
        out.forEach((r, i) => {
          expect(r.to).toBeGreaterThan(r.from);
          if (i > 0) expect(r.from).toBeGreaterThanOrEqual(out[i - 1]!.to);
          if (i > 0 && r.from === out[i - 1]!.to) expect(r.reason).not.toBe(out[i - 1]!.reason);
        });
      }),
    );
  });

  it("keeps a ledger within its bound by coarsening its oldest end, never losing a dropped offset", () => {
    let ledger: DroppedRange[] = [];
    for (let i = 0; i < 100; i++) ledger = addToLedger(ledger, [d(i * 10, i * 10 + 5, i % 2 ? "retention" : "disk-budget")], byReason, 8);
    expect(ledger).toHaveLength(8);
    for (let i = 0; i < 100; i++) expect(ledger.some((r) => r.from <= i * 10 && i * 10 + 5 <= r.to)).toBe(true);
    // The newest ranges stay exact.
    expect(ledger[ledger.length - 1]).toEqual(d(990, 995, "retention"));
    expect(ledger[ledger.length - 2]).toEqual(d(980, 985, "disk-budget"));
  });
});
