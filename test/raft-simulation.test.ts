/**
 * Deterministic simulation of whole Raft clusters (test/support/raft-sim.ts): every seed is one
 * run over a lossy, reordering, duplicating, partitioned network with crashes and restarts, with
 * the safety checkers after every step. `RAFT_SEED=n npx vitest run test/raft-simulation.test.ts`
 * replays one seed; a failure names its seed. Each size runs seeds 1 to RAFT_SEEDS (600) or until
 * RAFT_SIM_BUDGET_MS (40 s) has passed, whichever comes first, and at least RAFT_MIN_SEEDS (150):
 * on a busy machine it covers fewer seeds rather than timing out, and it says how many it ran.
 */
import { describe, expect, it } from "vitest";
import { SIM_DEFAULTS, simulate, type SimStats } from "./support/raft-sim.ts";

const replay = process.env.RAFT_SEED;
const SEEDS = Number(process.env.RAFT_SEEDS ?? 600);
const BUDGET_MS = Number(process.env.RAFT_SIM_BUDGET_MS ?? 40_000);
const MIN_SEEDS = Math.min(SEEDS, Number(process.env.RAFT_MIN_SEEDS ?? 150));

function runSeeds(nodes: number): SimStats & { seeds: number } {
  const seeds = replay !== undefined ? [Number(replay)] : Array.from({ length: SEEDS }, (_, i) => i + 1);
  const total: SimStats = { proposed: 0, acked: 0, committed: 0, leaderTerms: 0, crashes: 0, messages: 0, snapshotsSent: 0, confChanges: 0 };
  const started = performance.now();
  let ran = 0;
  for (const seed of seeds) {
    if (ran >= MIN_SEEDS && performance.now() - started > BUDGET_MS) break;
    ran++;
    let s: SimStats;
    try {
      s = simulate(seed, { ...SIM_DEFAULTS, nodes });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      throw new Error(`raft simulation failed with ${nodes} nodes, seed ${seed}: replay with RAFT_SEED=${seed} npx vitest run test/raft-simulation.test.ts\n${message}`, { cause: e });
    }
    for (const k of Object.keys(total) as (keyof SimStats)[]) total[k] += s[k];
  }
  return { ...total, seeds: ran };
}

describe("raft simulation", () => {
  it("a seed replays exactly", () => {
    expect(simulate(7, { ...SIM_DEFAULTS, nodes: 5 })).toEqual(simulate(7, { ...SIM_DEFAULTS, nodes: 5 }));
  });

  for (const nodes of [3, 5]) {
    it(`${nodes} nodes: safety after every step, no acknowledged entry lost`, () => {
      const t = runSeeds(nodes);
      console.log(`raft sim ${nodes} nodes: ${JSON.stringify(t)}`);
      expect(t.seeds).toBeGreaterThanOrEqual(replay !== undefined ? 1 : MIN_SEEDS);
      expect(t.acked).toBeGreaterThan(0);
    }, 180_000);
  }
});
