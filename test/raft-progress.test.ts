/** The leader's per-follower flow control (src/raft/progress.ts) as small tables. */
import { describe, expect, it } from "vitest";
import { Inflights, Progress } from "../src/raft/index.ts";

describe("raft inflights window", () => {
  it("fills to capacity and frees acknowledged messages in order", () => {
    const w = new Inflights(3);
    for (const i of [5, 9, 12]) w.add(i);
    expect(w.full()).toBe(true);
    expect(() => w.add(13)).toThrow(/invariant/);
    w.freeLE(9);
    expect(w.count()).toBe(1);
    w.freeFirst();
    expect(w.count()).toBe(0);
  });
});

describe("raft progress", () => {
  // [state, match, next, rejected index, hint] => [changed, next after]
  const rejections: [string, number, number, number, number, boolean, number][] = [
    ["replicate", 5, 10, 4, 4, false, 10], // older than match: stale
    ["replicate", 5, 10, 8, 3, true, 6], // back to match + 1
    ["probe", 0, 10, 9, 3, true, 4], // jump to the hint + 1
    ["probe", 0, 10, 7, 3, false, 10], // not the probe we sent: stale
    ["probe", 2, 10, 9, 2, true, 3], // never below match + 1
    // A hint below match: the follower lost entries it acknowledged (its replica was made anew); it is believed
    ["probe", 2, 10, 9, 0, true, 1],
    ["probe", 43, 44, 43, 0, true, 1], // else probed at 43, and refused, forever
  ];
  for (const [state, match, next, rejected, hint, changed, want] of rejections) {
    it(`${state} m${match} n${next}: reject ${rejected} hint ${hint} -> ${changed ? `next ${want}` : "ignored"}`, () => {
      const pr = new Progress(match, next, 4);
      if (state === "replicate") {
        pr.becomeReplicate();
        pr.optimisticUpdate(next - 1);
      }
      expect(pr.maybeDecrTo(rejected, hint)).toBe(changed);
      expect(pr.next).toBe(want);
      expect(pr.match).toBe(Math.min(match, want - 1));
    });
  }

  it("pauses: probe after one message, replicate on a full window, snapshot always", () => {
    const pr = new Progress(0, 1, 2);
    expect(pr.isPaused()).toBe(false);
    pr.probeSent = true;
    expect(pr.isPaused()).toBe(true);
    pr.maybeUpdate(3);
    pr.becomeReplicate();
    pr.inflights.add(4);
    pr.inflights.add(5);
    expect(pr.isPaused()).toBe(true);
    pr.becomeSnapshot(20);
    expect(pr.isPaused()).toBe(true);
    pr.becomeProbe();
    expect(pr.next).toBe(21); // resumes after the snapshot
  });
});
