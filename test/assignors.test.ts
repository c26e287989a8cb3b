/**
 * Assignors as tables: members (id: subscribed topics | held partitions) and partition counts in,
 * the expected assignment out. Partitions are written "t-0". A new case is one row.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { assign, planReconciliation, type AssignorMember } from "../src/groups/assignors.ts";
import type { AssignorName, TopicPartition } from "../src/groups/types.ts";

const tp = (s: string): TopicPartition => {
  const i = s.lastIndexOf("-");
  return { topic: s.slice(0, i), partition: Number(s.slice(i + 1)) };
};
const show = (l: readonly TopicPartition[]) => l.map((x) => `${x.topic}-${x.partition}`).join(" ");

/** "a: t u | t-0 t-1" -> member a subscribed to t and u, holding t-0 and t-1. */
function members(spec: string[]): AssignorMember[] {
  return spec.map((line) => {
    const [id, rest] = line.split(":").map((x) => x.trim()) as [string, string];
    const [topics, owned] = rest.split("|").map((x) => x.trim());
    return { memberId: id, topics: topics!.split(/\s+/).filter(Boolean), owned: (owned ?? "").split(/\s+/).filter(Boolean).map(tp) };
  });
}

function run(name: AssignorName, spec: string[], counts: Record<string, number>): Record<string, string> {
  return Object.fromEntries([...assign(name, members(spec), counts)].map(([m, l]) => [m, show(l)]));
}

interface Row {
  name: string;
  assignor: AssignorName;
  members: string[];
  counts: Record<string, number>;
  want: Record<string, string>;
}

const rows: Row[] = [
  { name: "range: contiguous, first members take the remainder", assignor: "range", members: ["b: t", "a: t", "c: t"], counts: { t: 7 }, want: { a: "t-0 t-1 t-2", b: "t-3 t-4", c: "t-5 t-6" } },
  { name: "range: per topic, so two topics stack on the first member", assignor: "range", members: ["a: t u", "b: t u"], counts: { t: 3, u: 3 }, want: { a: "t-0 t-1 u-0 u-1", b: "t-2 u-2" } },
  { name: "range: a topic only some subscribe to", assignor: "range", members: ["a: t", "b: t u"], counts: { t: 2, u: 2 }, want: { a: "t-0", b: "t-1 u-0 u-1" } },
  { name: "range: more members than partitions", assignor: "range", members: ["a: t", "b: t", "c: t"], counts: { t: 2 }, want: { a: "t-0", b: "t-1", c: "" } },
  { name: "range: a subscribed topic that does not exist", assignor: "range", members: ["a: nope"], counts: {}, want: { a: "" } },
  { name: "roundrobin: dealt in turn across topics", assignor: "roundrobin", members: ["a: t u", "b: t u"], counts: { t: 3, u: 3 }, want: { a: "t-0 t-2 u-1", b: "t-1 u-0 u-2" } },
  { name: "roundrobin: skips members not subscribed", assignor: "roundrobin", members: ["a: t", "b: u", "c: t u"], counts: { t: 3, u: 2 }, want: { a: "t-0 t-2", b: "u-0", c: "t-1 u-1" } },
  { name: "sticky: fresh group is balanced", assignor: "cooperative-sticky", members: ["a: t", "b: t", "c: t"], counts: { t: 6 }, want: { a: "t-0 t-3", b: "t-1 t-4", c: "t-2 t-5" } },
  { name: "sticky: a joiner takes only the excess", assignor: "cooperative-sticky", members: ["a: t | t-0 t-1 t-2", "b: t | t-3 t-4 t-5", "c: t"], counts: { t: 6 }, want: { a: "t-0 t-1", b: "t-3 t-4", c: "t-2 t-5" } },
  { name: "sticky: a leaver's partitions spread, the rest stay", assignor: "cooperative-sticky", members: ["a: t | t-0 t-3", "b: t | t-1 t-4"], counts: { t: 6 }, want: { a: "t-0 t-2 t-3", b: "t-1 t-4 t-5" } },
  { name: "sticky: unsubscribed topic is dropped", assignor: "cooperative-sticky", members: ["a: u | t-0 u-0", "b: t u | t-1"], counts: { t: 2, u: 2 }, want: { a: "u-0 u-1", b: "t-0 t-1" } },
  { name: "sticky: a partition claimed twice stays with the first id", assignor: "cooperative-sticky", members: ["b: t | t-0", "a: t | t-0"], counts: { t: 2 }, want: { a: "t-0", b: "t-1" } },
  { name: "sticky: partitions gone with a shrunk topic are dropped", assignor: "cooperative-sticky", members: ["a: t | t-0 t-5"], counts: { t: 2 }, want: { a: "t-0 t-1" } },
  { name: "sticky: balanced holders move nothing", assignor: "cooperative-sticky", members: ["a: t | t-1 t-4", "b: t | t-0 t-5", "c: t | t-2 t-3"], counts: { t: 6 }, want: { a: "t-1 t-4", b: "t-0 t-5", c: "t-2 t-3" } },
];

describe("assignors", () => {
  for (const row of rows) {
    it(row.name, () => {
      expect(run(row.assignor, row.members, row.counts)).toEqual(row.want);
      // Deterministic whatever the input order.
      expect(run(row.assignor, [...row.members].reverse(), row.counts)).toEqual(row.want);
    });
  }

  it("every assignor gives each partition to exactly one subscribed member; sticky keeps counts within one and moves only the excess", () => {
    const arb = fc.record({
      n: fc.integer({ min: 1, max: 6 }),
      parts: fc.integer({ min: 0, max: 20 }),
      owned: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 20 }),
    });
    fc.assert(
      fc.property(arb, ({ n, parts, owned }) => {
        const ids = Array.from({ length: n }, (_, i) => `m${i}`);
        const held = new Map<string, TopicPartition[]>(ids.map((id) => [id, []]));
        owned.forEach((holder, p) => {
          if (p < parts && holder < n) held.get(`m${holder}`)!.push({ topic: "t", partition: p });
        });
        const ms = ids.map((id) => ({ memberId: id, topics: ["t"], owned: held.get(id)! }));
        for (const name of ["range", "roundrobin", "cooperative-sticky"] as const) {
          const out = assign(name, ms, { t: parts });
          const all = [...out.values()].flat().map((x) => x.partition).sort((a, b) => a - b);
          expect(all).toEqual(Array.from({ length: parts }, (_, i) => i));
          const sizes = [...out.values()].map((l) => l.length);
          expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
          if (name === "cooperative-sticky") {
            // A member keeps min(held, its final count) of what it held: only the excess moves.
            for (const id of ids) {
              const kept = out.get(id)!.filter((x) => held.get(id)!.some((h) => h.partition === x.partition)).length;
              expect(kept).toBe(Math.min(held.get(id)!.length, out.get(id)!.length));
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("planReconciliation (revoke before reassign)", () => {
  const target = (o: Record<string, string>) => new Map(Object.entries(o).map(([k, v]) => [k, v.split(/\s+/).filter(Boolean).map(tp)]));
  const table: { name: string; target: Record<string, string>; held: Record<string, string>; want: Record<string, { assigned: string; pending: string; revoke: string }> }[] = [
    {
      name: "a partition moving from a to c is pending for c until a lets go",
      target: { a: "t-0", b: "t-1", c: "t-2" },
      held: { a: "t-0 t-2", b: "t-1", c: "" },
      want: { a: { assigned: "t-0", pending: "", revoke: "t-2" }, b: { assigned: "t-1", pending: "", revoke: "" }, c: { assigned: "", pending: "t-2", revoke: "" } },
    },
    {
      name: "once released it is assigned",
      target: { a: "t-0", c: "t-2" },
      held: { a: "t-0", c: "" },
      want: { a: { assigned: "t-0", pending: "", revoke: "" }, c: { assigned: "t-2", pending: "", revoke: "" } },
    },
    {
      name: "a swap waits on both sides",
      target: { a: "t-1", b: "t-0" },
      held: { a: "t-0", b: "t-1" },
      want: { a: { assigned: "", pending: "t-1", revoke: "t-0" }, b: { assigned: "", pending: "t-0", revoke: "t-1" } },
    },
  ];
  for (const row of table) {
    it(row.name, () => {
      const out = planReconciliation(target(row.target), target(row.held));
      const shown = Object.fromEntries([...out].map(([m, r]) => [m, { assigned: show(r.assigned), pending: show(r.pending), revoke: show(r.revoke) }]));
      expect(shown).toEqual(row.want);
    });
  }
});
