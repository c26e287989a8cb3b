/**
 * Three brokers in one process, each on its own in-memory disk, joined by the simulated network
 * (src/cluster/mem-transport.ts) on the real clock: the cluster's produce and fetch semantics end
 * to end, without processes. (Real processes on loopback: test/cluster-process.test.ts.)
 */
import { afterEach, describe, expect, it } from "vitest";
import { Broker } from "../src/broker.ts";
import { defaultConfig } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import type { MemNetwork, NetEvent } from "../src/cluster/mem-transport.ts";
import { partitionGroupId } from "../src/cluster/types.ts";
import { encodeBatch } from "../src/storage/record-batch.ts";
import { MemFileSystem } from "../src/runtime/mem-fs.ts";
import { rng } from "./support/random.ts";
import { codeOf } from "./support/errors.ts";
import { openSimPeer, simNetwork, simPeers, simPeersSetting, type SimPeer } from "./support/sim-peers.ts";
import { waitFor } from "./support/wait.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const PEERS = simPeersSetting(3);

type Node = SimPeer;

let nodes: Node[] = [];
let network: MemNetwork;

let replicationFactor = "3";
/** Called on each of the network's deliveries and drops, for a test that cuts a link at an exact moment. */
let onNet: ((e: NetEvent) => void) | null = null;

function openNode(n: Node, transport = network.transport(n.id)): Promise<Broker> {
  return openSimPeer(n, network, { "replication.factor": replicationFactor }, { transport });
}

async function startCluster(): Promise<void> {
  network = simNetwork(7, (e) => onNet?.(e));
  nodes = simPeers(3);
  await Promise.all(nodes.map((n) => openNode(n)));
}

function live(): Broker[] {
  return nodes.flatMap((n) => (n.broker ? [n.broker] : []));
}

/** A started cluster that has topic "t" with `partitions` partitions, known to every peer. */
async function startClusterWithTopic(partitions = 1): Promise<void> {
  await startCluster();
  await waitFor("a controller leader", () => live().every((b) => b.cluster!.controller.group.leader !== 0));
  await live()[0]!.createTopic("t", partitions);
  await waitFor("the topic everywhere", () => live().every((b) => b.listTopics().some((t) => t.name === "t")));
}

/** The Raft group of a partition, from the cluster's metadata. */
function groupOf(topic: string, partition: number): string {
  return partitionGroupId(live()[0]!.cluster!.metadata.topics().find((t) => t.record.name === topic)!.record.id, partition);
}

/** The peer leading the partition's group, or 0. */
function leaderOf(topic: string, partition: number): number {
  const group = groupOf(topic, partition);
  return live().find((b) => b.cluster!.status().find((g) => g.group === group)?.role === "leader")?.cluster!.self ?? 0;
}

afterEach(async () => {
  await Promise.all(live().map((b) => b.close()));
  nodes = [];
  replicationFactor = "3";
  onNet = null;
});

describe("a three-broker cluster", () => {
  it("creates a topic through the controller and every peer opens its replicas", async () => {
    await startCluster();
    await waitFor("a controller leader", () => live().every((b) => b.cluster!.controller.group.leader !== 0));
    const created = await live()[1]!.createTopic("telemetry", 2);
    expect(created.partitions).toHaveLength(2);
    await waitFor("every peer to know the topic", () => live().every((b) => b.listTopics().some((t) => t.name === "telemetry")));
    for (const b of live()) expect(b.describeTopic("telemetry").partitions.map((p) => p.partition)).toEqual([0, 1]);
    await expect(live()[2]!.createTopic("telemetry", 1)).rejects.toMatchObject({ code: "TOPIC_EXISTS" });
  });

  it("acknowledges acks=all once a quorum has it, from any peer, and every replica serves it", async () => {
    await startClusterWithTopic();
    for (const [i, b] of live().entries()) {
      const res = await b.produce("t", [{ key: null, value: enc.encode(`from-${i}`), partition: 0 }], -1);
      expect(res[0]!.offset).toBeGreaterThanOrEqual(0);
    }
    for (const b of live()) {
      const r = await waitFor("the records on this replica", async () => {
        const f = await b.fetch("t", 0, 0, {});
        return f.records.length === 3 ? f : undefined;
      });
      expect(r.records.map((x) => dec.decode(x.value!))).toEqual(["from-0", "from-1", "from-2"]);
    }
  });

  it("rides through the leader's crash: a new leader takes the writes, an idempotent producer's retries write nothing twice, nothing acknowledged is lost", async () => {
    await startClusterWithTopic();
    const acked: string[] = [];
    const id = await live()[0]!.initProducerId();
    let seq = 0;
    // Idempotent: the broker may retry a batch whose outcome a leader change left unknown.
    const produce = (b: Broker, value: string) => b.produce("t", [{ key: null, value: enc.encode(value), partition: 0 }], -1, { ...id, baseSequence: seq++ });
    for (let i = 0; i < 20; i++) {
      await produce(live()[0]!, `a${i}`);
      acked.push(`a${i}`);
    }
    const leader = await waitFor("a partition leader", () => leaderOf("t", 0) || undefined);
    const victim = nodes.find((n) => n.id === leader)!;
    // A crash: the network drops the peer, its disk keeps only what was synced, the object is abandoned.
    network.crash(victim.id);
    victim.fs.crash("power");
    victim.broker = null;
    const survivor = live()[0]!;
    for (let i = 0; i < 10; i++) {
      await produce(survivor, `b${i}`);
      acked.push(`b${i}`);
    }
    expect(leaderOf("t", 0)).not.toBe(victim.id);
    // The crashed peer comes back on its disk and catches up.
    const back = await openNode(victim, network.restart(victim.id));
    const r = await waitFor("the restarted peer to catch up", async () => {
      if (!back.listTopics().some((t) => t.name === "t")) return undefined;
      const f = await back.fetch("t", 0, 0, { maxRecords: 1000 }).catch(() => undefined);
      return f && f.records.length >= acked.length ? f : undefined;
    });
    expect(r.records.map((x) => dec.decode(x.value!))).toEqual(acked);
  });

  it("keeps taking produces through a follower while the leader shuts down: they go on to the next leader", async () => {
    await startClusterWithTopic();
    const leader = await waitFor("a partition leader", () => leaderOf("t", 0) || undefined);
    const closing = nodes.find((n) => n.id === leader)!;
    const follower = live().find((b) => b.cluster!.self !== leader)!;
    const failures: unknown[] = [];
    let acked = 0;
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        await follower.produce("t", [{ key: null, value: enc.encode(`v${i}`), partition: 0 }], -1).then(
          () => acked++,
          (e: unknown) => failures.push(e),
        );
      }
    })();
    await waitFor("produces through the follower", () => acked >= 20);
    // A graceful stop (SIGTERM): forwarded produces that reach it meanwhile must be sent on, not refused.
    await closing.broker!.close();
    closing.broker = null;
    const before = acked;
    await waitFor("produces after the stop", () => acked >= before + 20);
    stop = true;
    await load;
    expect(failures).toEqual([]);
  });

  it("checks the CRC of a batch forwarded by another peer: bytes damaged on the way are refused, not replicated", async () => {
    await startClusterWithTopic();
    const leader = await waitFor("a leader of t/0", () => leaderOf("t", 0) || undefined);
    const other = live().find((b) => b.cluster!.self !== leader)!;
    const batch = encodeBatch([{ key: null, value: enc.encode("x") }], { timestamp: 1 });
    batch[batch.length - 1]! ^= 0x01; // a bit flipped after the sender computed the CRC
    const call = other.cluster!.call(leader, "produce", { topic: "t", partition: 0, batch, acks: -1, idempotent: false });
    expect(await codeOf(call)).toBe("CORRUPT_RECORD");
    await other.produce("t", [{ key: null, value: enc.encode("after"), partition: 0 }], -1);
    const r = await waitFor("the next record on this replica", async () => {
      const f = await other.fetch("t", 0, 0, {});
      return f.records.length > 0 ? f : undefined;
    });
    expect(r.records.map((x) => dec.decode(x.value!))).toEqual(["after"]); // and nothing of the damaged batch
  });

  it("refuses a produce with NOT_LEADER-class retries exhausted when no quorum is left", async () => {
    await startClusterWithTopic();
    const alone = nodes[0]!;
    network.isolate(alone.id);
    const code = await codeOf(alone.broker!.produce("t", [{ key: null, value: enc.encode("x"), partition: 0 }], -1));
    // Refused before it was written, or taken by a leader that then lost its quorum (outcome unknown).
    expect(["NOT_LEADER", "PEER_UNAVAILABLE", "REQUEST_TIMED_OUT"]).toContain(code);
    network.heal();
  }, 20_000);
});

describe("an idempotent producer in a cluster", () => {
  it("a new leader holding a retried batch uncommitted answers the retry (acks=all) only once the batch is committed", async () => {
    await startClusterWithTopic();
    const gid = groupOf("t", 0);
    const tGroup = (n: Node) => n.broker!.cluster!.status().find((g) => g.group === gid)!;
    const a = await waitFor("a leader of t/0", () => nodes.find((n) => tGroup(n)?.role === "leader"));
    const [b, c] = nodes.filter((n) => n !== a) as [Node, Node];
    const id = await a.broker!.initProducerId();
    const rec = (v: string) => [{ key: null, value: enc.encode(v), partition: 0 }];
    await a.broker!.produce("t", rec("s0"), -1, { ...id, baseSequence: 0 });

    // Batch 1 reaches b only, and a never hears b's answer: a cannot commit it. Then a dies.
    network.partition(b.id, a.id, "a->b");
    network.partition(a.id, c.id, "a->b");
    const before = tGroup(b).lastIndex;
    void a.broker!.produce("t", rec("s1"), -1, { ...id, baseSequence: 1 }).catch(() => {});
    await waitFor("b to hold batch 1", () => tGroup(b).lastIndex > before);
    network.crash(a.id);
    a.broker = null;
    // c's answers to b are cut the moment b's first frame as leader reaches c: b wins with c's vote
    // but never hears c acknowledge an entry of its term, so it commits nothing more. In that same
    // moment (b leads, holding batch 1 uncommitted) the producer retries batch 1 at b.
    type Held = { lastIndex: number; commit: number; retry: Promise<{ offset: number }[]> };
    let held: Held | null = null;
    let highWatermarkAtAck = -1;
    onNet = (e) => {
      if (e.from !== b.id || e.to !== c.id || e.outcome !== "delivered" || tGroup(b).role !== "leader") return;
      network.partition(c.id, b.id, "a->b");
      onNet = null;
      const { lastIndex, commit } = tGroup(b);
      const retry = b.broker!.produce("t", rec("s1"), -1, { ...id, baseSequence: 1 }).then((r) => {
        highWatermarkAtAck = b.broker!.describeTopic("t").partitions[0]!.highWatermark;
        return r;
      });
      held = { lastIndex, commit, retry };
    };
    network.heal();
    const { lastIndex, commit, retry } = await waitFor("b to lead (only b has batch 1, so only b can win)", () => held as Held | null ?? undefined);
    expect(commit).toBeLessThan(lastIndex);

    await waitFor("b to step down (check-quorum: it hears no one)", () => tGroup(b).role !== "leader");
    network.heal();
    const [ack] = await retry;
    expect(highWatermarkAtAck, "acknowledged before it was committed").toBeGreaterThan(ack!.offset);
    const r = await b.broker!.fetch("t", 0, 0, { maxRecords: 100 });
    expect(r.records.map((x) => dec.decode(x.value!))).toEqual(["s0", "s1"]);
    expect(r.records[1]!.offset).toBe(ack!.offset);
  });
});

describe("partitions on some peers only", () => {
  it("with one replica per partition, any peer produces and fetches by forwarding to the holder", async () => {
    replicationFactor = "1";
    await startClusterWithTopic(3);
    const holders = live().map((b) => b.describeTopic("t").partitions.filter((p) => p.highWatermark >= 0).length);
    expect(holders).toEqual([1, 1, 1]); // each peer holds one of the three partitions
    for (let p = 0; p < 3; p++) await live()[0]!.produce("t", [{ key: null, value: enc.encode(`p${p}`), partition: p }], -1);
    for (let p = 0; p < 3; p++) {
      const r = await live()[1]!.fetch("t", p, 0, {});
      expect(r.records.map((x) => dec.decode(x.value!))).toEqual([`p${p}`]);
    }
  });
});

describe("consumer groups in a cluster", () => {
  it("are served from any peer: calls are forwarded to the leader of __consumer_offsets", async () => {
    await startCluster();
    await waitFor("a controller leader", () => live().every((b) => b.cluster!.controller.group.leader !== 0));
    await live()[0]!.createTopic("t", 2);
    await waitFor("the offsets topic and t everywhere", () => live().every((b) => b.listTopics({ includeInternal: true }).length === 2));
    const [a, b, c] = live() as [Broker, Broker, Broker];
    const joined = await a.groups.heartbeat({ groupId: "g", topics: ["t"] });
    const member = await waitFor("an assignment", async () => {
      const r = await b.groups.heartbeat({ groupId: "g", memberId: joined.memberId });
      return r.assignment.length === 2 ? r : undefined;
    });
    await c.groups.commitOffsets({ groupId: "g", memberId: member.memberId, generationId: member.generationId, offsets: [{ topic: "t", partition: 1, offset: 0 }] });
    for (const peer of live()) {
      expect((await peer.groups.fetchCommittedOffsets("g")).map((o) => [o.topic, o.partition, o.offset])).toEqual([["t", 1, 0]]);
      expect((await peer.groups.describeGroup("g")).members.map((m) => m.memberId)).toEqual([joined.memberId]);
    }
  });
});

describe("membership", () => {
  it("adds a fourth peer to the running controller group and removes it again", async () => {
    await startCluster();
    await waitFor("a controller leader", () => live().every((b) => b.cluster!.controller.group.leader !== 0));
    await live()[0]!.createTopic("t", 1);
    // The new peer starts with the full list, itself included; the others learn it from the metadata.
    const four: Node = { id: 4, fs: new MemFileSystem(), broker: null };
    nodes.push(four);
    const config = defaultConfig({ "cluster.node.id": "4", "cluster.peers": `${PEERS},4@sim:4`, "cluster.tick.ms": "10", "data.dir": "/data" });
    four.broker = await Broker.open(config, { fs: four.fs, logger: createLogger("error"), cluster: { transport: network.transport(4), random: rng(4) } });
    await live()[1]!.addPeer(4, "sim:4");
    const voters = () => live().map((b) => b.cluster!.controller.group.node.confState().voters.join(","));
    await waitFor("every peer to count 4 as a voter", () => voters().every((v) => v === "1,2,3,4"));
    await waitFor("the new peer to know the topic", () => four.broker!.listTopics().some((t) => t.name === "t"));
    expect(four.broker.cluster!.peers.map((p) => p.id)).toEqual([1, 2, 3, 4]);
    // Topic t's replicas are on 1, 2, 3: peer 4 holds none, so it goes at once (peers holding
    // replicas move them first: test/cluster-reassign.test.ts).
    expect(await codeOf(live()[0]!.removePeer(9))).toBe("INVALID_REQUEST");
    await live()[2]!.removePeer(4);
    const rest = live().filter((b) => b.cluster!.self !== 4);
    await waitFor("the three to drop peer 4", () => rest.every((b) => b.cluster!.controller.group.node.confState().voters.join(",") === "1,2,3"));
    await waitFor("the metadata to forget peer 4 everywhere", () => rest.every((b) => b.cluster!.metadata.peers().map((p) => p.id).join(",") === "1,2,3"));
    // The cluster still commits without it.
    await rest[0]!.produce("t", [{ key: null, value: enc.encode("after"), partition: 0 }], -1);
  }, 30_000);
});
