/**
 * The cluster on Deno: three Deno brokers (default `cluster.tick.ms` 100) create a topic, take an
 * acks=all load, lose their partition leader to SIGKILL, serve again from a new leader, take the
 * killed peer back on its data dir, and lose nothing acknowledged (the same scenario as the Bun
 * run in cluster-process.test.ts, support/cluster-scenarios.ts).
 */
import { afterEach, describe, expect, it } from "vitest";
import { startClusterProcess, type ClusterProcess } from "./support/cluster-process.ts";
import { createTopic } from "./support/cluster-client.ts";
import { killLeaderUnderLoad, tails, TOPIC } from "./support/cluster-scenarios.ts";

let cluster: ClusterProcess | null = null;

afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

describe("three Deno brokers as a cluster", () => {
  it("lose the leader to SIGKILL under an acks=all load: a new leader serves, and nothing acknowledged is lost", async () => {
    cluster = await startClusterProcess({ runtime: "deno" });
    const c = cluster;
    await createTopic(c, c.nodes[1]!, TOPIC);
    const { recoveredMs, newLeader } = await killLeaderUnderLoad(c);
    expect(recoveredMs, `new leader: peer ${newLeader + 1}\n${tails(c)}`).toBeLessThan(3000);
  });
});
