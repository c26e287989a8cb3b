/**
 * The resume planner as a script: each line is a case, `inputs => expected plan`, so a new case
 * is one line. Inputs: `ckpt=` (edge checkpoint, `-` for none), `central=` (central position, `-`
 * for none), `log=start-hw` (and `end=` when the log end is past the high watermark), `dropped=`
 * (the drop ledger, `reason:from-to,...`). Plans: `resume FROM [gaps=reason:from-to,...]
 * [notes=a,b]`, `wait`, or `diverged`. Then properties over random inputs.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { planResume, type ResumeInput, type ResumePlan } from "../src/mirror/resume.ts";
import type { DroppedRange } from "../src/mirror/types.ts";

const script = `
# the central's position is in the log: resume there, whatever the checkpoint says
ckpt=100 central=100 log=0-150                       => resume 100
ckpt=90 central=100 log=0-150                        => resume 100 notes=checkpoint-stale
ckpt=- central=100 log=0-150                         => resume 100 notes=checkpoint-missing
ckpt=150 central=150 log=0-150                       => resume 150
ckpt=0 central=0 log=0-0                             => resume 0
# a new link, and a central that lost everything
ckpt=- central=- log=40-150                          => resume 40 notes=new-link
ckpt=120 central=- log=40-150                        => resume 40 notes=central-reset
# the edge's retention passed the central's position: report, resume at the log start
ckpt=100 central=100 log=300-400                     => resume 300 gaps=retention:100-300
ckpt=100 central=100 log=300-400 dropped=disk-budget:100-250 => resume 300 gaps=disk-budget:100-250,retention:250-300
ckpt=100 central=100 log=300-400 dropped=disk-budget:0-120,disk-budget:120-200,retention:200-310 => resume 300 gaps=disk-budget:100-200,retention:200-300
ckpt=- central=100 log=300-400 dropped=disk-budget:150-200 => resume 300 gaps=retention:100-150,disk-budget:150-200,retention:200-300 notes=checkpoint-missing
# a ledger entry outside the gap does not matter
ckpt=100 central=100 log=300-400 dropped=disk-budget:10-50 => resume 300 gaps=retention:100-300
# the central is behind what it acknowledged: resend what the edge still has, report the rest
ckpt=200 central=150 log=0-300                       => resume 150 notes=central-behind
ckpt=200 central=100 log=150-300                     => resume 150 gaps=central-lost:100-150 notes=central-behind
ckpt=200 central=100 log=250-300                     => resume 250 gaps=central-lost:100-200,retention:200-250 notes=central-behind
ckpt=200 central=100 log=250-300 dropped=disk-budget:120-130 => resume 250 gaps=central-lost:100-120,disk-budget:120-130,central-lost:130-200,retention:200-250 notes=central-behind
# the central is past the edge's high watermark but not its log end: a new edge leader's commit lags; wait
ckpt=100 central=160 log=0-150 end=170               => wait
ckpt=100 central=170 log=0-150 end=170               => wait
# past the log end: the central holds what this log never had
ckpt=100 central=171 log=0-150 end=170               => diverged
ckpt=- central=5 log=0-0                             => diverged
# a checkpoint past the log's end belongs to an older log: ignored
ckpt=900 central=100 log=0-150                       => resume 100 notes=checkpoint-ahead-of-log,checkpoint-missing
ckpt=900 central=- log=0-150                         => resume 0 notes=checkpoint-ahead-of-log,new-link
`;

function parseRanges(spec: string): DroppedRange[] {
  if (!spec) return [];
  return spec.split(",").map((part) => {
    const [reason, span] = part.split(":") as [DroppedRange["reason"], string];
    const [from, to] = span.split("-").map(Number) as [number, number];
    return { reason, from, to };
  });
}

function parseInput(line: string): ResumeInput {
  const kv = Object.fromEntries(line.trim().split(/\s+/).map((t) => t.split("=") as [string, string]));
  const num = (v: string | undefined) => (v === undefined || v === "-" ? null : Number(v));
  const [start, hw] = kv.log!.split("-").map(Number) as [number, number];
  return { checkpoint: num(kv.ckpt), central: num(kv.central), logStartOffset: start, highWatermark: hw, logEndOffset: num(kv.end) ?? hw, dropped: parseRanges(kv.dropped ?? "") };
}

function show(plan: ResumePlan): string {
  if (plan.kind !== "resume") return plan.kind;
  const parts = [`resume ${plan.from}`];
  if (plan.gaps.length) parts.push(`gaps=${plan.gaps.map((g) => `${g.reason}:${g.from}-${g.to}`).join(",")}`);
  if (plan.notes.length) parts.push(`notes=${plan.notes.join(",")}`);
  return parts.join(" ");
}

const cases = script
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"))
  .map((l) => l.split("=>").map((s) => s.trim()) as [string, string]);

describe("planResume", () => {
  for (const [input, want] of cases) {
    it(`${input} => ${want}`, () => {
      const plan = planResume(parseInput(input));
      expect(show(plan)).toBe(want);
      if (plan.kind === "resume") expect(plan.checkpoint).toBe(plan.from);
    });
  }

  const inputArb = fc
    .record({
      start: fc.nat({ max: 500 }),
      len: fc.nat({ max: 500 }),
      uncommitted: fc.nat({ max: 50 }),
      central: fc.option(fc.nat({ max: 1200 })),
      checkpoint: fc.option(fc.nat({ max: 1200 })),
      dropped: fc.array(
        fc.record({ from: fc.nat({ max: 1000 }), len: fc.nat({ max: 200 }), reason: fc.constantFrom("disk-budget" as const, "retention" as const) }),
        { maxLength: 6 },
      ),
    })
    .map(
      (r): ResumeInput => ({
        checkpoint: r.checkpoint,
        central: r.central,
        logStartOffset: r.start,
        highWatermark: r.start + r.len,
        logEndOffset: r.start + r.len + r.uncommitted,
        dropped: r.dropped.map((d) => ({ from: d.from, to: d.from + d.len, reason: d.reason })),
      }),
    );

  it("resumes inside the log, never below the central, and reports exactly the offsets the central lacks below the resume point", () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        const plan = planResume(input);
        const c = input.central;
        const want = c !== null && c > input.logEndOffset ? "diverged" : c !== null && c > input.highWatermark ? "wait" : "resume";
        expect(plan.kind).toBe(want);
        if (plan.kind !== "resume") return;
        expect(plan.from).toBeGreaterThanOrEqual(input.logStartOffset);
        expect(plan.from).toBeLessThanOrEqual(input.highWatermark);
        if (c === null) {
          expect(plan.from).toBe(input.logStartOffset);
          expect(plan.gaps).toEqual([]);
          return;
        }
        expect(plan.from).toBeGreaterThanOrEqual(c);
        // Gaps: sorted, disjoint, non-empty, neighbours of one reason merged, covering [c, from).
        let at = c;
        plan.gaps.forEach((g, i) => {
          expect(g.from).toBe(at);
          expect(g.to).toBeGreaterThan(g.from);
          if (i > 0) expect(g.reason).not.toBe(plan.gaps[i - 1]!.reason);
          at = g.to;
        });
        expect(at).toBe(plan.from);
        if (c >= input.logStartOffset) expect(plan.gaps).toEqual([]);
      }),
    );
  });

  it("names a lost offset by the drop ledger, else central-lost below the checkpoint, else retention", () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        const plan = planResume(input);
        if (plan.kind !== "resume") return;
        const ckpt = input.checkpoint !== null && input.checkpoint <= input.logEndOffset ? input.checkpoint : null;
        for (const g of plan.gaps) {
          for (let o = g.from; o < g.to; o++) {
            // The first ledger entry covering o wins, as the ledger is written oldest first.
            const entry = input.dropped.find((d) => d.from <= o && o < d.to);
            const want = entry ? entry.reason : ckpt !== null && o < ckpt ? "central-lost" : "retention";
            expect(g.reason, `offset ${o}`).toBe(want);
          }
        }
      }),
    );
  });

  it("is idempotent: planning again from the plan's own checkpoint and the central at the resume point changes nothing", () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        const plan = planResume(input);
        if (plan.kind !== "resume") return;
        const again = planResume({ ...input, checkpoint: plan.checkpoint, central: plan.from });
        expect(again).toEqual({ kind: "resume", from: plan.from, gaps: [], checkpoint: plan.from, notes: [] });
      }),
    );
  });
});
