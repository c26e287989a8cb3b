/**
 * BatchIndex against a plain array of {term, base, last}: random appends (terms changing now and
 * then, batches of 1 to 5 offsets), truncations and front drops, and after every step every
 * position's term and offsets and `find` of every offset (and of offsets outside) agree.
 */
import { describe, expect, it } from "vitest";
import { BatchIndex } from "../src/cluster/batch-index.ts";
import { rng } from "./support/random.ts";

interface Row {
  term: number;
  base: number;
  last: number;
}

function check(index: BatchIndex, model: Row[], where: string): void {
  expect(index.length, where).toBe(model.length);
  model.forEach((r, p) => {
    expect([index.term(p), index.baseOffset(p), index.lastOffset(p)], `${where}, position ${p}`).toEqual([r.term, r.base, r.last]);
    for (let o = r.base; o <= r.last; o++) expect(index.find(o), `${where}, find ${o}`).toBe(p);
  });
  const first = model[0]?.base ?? 0;
  const end = model.length > 0 ? model[model.length - 1]!.last + 1 : 0;
  expect(index.find(first - 1), `${where}, below`).toBe(-1);
  expect(index.find(end), `${where}, past the end`).toBe(-1);
}

describe("BatchIndex", () => {
  it("agrees with a plain array through random appends, truncations and front drops", () => {
    for (let seed = 1; seed <= 60; seed++) {
      const random = rng(seed);
      const index = new BatchIndex();
      const model: Row[] = [];
      let term = 1;
      let next = Math.floor(random() * 1000);
      for (let step = 0; step < 120; step++) {
        const r = random();
        const where = `seed ${seed}, step ${step}`;
        if (r < 0.7) {
          if (random() < 0.1) term += 1 + Math.floor(random() * 3);
          const size = 1 + Math.floor(random() * 5);
          index.push(term, next, next + size - 1);
          model.push({ term, base: next, last: next + size - 1 });
          next += size;
        } else if (r < 0.85) {
          const n = Math.floor(random() * (model.length + 1));
          index.truncate(n);
          model.length = n;
          next = n > 0 ? model[n - 1]!.last + 1 : (model[0]?.base ?? next);
          // a new leader's batches after a cut come in a term above every one before
          term += 1;
        } else {
          const n = Math.floor(random() * (model.length + 1));
          index.dropFront(n);
          model.splice(0, n);
        }
        check(index, model, where);
      }
    }
  });

  it("refuses a batch that does not follow the last one", () => {
    const index = new BatchIndex();
    index.push(1, 10, 12);
    expect(() => index.push(1, 14, 15)).toThrow(/does not follow/);
    expect(() => index.push(1, 13, 12)).toThrow(/ends before it starts/);
  });
});
