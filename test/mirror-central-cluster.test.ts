/**
 * The central as a three-broker cluster in one process (in-memory disks, the simulated network of
 * src/cluster/mem-transport.ts, as test/cluster-broker.test.ts): sends taken by a follower are
 * admitted on the target partition's leader; the leader crashes (power cut) with sends in flight;
 * the edge resends from the position the new leader answers, and the target holds every source
 * record once, in order.
 */
import { afterEach, describe, expect, it } from "vitest";
import { Broker } from "../src/broker.ts";
import type { MemNetwork } from "../src/cluster/mem-transport.ts";
import { partitionGroupId } from "../src/cluster/types.ts";
import { binding, centralSend, sourceLog, targetRecords, targetValues, type SourceBatch } from "./support/mirror-fixtures.ts";
import { openSimPeer, simNetwork, simPeers, type SimPeer } from "./support/sim-peers.ts";
import { waitFor } from "./support/wait.ts";

type Node = SimPeer;

let nodes: Node[] = [];
let network: MemNetwork;

function openNode(n: Node, transport = network.transport(n.id)): Promise<Broker> {
  return openSimPeer(n, network, { "cluster.request.timeout.ms": "8000", "mirror.central": "true" }, { transport });
}

const live = () => nodes.flatMap((n) => (n.broker ? [n.broker] : []));

afterEach(async () => {
  await Promise.all(live().map((b) => b.close()));
  nodes = [];
});

function leaderNode(group: string): Node | undefined {
  return nodes.find((n) => n.broker?.cluster!.status().find((g) => g.group === group)?.role === "leader");
}

describe("a three-broker central", () => {
  it("admits sends through a follower on the leader; after the leader's crash the edge resends from the new leader's position: no duplicate, no gap", async () => {
    network = simNetwork(5);
    nodes = simPeers(3);
    await Promise.all(nodes.map((n) => openNode(n)));
    await waitFor("a controller leader", () => live().every((b) => b.cluster!.controller.group.leader !== 0));

    const [w] = await live()[1]!.mirrorOpen({ link: "l", cluster: "site7", topics: [binding("t", "site7.t")] });
    expect(w).toMatchObject({ ok: true, positions: [null] });
    await waitFor("the target on every peer", () => live().every((b) => b.listTopics().some((t) => t.name === "site7.t")));
    const group = partitionGroupId(w!.ok ? w!.targetTopicId : "", 0);
    const leader = await waitFor("a leader of the target", () => leaderNode(group));
    const follower = nodes.find((n) => n !== leader)!;
    const src = sourceLog(Array.from({ length: 60 }, () => 3));
    const from = (i: number) => (i === 0 ? 0 : src[i - 1]!.to);
    const sendAt = (b: Broker, i: number, k = 1) => b.mirrorAppend(centralSend("site7", "t", 0, src.slice(i, i + k), { fromOffset: from(i) }));

    // Sends through the follower, pipelined; they are admitted in order on the leader.
    const first = await Promise.all(Array.from({ length: 20 }, (_, i) => sendAt(follower.broker!, i)));
    expect(first).toEqual(src.slice(0, 20).map((b) => b.to));
    // A replay through the follower: nothing written, the same position.
    expect(await sendAt(follower.broker!, 10, 10)).toBe(src[19]!.to);

    // More sends in flight, and the leader loses power.
    const inflight = Array.from({ length: 10 }, (_, i) => sendAt(follower.broker!, 20 + i).catch((e: unknown) => e));
    network.crash(leader.id);
    leader.fs.crash("power");
    leader.broker = null;
    await Promise.all(inflight);

    // The edge re-opens (at the surviving follower) and resends from the position it learns.
    const survivor = follower.broker!;
    let next = 0;
    for (;;) {
      const [again] = await survivor.mirrorOpen({ link: "l", cluster: "site7", topics: [binding("t", "site7.t")] });
      const position = again!.ok ? again!.positions[0]! : null;
      next = src.findIndex((b) => b.from >= (position ?? 0));
      if (next < 0) break;
      // A resend from a little before the position: the overlap is dropped as a replay.
      const start = Math.max(0, next - 2);
      const acked = await sendAt(survivor, start, 4);
      expect(acked).toBe(src[Math.min(start + 3, src.length - 1)]!.to);
    }
    // The new leader may be the third peer: the survivor's replica learns the commit a heartbeat
    // later, so read it once it holds as many records (the flake under load: read too soon).
    await waitFor("the survivor's replica to hold every record", async () => (await targetValues(survivor, "site7.t", 0)).length >= src.length * 3);
    expect(await targetValues(survivor, "site7.t", 0)).toEqual(src.flatMap((b) => b.values));
    expect((await survivor.mirrorPositions("site7"))[0]!.positions).toEqual([src.at(-1)!.to]);

    // The crashed peer comes back on what its disk kept, catches up, and holds the same copy.
    const back = await openNode(leader, network.restart(leader.id));
    await waitFor("the restarted peer to catch up", async () => {
      const v = await targetValues(back, "site7.t", 0).catch(() => []);
      return v.length === src.length * 3;
    });
    expect(await targetValues(back, "site7.t", 0)).toEqual(src.flatMap((b) => b.values));
  }, 60_000);

  it("a new leader holding a send it has not committed answers positions only once its own term's entry is committed", async () => {
    network = simNetwork(3);
    nodes = simPeers(3);
    await Promise.all(nodes.map((n) => openNode(n)));
    await waitFor("a controller leader", () => live().every((b) => b.cluster!.controller.group.leader !== 0));
    const [w] = await live()[0]!.mirrorOpen({ link: "l", cluster: "site7", topics: [binding("t", "site7.t")] });
    await waitFor("the target on every peer", () => live().every((b) => b.listTopics().some((t) => t.name === "site7.t")));
    const group = partitionGroupId(w!.ok ? w!.targetTopicId : "", 0);
    const status = (n: Node) => n.broker!.cluster!.status().find((g) => g.group === group)!;
    const a = await waitFor("a leader of the target", () => leaderNode(group));
    const [b, c] = nodes.filter((n) => n !== a) as [Node, Node];
    const src = sourceLog([3, 3]);
    await a.broker!.mirrorAppend(centralSend("site7", "t", 0, [src[0]!]));

    // The second send reaches b only, and a never hears b's answer: a cannot commit it. Then a dies.
    network.partition(b.id, a.id, "a->b");
    network.partition(a.id, c.id, "a->b");
    const before = status(b).lastIndex;
    void a.broker!.mirrorAppend(centralSend("site7", "t", 0, [src[1]!], { fromOffset: 3 })).catch(() => {});
    await waitFor("b to hold the second send", () => status(b).lastIndex > before);
    network.crash(a.id);
    a.broker = null;
    network.heal();
    network.configure({ minDelayMs: 40, maxDelayMs: 40 });
    await waitFor("b to lead (only b has the second send)", () => status(b).role === "leader");
    network.partition(c.id, b.id, "a->b");
    expect(status(b).commit).toBeLessThan(status(b).lastIndex);

    // b must not answer 6 from its log while that entry can still vanish.
    let highWatermarkAtAnswer = -1;
    const answer = b.broker!.mirrorPositions("site7").then((r) => {
      highWatermarkAtAnswer = b.broker!.describeTopic("site7.t").partitions[0]!.highWatermark;
      return r[0]!.positions[0];
    });
    await waitFor("b to step down (check-quorum: it hears no one)", () => status(b).role !== "leader");
    expect(highWatermarkAtAnswer).toBe(-1);
    network.configure({ minDelayMs: 0, maxDelayMs: 1 });
    network.heal();
    const position = await answer;
    expect(position).toBe(6);
    // Answered once the second send was committed (its last central offset below the high watermark).
    const held = await targetRecords(b.broker!, "site7.t", 0);
    expect(held.map((r) => r.value)).toEqual(src.flatMap((x) => x.values));
    expect(highWatermarkAtAnswer).toBeGreaterThan(held.at(-1)!.offset);
  }, 60_000);

  it("translates group offsets on the leader and commits them through the group coordinator, from any peer", async () => {
    network = simNetwork(9);
    nodes = simPeers(3);
    await Promise.all(nodes.map((n) => openNode(n)));
    await waitFor("a controller leader", () => live().every((b) => b.cluster!.controller.group.leader !== 0));
    const [a, b, c] = live() as [Broker, Broker, Broker];
    await a.mirrorOpen({ link: "l", cluster: "site7", topics: [binding("t", "site7.t")] });
    await waitFor("the target and the offsets topic on every peer", () => live().every((x) => x.listTopics({ includeInternal: true }).length === 2));
    const src: SourceBatch[] = sourceLog([4, 4], 10, 2);
    await b.mirrorAppend(centralSend("site7", "t", 0, [src[0]!]));
    await b.mirrorAppend(centralSend("site7", "t", 0, [src[1]!], { fromOffset: src[0]!.to }));
    const results = await c.mirrorCommitGroupOffsets("site7", [{ group: "g", sourceTopic: "t", partition: 0, sourceOffset: 15, metadata: "" }, { group: "g", sourceTopic: "t", partition: 0, sourceOffset: 40, metadata: "" }]);
    expect(results.map((r) => (r.ok ? "ok" : r.pending ? "pending" : r.code))).toEqual(["ok", "pending"]);
    const committed = await a.groups.fetchCommittedOffsets("g");
    // Source offset 15 lies between the batches (10..13 and 16..19): the second batch's start.
    const records = await a.fetch("site7.t", 0, 0, { maxRecords: 100 });
    const secondStart = records.records.find((r) => new TextDecoder().decode(r.value!) === "v16")!.offset;
    expect(committed).toMatchObject([{ topic: "site7.t", partition: 0, offset: secondStart }]);
  }, 30_000);
});
