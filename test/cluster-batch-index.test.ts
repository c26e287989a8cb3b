/**
 * BatchIndex against a plain array of {term, base, last}: random appends (terms changing now and
 * then, batches of 1 to 5 offsets), truncations and front drops, and after every step every
 * position's term and offsets and `find` of every offset (and of offsets outside) agree. Then
 * the same with small limits and the owner settling positions: every position from the settled
 * mark on stays exact, those below give a sampled batch at or before them, and the offsets held
 * stay within the limits.
 */
import { describe, expect, it } from "vitest";
import { BatchIndex, type BatchIndexLimits } from "../src/cluster/batch-index.ts";
import { rng } from "./support/random.ts";

interface Row {
  term: number;
  base: number;
  last: number;
}

/** Every way the index can disagree with the model, as text (empty: none); plain checks, one expect. */
function check(index: BatchIndex, model: Row[], where: string, settled = 0): void {
  const bad: string[] = [];
  const fail = (what: string, got: unknown, want: unknown) => bad.push(`${what}: ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  if (index.length !== model.length) fail("length", index.length, model.length);
  const firstExact = index.firstExact;
  // Exact from the settled mark on, whatever the limits.
  if (firstExact > Math.max(0, Math.min(settled, model.length))) fail("first exact position", firstExact, `at most ${settled}`);
  model.forEach((r, p) => {
    if (index.term(p) !== r.term) fail(`term at ${p}`, index.term(p), r.term);
    if (p >= firstExact) {
      if (index.baseOffset(p) !== r.base || index.lastOffset(p) !== r.last) fail(`offsets at ${p}`, [index.baseOffset(p), index.lastOffset(p)], [r.base, r.last]);
    } else if (index.baseOffset(p) !== undefined) fail(`offset at ${p}, below the window`, index.baseOffset(p), undefined);
    const near = index.nearest(p);
    if (near.position > p || near.baseOffset !== model[near.position]?.base || (p >= firstExact && near.position !== p)) fail(`nearest ${p}`, near, p);
    for (let o = r.base; o <= r.last; o++) {
      const f = index.find(o);
      const ok = f !== null && f.baseOffset === model[f.position]?.base && f.exact === p >= firstExact && (f.exact ? f.position === p : f.position <= p);
      if (!ok) fail(`find ${o} (held at ${p})`, f, p);
    }
  });
  const first = model[0]?.base ?? 0;
  const end = model.length > 0 ? model[model.length - 1]!.last + 1 : 0;
  if (index.find(first - 1) !== null) fail("find below", index.find(first - 1), null);
  if (index.find(end) !== null) fail("find past the end", index.find(end), null);
  expect(bad, where).toEqual([]);
}

describe("BatchIndex", () => {
  /** Returns how many steps ended with part of the index sparse. */
  function randomRun(seed: number, limits: BatchIndexLimits | undefined, steps: number, settleEvery: boolean): number {
    let sparseSteps = 0;
    const random = rng(seed);
    const index = new BatchIndex(limits);
    const model: Row[] = [];
    let term = 1;
    let next = Math.floor(random() * 1000);
    let settled = 0;
    for (let step = 0; step < steps; step++) {
      const r = random();
      const where = `seed ${seed}, step ${step}`;
      if (r < 0.7) {
        if (random() < 0.1) term += 1 + Math.floor(random() * 3);
        const size = 1 + Math.floor(random() * 5);
        index.push(term, next, next + size - 1);
        model.push({ term, base: next, last: next + size - 1 });
        next += size;
      } else if (r < 0.8) {
        // a cut is never below what the owner settled (ReplicaLog cuts only unapplied entries)
        const low = Math.min(settled, model.length);
        const n = low + Math.floor(random() * (model.length - low + 1));
        index.truncate(n);
        model.length = n;
        next = n > 0 ? model[n - 1]!.last + 1 : (model[0]?.base ?? next);
        settled = Math.min(settled, n);
        // a new leader's batches after a cut come in a term above every one before
        term += 1;
      } else if (r < 0.9 || !settleEvery) {
        // retention drops only applied (settled) batches; with every offset exact, any prefix
        const n = Math.floor(random() * ((settleEvery ? Math.min(settled, model.length) : model.length) + 1));
        index.dropFront(n, model[n]?.base);
        model.splice(0, n);
        settled -= Math.min(settled, n);
      } else {
        settled = Math.max(settled, Math.floor(random() * (model.length + 1)));
        index.settle(settled);
      }
      check(index, model, where, settled);
      if (index.firstExact > 0) sparseSteps++;
      if (limits) expect(index.heldOffsets, `${where}, offsets held`).toBeLessThanOrEqual(Math.max(2 * limits.exactBatches!, model.length - settled) + limits.maxSamples! + 1);
    }
    return sparseSteps;
  }

  it("agrees with a plain array through random appends, truncations and front drops", () => {
    for (let seed = 1; seed <= 60; seed++) expect(randomRun(seed, undefined, 120, false)).toBe(0);
  });

  it("with small limits: exact from the settled mark on, samples below it, and never more offsets than the limits", () => {
    let sparse = 0;
    for (let seed = 1; seed <= 60; seed++) sparse += randomRun(seed, { exactBatches: 4, maxSamples: 3 }, 300, true);
    expect(sparse).toBeGreaterThan(60 * 300 * 0.2); // the sparse paths did run
  });

  it("holds a bounded number of offsets for a million settled batches, and still finds every sampled one", () => {
    const index = new BatchIndex({ exactBatches: 1024, maxSamples: 256 });
    for (let p = 0; p < 1_000_000; p++) {
      index.push(1 + Math.floor(p / 100_000), 3 * p, 3 * p + 2);
      if (p % 1000 === 999) index.settle(p);
    }
    expect(index.heldOffsets).toBeLessThanOrEqual(2 * 1024 + 256);
    expect(index.firstExact).toBeGreaterThanOrEqual(1_000_000 - 2 * 1024);
    expect(index.term(0)).toBe(1);
    expect(index.term(999_999)).toBe(10);
    for (const p of [0, 1, 12_345, 500_000, 999_000]) {
      const near = index.nearest(p);
      expect(near.baseOffset).toBe(3 * near.position);
      expect(p - near.position).toBeLessThan(1_000_000 / 128);
      const f = index.find(3 * p + 1)!;
      expect(f.baseOffset).toBe(3 * f.position);
      expect(f.position).toBeLessThanOrEqual(p);
    }
    expect(index.lastOffset(999_999)).toBe(2_999_999);
  });

  it("refuses a batch that does not follow the last one", () => {
    const index = new BatchIndex();
    index.push(1, 10, 12);
    expect(() => index.push(1, 14, 15)).toThrow(/does not follow/);
    expect(() => index.push(1, 13, 12)).toThrow(/ends before it starts/);
  });
});
