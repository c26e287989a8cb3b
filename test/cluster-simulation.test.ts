/**
 * The deterministic simulation of a whole cluster of 3 brokers (test/support/cluster-sim.ts):
 * real Brokers on MemFileSystems over a faulty MemNetwork on one clock, crashed by power cuts and
 * restarted, with Raft's safety properties and the records' agreement checked after every step,
 * and no acks=all record lost in the end. `CLUSTER_SEED=n npx vitest run test/cluster-simulation.test.ts`
 * replays one seed with its trace. The 5-broker runs are in cluster-simulation-5.test.ts.
 */
import { describe, expect, it } from "vitest";
import { simulateCluster } from "./support/cluster-sim.ts";
import { SEEDS_TIMEOUT_MS, replaySeed, runSeeds } from "./support/cluster-sim-seeds.ts";

describe("cluster simulation, 3 brokers", () => {
  it.runIf(replaySeed === undefined)("a seed replays exactly, without real timers or Math.random", async () => {
    const realTimeout = globalThis.setTimeout;
    const realRandom = Math.random;
    let timeouts = 0;
    let randoms = 0;
    globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
      timeouts++;
      return realTimeout(...args);
    }) as typeof setTimeout;
    Math.random = () => {
      randoms++;
      return realRandom();
    };
    try {
      const traces: string[][] = [[], []];
      const a = await simulateCluster(11, { brokers: 3, steps: 120, trace: (line) => traces[0]!.push(line) });
      const b = await simulateCluster(11, { brokers: 3, steps: 120, trace: (line) => traces[1]!.push(line) });
      expect(b).toEqual(a);
      expect(traces[1]).toEqual(traces[0]);
      expect(a.ackedAll).toBeGreaterThan(0);
      expect(a.crashes).toBeGreaterThan(0);
    } finally {
      globalThis.setTimeout = realTimeout;
      Math.random = realRandom;
    }
    expect({ timeouts, randoms }).toEqual({ timeouts: 0, randoms: 0 });
  }, 60_000);

  it("safety after every step; no acks=all record lost", async () => {
    const run = await runSeeds("test/cluster-simulation.test.ts", { brokers: 3 });
    console.log(`cluster sim, 3 brokers: ${run.seeds} seeds in ${run.ms} ms: ${JSON.stringify(run.totals)}`);
    expect(run.totals.ackedAll).toBeGreaterThan(0);
  }, SEEDS_TIMEOUT_MS);
});
