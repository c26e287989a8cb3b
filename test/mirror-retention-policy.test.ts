/**
 * Mirror-aware retention as a table: partitions written as segments `base-last:bytes@newestTs`
 * (`*` marks one that may not go: the active segment, or one not yet settled), the mirrored
 * position, the disk, the policy; expected: what each partition deletes (`topic/p:n reason,...`),
 * the dropped ranges (`topic/p:from-to reason bytes`), and whether writes are refused. Then
 * properties over random brokers.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { planRetention, type DiskFullPolicy, type PartitionRetention, type RetentionDecision, type SegmentInfo } from "../src/mirror/retention-policy.ts";

const NOW = 1_000_000;
const DAY = 86_400_000;

function segs(spec: string): SegmentInfo[] {
  return spec.split(/\s+/).map((t) => {
    const m = /^(\d+)-(\d+):(\d+)@(\d+)(\*?)$/.exec(t);
    if (!m) throw new Error(`bad segment ${t}`);
    return { baseOffset: Number(m[1]), lastOffset: Number(m[2]), sizeBytes: Number(m[3]), maxTimestampMs: Number(m[4]), deletable: m[5] !== "*" };
  });
}

interface P {
  t: string;
  segs: string;
  mirrored: number | null;
  retentionMs?: number;
  retentionBytes?: number;
  aware?: boolean;
}

interface Row {
  name: string;
  parts: P[];
  used?: number;
  budget?: number;
  policy?: DiskFullPolicy;
  deletes: string[];
  dropped?: string[];
  refuse?: boolean;
}

function partition(p: P): PartitionRetention {
  return { topic: p.t, partition: 0, segments: segs(p.segs), mirroredBelow: p.mirrored, retentionMs: p.retentionMs ?? -1, retentionBytes: p.retentionBytes ?? -1, mirrorAware: p.aware };
}

function show(d: RetentionDecision): { deletes: string[]; dropped: string[]; refuse: boolean } {
  return {
    deletes: d.deletions.map((x) => `${x.topic}/${x.partition}:${x.segments} ${x.reasons.join(",")}`),
    dropped: d.dropped.map((x) => `${x.topic}/${x.partition}:${x.from}-${x.to} ${x.reason} ${x.bytes}`),
    refuse: d.refuseWrites,
  };
}

// Three segments of 100 bytes, newest records at 10, 20, 30; the last is active.
const A = "0-99:100@10 100-199:100@20 200-299:100@30*";
const B = "0-49:100@15 50-99:100@25 100-149:100@35*";

const rows: Row[] = [
  { name: "time retention deletes expired mirrored segments", parts: [{ t: "a", segs: A, mirrored: 300, retentionMs: NOW - 25 }], deletes: ["a/0:2 retention,retention"] },
  { name: "an expired segment with unmirrored records stays, and so do those after it", parts: [{ t: "a", segs: A, mirrored: 150, retentionMs: NOW - 25 }], deletes: ["a/0:1 retention"] },
  { name: "size retention likewise stops at the mirrored position", parts: [{ t: "a", segs: A, mirrored: 100, retentionBytes: 100 }], deletes: ["a/0:1 retention"] },
  { name: "a topic not mirrored is retained as before", parts: [{ t: "a", segs: A, mirrored: null, retentionMs: NOW - 25 }], deletes: ["a/0:2 retention,retention"] },
  { name: "not mirror-aware: retention deletes unmirrored data and reports it", parts: [{ t: "a", segs: A, mirrored: 150, retentionMs: NOW - 25, aware: false }], deletes: ["a/0:2 retention,retention"], dropped: ["a/0:150-200 retention 50"] },
  { name: "under the budget nothing else goes", parts: [{ t: "a", segs: A, mirrored: 300 }], used: 299, budget: 300, deletes: [] },
  { name: "at the budget, mirrored segments go first, oldest of any partition first, and only as many as needed", parts: [{ t: "a", segs: A, mirrored: 300 }, { t: "b", segs: B, mirrored: 150 }], used: 700, budget: 500, deletes: ["a/0:2 budget-mirrored,budget-mirrored", "b/0:1 budget-mirrored"] },
  { name: "refuse: with only unmirrored segments left, writes are refused and nothing unmirrored goes", parts: [{ t: "a", segs: A, mirrored: 100 }, { t: "b", segs: B, mirrored: 0 }], used: 600, budget: 450, policy: "refuse", deletes: ["a/0:1 budget-mirrored"], refuse: true },
  { name: "drop-oldest: the oldest unmirrored segment of any partition goes, its unmirrored part reported", parts: [{ t: "a", segs: A, mirrored: 150 }, { t: "b", segs: B, mirrored: 0 }], used: 600, budget: 450, policy: "drop-oldest", deletes: ["a/0:1 budget-mirrored", "b/0:1 budget-unmirrored"], dropped: ["b/0:0-50 disk-budget 100"] },
  { name: "drop-oldest: a partly mirrored segment reports only its unmirrored offsets", parts: [{ t: "a", segs: A, mirrored: 150 }], used: 300, budget: 150, policy: "drop-oldest", deletes: ["a/0:2 budget-mirrored,budget-unmirrored"], dropped: ["a/0:150-200 disk-budget 50"] },
  { name: "drop-oldest: refuses too when nothing more may go", parts: [{ t: "a", segs: "0-99:100@10 100-199:100@20* 200-299:100@30*", mirrored: 0 }], used: 300, budget: 100, policy: "drop-oldest", deletes: ["a/0:1 budget-unmirrored"], dropped: ["a/0:0-100 disk-budget 100"], refuse: true },
  { name: "an unsettled segment is never deleted, and stops the prefix", parts: [{ t: "a", segs: "0-99:100@10* 100-199:100@20 200-299:100@30*", mirrored: 300, retentionMs: 0 }], used: 300, budget: 100, policy: "drop-oldest", deletes: [], refuse: true },
  { name: "retention frees enough: no budget deletions follow", parts: [{ t: "a", segs: A, mirrored: 300, retentionMs: NOW - 15 }, { t: "b", segs: B, mirrored: 0 }], used: 600, budget: 550, policy: "drop-oldest", deletes: ["a/0:1 retention"] },
  { name: "no budget (-1): only retention", parts: [{ t: "a", segs: A, mirrored: 0 }], used: 1e12, budget: -1, policy: "drop-oldest", deletes: [] },
];

describe("planRetention", () => {
  for (const row of rows) {
    it(row.name, () => {
      const d = planRetention({ partitions: row.parts.map(partition), diskUsedBytes: row.used ?? 0, diskBudgetBytes: row.budget ?? -1, policy: row.policy ?? "refuse", nowMs: NOW });
      expect(show(d)).toEqual({ deletes: row.deletes, dropped: row.dropped ?? [], refuse: row.refuse ?? false });
      const freed = d.deletions.reduce((a, x) => a + x.freedBytes, 0);
      expect(d.usedAfterBytes).toBe((row.used ?? 0) - freed);
    });
  }

  it("moves each partition's log start to the first segment it keeps", () => {
    const d = planRetention({ partitions: [partition({ t: "a", segs: A, mirrored: 300, retentionMs: NOW - 25 })], diskUsedBytes: 0, diskBudgetBytes: -1, policy: "refuse", nowMs: NOW });
    expect(d.deletions[0]).toMatchObject({ segments: 2, newLogStartOffset: 200, freedBytes: 200 });
  });

  const partitionArb = (i: number) =>
    fc
      .record({
        sizes: fc.array(fc.record({ span: fc.integer({ min: 1, max: 50 }), bytes: fc.integer({ min: 1, max: 1000 }), age: fc.nat({ max: 10 * DAY }), settled: fc.boolean() }), { minLength: 1, maxLength: 8 }),
        mirroredFrac: fc.option(fc.double({ min: 0, max: 1.1, noNaN: true })),
        retentionMs: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 10 * DAY })),
        retentionBytes: fc.oneof(fc.constant(-1), fc.nat({ max: 5000 })),
        aware: fc.option(fc.boolean(), { nil: undefined }),
      })
      .map((r): PartitionRetention => {
        let base = 0;
        const segments = r.sizes.map((s, j) => {
          const seg = { baseOffset: base, lastOffset: base + s.span - 1, sizeBytes: s.bytes, maxTimestampMs: NOW - 10 * DAY + j * DAY + (s.age % DAY), deletable: s.settled && j < r.sizes.length - 1 };
          base += s.span;
          return seg;
        });
        const mirroredBelow = r.mirroredFrac === null ? null : Math.floor(base * r.mirroredFrac);
        return { topic: `t${i}`, partition: 0, segments, mirroredBelow, retentionMs: r.retentionMs, retentionBytes: r.retentionBytes, mirrorAware: r.aware };
      });
  const inputArb = fc.record({
    parts: fc.integer({ min: 1, max: 5 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => partitionArb(i)))),
    extra: fc.nat({ max: 3000 }),
    budget: fc.oneof(fc.constant(-1), fc.nat({ max: 20_000 })),
    policy: fc.constantFrom<DiskFullPolicy>("refuse", "drop-oldest"),
  });

  it("deletes only settled prefixes, drops exactly the unmirrored offsets it deletes, keeps unmirrored data under refuse, and refuses exactly when still over the budget", () => {
    fc.assert(
      fc.property(inputArb, ({ parts, extra, budget, policy }) => {
        const used = parts.reduce((a, p) => a + p.segments.reduce((b, s) => b + s.sizeBytes, 0), extra);
        const d = planRetention({ partitions: parts, diskUsedBytes: used, diskBudgetBytes: budget, policy, nowMs: NOW });
        const expectedDrops: string[] = [];
        for (const del of d.deletions) {
          const p = parts.find((x) => x.topic === del.topic)!;
          const gone = p.segments.slice(0, del.segments);
          expect(gone.every((s) => s.deletable)).toBe(true);
          expect(del.reasons).toHaveLength(del.segments);
          for (const [j, s] of gone.entries()) {
            const unmirrored = p.mirroredBelow !== null && s.lastOffset >= p.mirroredBelow;
            if (unmirrored) expectedDrops.push(`${p.topic}:${Math.max(s.baseOffset, p.mirroredBelow!)}-${s.lastOffset + 1}`);
            const reason = del.reasons[j]!;
            if (unmirrored) expect(reason === "budget-unmirrored" || (reason === "retention" && p.mirrorAware === false)).toBe(true);
            if (policy === "refuse" && p.mirrorAware !== false) expect(unmirrored).toBe(false);
          }
        }
        expect(d.dropped.map((x) => `${x.topic}:${x.from}-${x.to}`).sort()).toEqual(expectedDrops.sort());
        const freed = d.deletions.reduce((a, x) => a + x.freedBytes, 0);
        expect(d.usedAfterBytes).toBe(used - freed);
        expect(d.refuseWrites).toBe(budget >= 0 && d.usedAfterBytes >= budget);
      }),
    );
  });

  it("drops unmirrored data only when nothing mirrored is left to delete, oldest first, and no more than the budget needs", () => {
    fc.assert(
      fc.property(inputArb, ({ parts, extra, budget }) => {
        const used = parts.reduce((a, p) => a + p.segments.reduce((b, s) => b + s.sizeBytes, 0), extra);
        const d = planRetention({ partitions: parts.map((p) => ({ ...p, mirrorAware: true })), diskUsedBytes: used, diskBudgetBytes: budget, policy: "drop-oldest", nowMs: NOW });
        const kept = (topic: string) => d.deletions.find((x) => x.topic === topic)?.segments ?? 0;
        const fronts = parts.map((p) => p.segments[kept(p.topic)]).filter((s): s is SegmentInfo => s !== undefined);
        const pressured = d.deletions.flatMap((x) => {
          const p = parts.find((q) => q.topic === x.topic)!;
          return x.reasons.flatMap((r, j) => (r === "budget-unmirrored" ? [p.segments[j]!] : []));
        });
        if (pressured.length === 0) return;
        // Nothing mirrored and deletable was left at any front.
        for (const p of parts) {
          const s = p.segments[kept(p.topic)];
          if (s?.deletable) expect(p.mirroredBelow !== null && s.lastOffset >= p.mirroredBelow).toBe(true);
        }
        // Oldest first: every unmirrored segment that went is no newer than any deletable one kept at a front.
        const newestGone = Math.max(...pressured.map((s) => s.maxTimestampMs));
        for (const s of fronts) if (s.deletable) expect(s.maxTimestampMs).toBeGreaterThanOrEqual(newestGone);
        // No more than needed: without the last one (the newest; of a tie, the largest), the directory would still have been at or over the budget.
        const lastFreed = Math.max(...pressured.filter((s) => s.maxTimestampMs === newestGone).map((s) => s.sizeBytes));
        expect(d.usedAfterBytes + lastFreed).toBeGreaterThanOrEqual(budget);
      }),
    );
  });
});
