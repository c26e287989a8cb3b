/** Mirror lag: records, bytes, seconds, rates, drain estimates and the stalled flag, on simulated time. */
import { describe, expect, it } from "vitest";
import { Ewma, PartitionLag, summarizeLag, type LagStart } from "../src/mirror/lag.ts";

const T0 = 1_800_000_000_000;
const caughtUp = (at: number): LagStart => ({ position: at, highWatermark: at, lagBytes: 0, oldestUnmirroredMs: null, state: "connected" });

describe("Ewma", () => {
  it("converges on a steady rate and halves once per half-life after it stops", () => {
    const e = new Ewma(10_000, 1000, T0);
    for (let t = 0; t < 60_000; t += 100) e.add(10_000, T0 + t); // 100 kB/s
    expect(e.rate(T0 + 60_000)).toBeGreaterThan(0.98 * 100_000);
    expect(e.rate(T0 + 60_000)).toBeLessThan(1.0001 * 100_000);
    const at = e.rate(T0 + 60_000);
    expect(e.rate(T0 + 70_000) / at).toBeCloseTo(0.5, 5);
    expect(e.rate(T0 + 60_000 + 3_600_000)).toBeLessThan(1e-6); // an hour of silence, in one fold
  });

  it("counts a sample only once it is complete, so a partial second does not read as a slump", () => {
    const e = new Ewma(1000, 1000, T0);
    e.add(5000, T0 + 10);
    expect(e.rate(T0 + 999)).toBe(0);
    expect(e.rate(T0 + 1000)).toBeCloseTo(2500, 6); // alpha = 1/2
  });
});

describe("PartitionLag", () => {
  it("tracks lag in records, bytes and seconds as the source grows and the central acknowledges", () => {
    const lag = new PartitionLag(caughtUp(100), T0);
    expect(lag.snapshot(T0)).toMatchObject({ lagRecords: 0, lagBytes: 0, lagSeconds: 0, lastAdvanceMs: null, drainSeconds: 0, stalled: false });
    lag.sourceGrew(150, 50_000, T0 + 1000, T0 + 900);
    expect(lag.snapshot(T0 + 3000)).toMatchObject({ position: 100, highWatermark: 150, lagRecords: 50, lagBytes: 50_000, lagSeconds: 2.1 });
    lag.acknowledged(120, 20_000, T0 + 1500, T0 + 4000);
    expect(lag.snapshot(T0 + 4000)).toMatchObject({ position: 120, lagRecords: 30, lagBytes: 30_000, lagSeconds: 2.5, lastAdvanceMs: T0 + 4000 });
    lag.acknowledged(120, 0, null, T0 + 5000); // a replay acknowledged again: nothing moves
    expect(lag.snapshot(T0 + 5000)).toMatchObject({ position: 120, lastAdvanceMs: T0 + 4000 });
    lag.acknowledged(150, 30_000, null, T0 + 6000);
    expect(lag.snapshot(T0 + 6000)).toMatchObject({ lagRecords: 0, lagBytes: 0, lagSeconds: 0, drainSeconds: 0, lastAdvanceMs: T0 + 6000 });
  });

  it("ignores a high watermark that goes back (a new edge leader's commit trailing for a moment)", () => {
    const lag = new PartitionLag(caughtUp(10), T0);
    lag.sourceGrew(20, 1000, T0);
    lag.sourceGrew(15, 0, T0 + 1);
    expect(lag.snapshot(T0 + 1)).toMatchObject({ highWatermark: 20, lagRecords: 10 });
  });

  it("estimates the drain time from the measured rates, within 10% of the actual, and gives none while the source outruns the uplink", () => {
    // 20 MB behind, sending 200 kB/s while the source adds 50 kB/s: 20e6 / 150e3 = 133 s to drain.
    const lag = new PartitionLag({ position: 0, highWatermark: 20_000, lagBytes: 20_000_000, oldestUnmirroredMs: T0 - 3_600_000, state: "connected" }, T0, { rateHalfLifeMs: 5000 });
    let pos = 0;
    let hw = 20_000;
    let estimate: number | null = null;
    let drainedAt = 0;
    for (let t = 100; t <= 400_000 && !drainedAt; t += 100) {
      hw += 5;
      lag.sourceGrew(hw, 5000, T0 + t);
      pos = Math.min(hw, pos + 20);
      lag.acknowledged(pos, 20_000, T0, T0 + t);
      if (t === 30_000) estimate = lag.snapshot(T0 + t).drainSeconds;
      if (lag.snapshot(T0 + t).lagRecords === 0) drainedAt = t;
    }
    expect(estimate).not.toBeNull();
    const actualRemaining = (drainedAt - 30_000) / 1000;
    expect(Math.abs(estimate! - actualRemaining) / actualRemaining).toBeLessThan(0.1);

    const losing = new PartitionLag({ position: 0, highWatermark: 1000, lagBytes: 1_000_000, oldestUnmirroredMs: T0, state: "throttled" }, T0);
    for (let t = 100; t <= 30_000; t += 100) {
      losing.sourceGrew(1000 + t, 2000, T0 + t);
      losing.acknowledged(t / 100, 1000, T0, T0 + t);
    }
    expect(losing.snapshot(T0 + 30_000)).toMatchObject({ drainSeconds: null, state: "throttled" });
    expect(losing.snapshot(T0 + 30_000).sourceBytesPerSec).toBeGreaterThan(losing.snapshot(T0 + 30_000).sendBytesPerSec);
  });

  it("flags a partition stalled once the source advances and the position has not moved for the threshold", () => {
    const lag = new PartitionLag(caughtUp(0), T0, { stallAfterMs: 10_000 });
    // Caught up and idle for an hour: not stalled.
    expect(lag.snapshot(T0 + 3_600_000).stalled).toBe(false);
    // A record appears after the long quiet: the stall clock starts now, not at the last advance.
    lag.sourceGrew(1, 100, T0 + 3_600_000);
    expect(lag.snapshot(T0 + 3_609_999).stalled).toBe(false);
    expect(lag.snapshot(T0 + 3_610_000).stalled).toBe(true);
    // The source keeps going, the central does not: still stalled; an advance clears it.
    lag.sourceGrew(5, 400, T0 + 3_615_000);
    expect(lag.snapshot(T0 + 3_615_000).stalled).toBe(true);
    lag.acknowledged(3, 300, T0, T0 + 3_616_000);
    expect(lag.snapshot(T0 + 3_616_000).stalled).toBe(false);
    expect(lag.snapshot(T0 + 3_626_000).stalled).toBe(true);
  });

  it("does not flag a paused link, and restarts the clock when it resumes", () => {
    const lag = new PartitionLag({ position: 0, highWatermark: 50, lagBytes: 5000, oldestUnmirroredMs: T0, state: "paused" }, T0, { stallAfterMs: 10_000 });
    expect(lag.snapshot(T0 + 60_000)).toMatchObject({ stalled: false, state: "paused", lagRecords: 50, lagSeconds: 60 });
    lag.setState("backing-off", T0 + 60_000);
    expect(lag.snapshot(T0 + 69_999).stalled).toBe(false);
    expect(lag.snapshot(T0 + 70_000)).toMatchObject({ stalled: true, state: "backing-off" });
  });

  it("sums a link: lag, the worst lag in seconds, and the drain time of the whole backlog at the whole rate", () => {
    const a = new PartitionLag({ position: 0, highWatermark: 10, lagBytes: 300_000, oldestUnmirroredMs: T0 - 5000, state: "connected" }, T0, { rateHalfLifeMs: 1000 });
    const b = new PartitionLag({ position: 0, highWatermark: 10, lagBytes: 100_000, oldestUnmirroredMs: T0 - 9000, state: "connected" }, T0, { rateHalfLifeMs: 1000, stallAfterMs: 1000 });
    for (let t = 0; t < 20_000; t += 100) a.acknowledged(0, 1000, T0, T0 + t); // 10 kB/s through a, none through b
    const s = summarizeLag([a.snapshot(T0 + 20_000), b.snapshot(T0 + 20_000)]);
    expect(s).toMatchObject({ partitions: 2, lagRecords: 20, lagBytes: 400_000, maxLagSeconds: 29, stalledPartitions: 1 });
    expect(s.drainSeconds!).toBeCloseTo(400_000 / s.sendBytesPerSec, 6);
    expect(s.sendBytesPerSec).toBeGreaterThan(9_990);
  });
});
