/**
 * A peer that holds no replica of a partition forwards produce and fetch calls (and group calls) to one that
 * does. Five brokers in one process (in-memory disks, the simulated network), replication factor 3:
 * when the replica it asked first is dead, the next call goes to the next replica, so the calls
 * ride through the loss like any other (before, every retry went to the dead first replica until
 * the request timed out).
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Broker } from "../src/broker.ts";
import type { MemNetwork } from "../src/cluster/mem-transport.ts";
import { createTopicWhenReady, openSimPeer, simNetwork, simPeers, type SimPeer } from "./support/sim-peers.ts";
import { waitFor } from "./support/wait.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
let peers: SimPeer[] = [];
let network: MemNetwork;

afterEach(async () => {
  await Promise.all(peers.map((p) => p.broker?.close()));
  peers = [];
});

describe("calls forwarded for a partition without a local replica", () => {
  it("go to the next replica when the first one is dead: produce and fetch keep working", async () => {
    network = simNetwork(13);
    peers = simPeers(5);
    await Promise.all(peers.map((p) => openSimPeer(p, network, { "replication.factor": "3" }, { peers: 5 })));
    const any = peers[0]!.broker!;
    await createTopicWhenReady(any, "t", 1);
    const status = await waitFor("the partition's replicas and leader", async () => (await any.clusterStatus())?.partitions.find((p) => p.topic === "t" && p.leader !== 0));
    const replicas = status.replicas;
    const outsider = peers.find((p) => !replicas.includes(p.id))!;
    const via: Broker = await waitFor("the outsider knows the topic", () => (outsider.broker!.listTopics().some((t) => t.name === "t") ? outsider.broker! : undefined));
    await via.produce("t", [{ key: null, value: enc.encode("before") }], -1);

    // The first replica is the one a peer without a replica asks first: power it off.
    const first = peers.find((p) => p.id === replicas[0])!;
    network.crash(first.id);
    first.fs.crash("power");
    first.broker = null;

    const acked = await waitFor("a produce through the outsider taken", () =>
      via.produce("t", [{ key: null, value: enc.encode("after") }], -1).then(
        () => true,
        () => false,
      ),
      20_000,
    );
    expect(acked).toBe(true);
    const values = await waitFor("both records fetched through the outsider", async () => {
      const r = await via.fetch("t", 0, 0, { maxRecords: 10 }).catch(() => null);
      const v = r?.records.map((x) => dec.decode(x.value!)) ?? [];
      return v.includes("after") ? v : undefined;
    }, 20_000);
    expect(values).toEqual(["before", "after"]);
  }, 60_000);
});
