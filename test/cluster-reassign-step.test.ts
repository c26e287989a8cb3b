/** The pure parts of moving replicas: the leader's next step (reassign.ts) and the spare chosen for a removed peer (placement.ts). */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { replaceReplica } from "../src/cluster/placement.ts";
import { CATCH_UP_ENTRIES, nextMoveStep, type MoveView } from "../src/cluster/reassign.ts";

function view(voters: number[], target: number[], opts: { self?: number; dead?: number[]; lagging?: number[]; lastIndex?: number; baseline?: number } = {}): MoveView {
  const lastIndex = opts.lastIndex ?? 1000;
  return {
    self: opts.self ?? voters[0]!,
    voters,
    target,
    lastIndex,
    baseline: opts.baseline ?? 0,
    active: (id) => !(opts.dead ?? []).includes(id),
    match: (id) => ((opts.lagging ?? []).includes(id) ? lastIndex - CATCH_UP_ENTRIES - 1 : lastIndex),
  };
}

describe("nextMoveStep", () => {
  it("adds the new replica first, removes the old one once it caught up, then completes", () => {
    expect(nextMoveStep(view([1, 2, 3], [1, 2, 4]))).toEqual({ kind: "add", peer: 4 });
    expect(nextMoveStep(view([1, 2, 3, 4], [1, 2, 4], { lagging: [4] }))).toEqual({ kind: "wait" });
    expect(nextMoveStep(view([1, 2, 3, 4], [1, 2, 4]))).toEqual({ kind: "remove", peer: 3 });
    expect(nextMoveStep(view([1, 2, 4], [1, 2, 4]))).toEqual({ kind: "complete" });
  });

  it("on a short log, waits until the new voter holds the entries committed when it was added", () => {
    const short = (match4: number): MoveView => ({ ...view([1, 2, 3, 4], [1, 2, 4], { lastIndex: 15, baseline: 12 }), match: (id) => (id === 4 ? match4 : 15) });
    expect(nextMoveStep(short(0))).toEqual({ kind: "wait" });
    expect(nextMoveStep(short(11))).toEqual({ kind: "wait" });
    expect(nextMoveStep(short(12))).toEqual({ kind: "remove", peer: 3 });
  });

  it("removes a dead voter before adding, so the group keeps a quorum of live voters", () => {
    expect(nextMoveStep(view([1, 2, 3], [1, 2, 4], { dead: [3] }))).toEqual({ kind: "remove", peer: 3 });
    expect(nextMoveStep(view([1, 2, 3], [1, 2], { dead: [3] }))).toEqual({ kind: "remove", peer: 3 });
    expect(nextMoveStep(view([1, 2], [1, 2, 4]))).toEqual({ kind: "add", peer: 4 });
  });

  it("removes no voter while the rest would lack a quorum of caught-up live voters", () => {
    // The new voter 4 lags and 2 is dead: removing 3 would leave 1 alone caught up of [1, 2, 4].
    expect(nextMoveStep(view([1, 2, 3, 4], [1, 2, 4], { lagging: [4], dead: [2] }))).toEqual({ kind: "wait" });
    // A dead target voter does not hold the move up while the others make a quorum.
    expect(nextMoveStep({ ...view([1, 2, 3, 4], [3, 4, 1], { self: 2, dead: [1] }) })).toEqual({ kind: "transfer", to: 3 });
  });

  it("never removes the leader itself: it hands leadership to a caught-up target voter", () => {
    expect(nextMoveStep(view([1, 2, 3, 4], [2, 3, 4], { self: 1 }))).toEqual({ kind: "transfer", to: 2 });
    expect(nextMoveStep(view([1, 2, 3, 4], [2, 3, 4], { self: 1, lagging: [4] }))).toEqual({ kind: "wait" });
  });

  it("reaches the target from any group and any dead peers, one voter at a time, never with no voter, never removing the leader itself", () => {
    const ids = fc.uniqueArray(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 5 });
    fc.assert(
      fc.property(ids, ids, fc.subarray([1, 2, 3, 4, 5, 6]), (start, target, anyDead) => {
        // Peers leaving may be dead; those staying are alive (with dead ones among them a move may have to wait).
        const dead = anyDead.filter((id) => !target.includes(id));
        let voters = [...start].sort((a, b) => a - b);
        let self = voters[0]!;
        for (let steps = 0; steps < 30; steps++) {
          const s = nextMoveStep(view(voters, target, { self, dead: dead.filter((d) => d !== self) }));
          if (s.kind === "complete") {
            expect([...voters].sort()).toEqual([...target].sort());
            return;
          }
          if (s.kind === "add") voters = [...voters, s.peer].sort((a, b) => a - b);
          else if (s.kind === "remove") {
            expect(s.peer).not.toBe(self);
            voters = voters.filter((id) => id !== s.peer);
          } else if (s.kind === "transfer") self = s.to;
          else throw new Error("waits although every voter is caught up");
          expect(voters.length).toBeGreaterThan(0);
        }
        throw new Error(`no completion from ${start} to ${target}`);
      }),
    );
  });
});

describe("replaceReplica", () => {
  it("puts the least loaded spare in the removed peer's place", () => {
    expect(replaceReplica([3, 1, 2], 3, [1, 2, 3, 4, 5], new Map([[4, 2], [5, 1]]))).toEqual([5, 1, 2]);
    expect(replaceReplica([3, 1, 2], 3, [1, 2, 3, 4, 5], new Map())).toEqual([4, 1, 2]);
  });

  it("shrinks the partition when every other peer holds it already, but never to no replica", () => {
    expect(replaceReplica([1, 2, 3], 2, [1, 2, 3], new Map())).toEqual([1, 3]);
    expect(() => replaceReplica([2], 2, [2], new Map())).toThrow(/only replica/);
    expect(replaceReplica([2], 2, [1, 2], new Map())).toEqual([1]);
  });
});
