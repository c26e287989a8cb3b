/** Replica placement: distinct replicas, leaders round-robin from the cursor, balanced replicas. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { assignReplicas } from "../src/cluster/placement.ts";
import { codeOf } from "./support/errors.ts";

const peersArb = fc.uniqueArray(fc.integer({ min: 1, max: 1000 }), { minLength: 1, maxLength: 9 });
const caseArb = peersArb.chain((peers) =>
  fc.record({
    peers: fc.constant(peers),
    partitions: fc.integer({ min: 1, max: 60 }),
    rf: fc.integer({ min: 1, max: peers.length }),
    startAt: fc.nat({ max: 1000 }),
  }),
);

function counts(values: readonly number[], peers: readonly number[]): number[] {
  return peers.map((id) => values.filter((v) => v === id).length);
}

describe("assignReplicas", () => {
  it("matches Kafka's layout on a small case", () => {
    expect(assignReplicas(3, 2, [1, 2, 3], 0)).toEqual([[1, 2], [2, 3], [3, 1]]);
    // After n partitions the follower shift moves, so followers do not always sit next door.
    expect(assignReplicas(6, 2, [1, 2, 3], 0).slice(3)).toEqual([[1, 3], [2, 1], [3, 2]]);
  });

  it("gives every partition RF distinct replicas, all of them peers", () => {
    fc.assert(
      fc.property(caseArb, ({ peers, partitions, rf, startAt }) => {
        const out = assignReplicas(partitions, rf, peers, startAt);
        expect(out).toHaveLength(partitions);
        for (const rs of out) {
          expect(rs).toHaveLength(rf);
          expect(new Set(rs).size).toBe(rf);
          for (const id of rs) expect(peers).toContain(id);
        }
      }),
    );
  });

  it("puts partition p's preferred leader on peer (startAt + p) mod n, so leaders differ by at most one", () => {
    fc.assert(
      fc.property(caseArb, ({ peers, partitions, rf, startAt }) => {
        const out = assignReplicas(partitions, rf, peers, startAt);
        out.forEach((rs, p) => expect(rs[0]).toBe(peers[(startAt + p) % peers.length]));
        const leaders = counts(out.map((rs) => rs[0]!), peers);
        expect(Math.max(...leaders) - Math.min(...leaders)).toBeLessThanOrEqual(1);
      }),
    );
  });

  it("spreads replicas evenly when the partitions are a multiple of the peers", () => {
    fc.assert(
      fc.property(caseArb, fc.integer({ min: 1, max: 5 }), ({ peers, rf, startAt }, blocks) => {
        const out = assignReplicas(blocks * peers.length, rf, peers, startAt);
        expect(new Set(counts(out.flat(), peers))).toEqual(new Set([blocks * rf]));
      }),
    );
  });

  it("refuses a replication factor above the peer count, naming both numbers", async () => {
    let message = "";
    try {
      assignReplicas(3, 4, [1, 2, 3], 0);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(await codeOf(() => assignReplicas(3, 4, [1, 2, 3], 0))).toBe("INVALID_PARTITIONS");
    expect(message).toContain("4");
    expect(message).toContain("3 peers");
    expect(await codeOf(() => assignReplicas(0, 1, [1], 0))).toBe("INVALID_PARTITIONS");
    expect(await codeOf(() => assignReplicas(1, 0, [1], 0))).toBe("INVALID_PARTITIONS");
    expect(await codeOf(() => assignReplicas(1, 1, [], 0))).toBe("INVALID_PARTITIONS");
  });
});
