/**
 * Regression (found by the cluster simulation, seed 5 of test/cluster-simulation.test.ts): a
 * produce retried after NOT_LEADER proposes the same batch bytes again. The leader's log stamps
 * a persisted batch's baseOffset in place, so the retry carried the first attempt's offset and the
 * next leader's log refused it as a diverged log, stopping the partition's Raft group for good.
 */
import { describe, expect, it } from "vitest";
import { ClusterNode } from "../src/cluster/cluster.ts";
import { MemNetwork } from "../src/cluster/mem-transport.ts";
import { silentLogger } from "../src/logger.ts";
import { MemFileSystem } from "../src/runtime/mem-fs.ts";
import { PartitionLog } from "../src/storage/log.ts";
import { SimClock } from "./support/sim-clock.ts";
import { batchOf, logConfig } from "./support/log-fixtures.ts";
import { rng } from "./support/random.ts";

async function settle(clock: SimClock, ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 10) {
    clock.advance(10);
    await new Promise((r) => setImmediate(r));
  }
}

describe("a partition replica's proposals", () => {
  it("take the same bytes again after an earlier attempt stamped them, and the group keeps running", async () => {
    const clock = new SimClock();
    const fs = new MemFileSystem();
    const network = new MemNetwork({ clock, random: rng(1) });
    const cluster = await ClusterNode.open(
      { self: 1, peers: [{ id: 1, address: "sim:1" }], transport: network.transport(1), fs, clock, random: rng(2), logger: silentLogger, dataDir: "/data" },
      async () => {},
    );
    const dir = "/data/topics/t~x/0";
    const log = await PartitionLog.open(dir, logConfig(), { fs, clock, logger: silentLogger }, { highWatermark: "external", keepEmptyBatches: true });
    const replica = await cluster.addReplica("t", "x", 0, dir, log, [1]);
    for (let i = 0; i < 100 && !replica.isLeader; i++) await settle(clock, 100);
    expect(replica.isLeader).toBe(true);

    const batch = batchOf([{ value: "a" }, { value: "b" }]);
    const first = replica.append(batch, -1, 1 << 20);
    await settle(clock, 50);
    const again = replica.append(batch, -1, 1 << 20); // a producer's retry of the same bytes
    await settle(clock, 50);
    const [r1, r2] = await Promise.all([first, again]);
    expect(r2.baseOffset).toBe(r1.lastOffset + 1);
    expect(replica.group.isStopped).toBe(false);
    expect(log.highWatermark).toBe(r2.lastOffset + 1);
    await cluster.close();
  });
});
