/**
 * Running many seeds of the cluster simulation (test/support/cluster-sim.ts) within a time budget,
 * shared by the 3-broker and the 5-broker test files (two files, so vitest runs them side by side).
 *
 * `CLUSTER_SEED=n` runs that one seed alone and prints its step trace; `CLUSTER_SIM_BUDGET_MS`
 * changes how long each file keeps starting new seeds (default 45 s, so the two files together
 * take about 90-100 s on a 2-core machine); `CLUSTER_SEEDS` caps the count instead;
 * `CLUSTER_FIRST_SEED` starts elsewhere (CI can spread seeds over runs).
 */
import { simulateCluster, type ClusterSimOptions, type ClusterSimStats } from "./cluster-sim.ts";

export const replaySeed = process.env.CLUSTER_SEED !== undefined ? Number(process.env.CLUSTER_SEED) : undefined;
const BUDGET_MS = Number(process.env.CLUSTER_SIM_BUDGET_MS ?? 100_000);
/** A test's timeout: the budget, plus room for the last seed started and for a slow machine. */
export const SEEDS_TIMEOUT_MS = BUDGET_MS + 120_000;
const MAX_SEEDS = Number(process.env.CLUSTER_SEEDS ?? Number.MAX_SAFE_INTEGER);
const FIRST_SEED_OFFSET = Number(process.env.CLUSTER_FIRST_SEED ?? 0);

export interface SeedsRun {
  seeds: number;
  totals: Omit<ClusterSimStats, "digest">;
  ms: number;
}

/** Seeds from `first` on until the budget is spent; a failure names its seed and how to replay it. */
export async function runSeeds(file: string, options: Partial<ClusterSimOptions>, first = 1): Promise<SeedsRun> {
  const started = Date.now();
  const totals: Record<string, number> = {};
  const seeds = replaySeed !== undefined ? [replaySeed] : null;
  let count = 0;
  for (let i = 0; seeds ? i < seeds.length : Date.now() - started < BUDGET_MS && count < MAX_SEEDS; i++) {
    const seed = seeds ? seeds[i]! : first + FIRST_SEED_OFFSET + i;
    const trace = seeds ? (line: string) => console.log(line) : null;
    let s: ClusterSimStats;
    try {
      s = await simulateCluster(seed, { ...options, trace });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      throw new Error(`cluster simulation failed with ${options.brokers ?? 3} brokers, seed ${seed}: replay with CLUSTER_SEED=${seed} npx vitest run ${file}\n${message}`, { cause: e });
    }
    count++;
    for (const [k, v] of Object.entries(s)) if (k !== "digest") totals[k] = (totals[k] ?? 0) + v;
  }
  return { seeds: count, totals: totals as SeedsRun["totals"], ms: Date.now() - started };
}
