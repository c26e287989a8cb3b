/**
 * The deterministic cluster simulation (test/support/cluster-sim.ts) with 5 brokers, replication
 * factor 3, so some brokers hold no replica of a partition and forward produce calls.
 * `CLUSTER_SEED=n npx vitest run test/cluster-simulation-5.test.ts` replays one seed with its trace.
 */
import { describe, expect, it } from "vitest";
import { SEEDS_TIMEOUT_MS, runSeeds } from "./support/cluster-sim-seeds.ts";

describe("cluster simulation, 5 brokers", () => {
  it("safety after every step; no acks=all record lost", async () => {
    const run = await runSeeds("test/cluster-simulation-5.test.ts", { brokers: 5 }, 100_001);
    console.log(`cluster sim, 5 brokers: ${run.seeds} seeds in ${run.ms} ms: ${JSON.stringify(run.totals)}`);
    expect(run.totals.ackedAll).toBeGreaterThan(0);
  }, SEEDS_TIMEOUT_MS);
});
