/**
 * Moving partition replicas between peers (src/cluster/reassign.ts), end to end: brokers in one
 * process on in-memory disks over the simulated network on the real clock. A move under produce
 * load loses no acks=all record and leaves the new replica with the same records; a peer that holds
 * replicas is removed, live or dead; a leader crash mid-move leaves the move to the next leader.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Broker } from "../src/broker.ts";
import type { MemNetwork } from "../src/cluster/mem-transport.ts";
import { partitionGroupId } from "../src/cluster/types.ts";
import { openSimPeer, simNetwork, simPeers, type SimPeer } from "./support/sim-peers.ts";
import { waitFor } from "./support/wait.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

type Node = SimPeer;

let nodes: Node[] = [];
let network: MemNetwork;
let size = 0;

function openNode(n: Node, transport = network.transport(n.id)): Promise<Broker> {
  return openSimPeer(n, network, { "replication.factor": "3" }, { peers: size, transport });
}

async function startCluster(peers: number): Promise<void> {
  size = peers;
  network = simNetwork(11);
  nodes = simPeers(peers);
  await Promise.all(nodes.map((n) => openNode(n)));
  await waitFor("every peer in the metadata", () => live().every((b) => b.cluster!.metadata.peers().length === peers));
}

function live(): Broker[] {
  return nodes.flatMap((n) => (n.broker ? [n.broker] : []));
}

function brokerOf(id: number): Broker {
  return nodes.find((n) => n.id === id)!.broker!;
}

function replicasOf(b: Broker, topic: string, partition = 0): number[] {
  return [...(b.cluster!.metadata.topic(topic)?.replicas[partition] ?? [])];
}

function groupOf(b: Broker, topic: string, partition = 0) {
  const id = partitionGroupId(b.cluster!.metadata.topic(topic)!.record.id, partition);
  return b.cluster!.host.group(id);
}

function leaderOf(topic: string, partition = 0): number {
  return live().find((b) => groupOf(b, topic, partition)?.isLeader)?.cluster!.self ?? 0;
}

async function createTopic(name: string, partitions = 1): Promise<void> {
  await waitFor("a controller leader", () => live().every((b) => b.cluster!.controller.group.leader !== 0));
  await live()[0]!.createTopic(name, partitions);
  await waitFor("the topic everywhere", () => live().every((b) => b.listTopics().some((t) => t.name === name)));
  await waitFor("a partition leader", () => Array.from({ length: partitions }, (_, p) => leaderOf(name, p)).every((l) => l !== 0));
}

/** Produce acks=all from `via` until stopped; what was acknowledged. */
function produceLoad(via: () => Broker, topic: string): { acked: readonly string[]; stop: () => Promise<string[]> } {
  const acked: string[] = [];
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const value = `r${i}`;
      try {
        await via().produce(topic, [{ key: null, value: enc.encode(value), partition: 0 }], -1);
        acked.push(value);
      } catch {
        // Not acknowledged: it may or may not be in the log, and need not be.
      }
    }
  })();
  return {
    acked,
    stop: async () => {
      running = false;
      await loop;
      return acked;
    },
  };
}

async function valuesOn(b: Broker, topic: string, atLeast: number): Promise<{ offset: number; value: string }[]> {
  return waitFor(`peer ${b.cluster!.self} to hold ${atLeast} records`, async () => {
    const f = await b.fetch(topic, 0, 0, { maxRecords: 10_000, maxBytes: 16 << 20 }).catch(() => undefined);
    return f && f.records.length >= atLeast ? f.records.map((r) => ({ offset: r.offset, value: dec.decode(r.value!) })) : undefined;
  });
}

async function moveDone(topic: string, target: number[], partition = 0): Promise<void> {
  const state = () =>
    live()
      .map((b) => {
        const g = groupOf(b, topic, partition);
        const t = b.cluster!.metadata.topic(topic)!;
        const n = g?.node;
        return `peer ${b.cluster!.self}: replicas ${t.replicas[partition]} target ${t.targets?.[partition] ?? "-"} group ${n ? `${n.role} term ${n.term} lead ${n.lead} voters ${n.confState().voters} commit ${n.log.committed} last ${n.log.lastIndex()}` : "none"}`;
      })
      .join("; ");
  await waitFor("the move to complete everywhere", () => live().every((b) => replicasOf(b, topic, partition).join(",") === target.join(",") && !b.cluster!.metadata.topic(topic)!.targets?.[partition]), 15_000).catch((e: Error) => {
    throw new Error(`${e.message}: ${state()}`);
  });
}

afterEach(async () => {
  await Promise.all(live().map((b) => b.close()));
  nodes = [];
});

describe("reassigning a partition", () => {
  it("moves a replica to a fourth peer under produce load: no acks=all record lost, the new replica holds the same records, the old one drops its files", async () => {
    await startCluster(4);
    await createTopic("t");
    const before = replicasOf(live()[0]!, "t");
    const to = [1, 2, 3, 4].find((id) => !before.includes(id))!;
    const from = before.find((id) => id !== leaderOf("t"))!;
    const target = before.map((id) => (id === from ? to : id));
    const via = before.find((id) => id !== from)!;
    const load = produceLoad(() => brokerOf(via), "t");
    await waitFor("records acknowledged before the move", () => load.acked.length >= 20);
    await brokerOf(via).reassignPartition("t", 0, target);
    const startedAt = load.acked.length;
    await moveDone("t", target);
    await waitFor("records acknowledged after the move", () => load.acked.length >= startedAt + 20);
    const acked = await load.stop();
    expect(acked.length).toBeGreaterThan(0);
    expect(groupOf(brokerOf(from), "t")).toBeUndefined();
    const record = brokerOf(from).cluster!.metadata.topic("t")!.record;
    await waitFor("the old replica's files to go", async () => !(await nodes.find((n) => n.id === from)!.fs.exists(`/data/topics/t~${record.id}/0`)));
    const onNew = await valuesOn(brokerOf(to), "t", acked.length);
    const onOld = await valuesOn(brokerOf(via), "t", onNew.length);
    expect(onNew.map((r) => r.value)).toEqual(expect.arrayContaining(acked));
    expect(onNew).toEqual(onOld.slice(0, onNew.length));
    expect(groupOf(brokerOf(to), "t")!.node.confState().voters).toEqual([...target].sort((a, b) => a - b));
    // The moved partition still commits.
    await brokerOf(to).produce("t", [{ key: null, value: enc.encode("after"), partition: 0 }], -1);
  }, 20_000);

  it("finishes a move on the next leader when the leader crashes midway", async () => {
    await startCluster(4);
    await createTopic("t");
    const before = replicasOf(live()[0]!, "t");
    const leader = leaderOf("t");
    const to = [1, 2, 3, 4].find((id) => !before.includes(id))!;
    const from = before.find((id) => id !== leader)!;
    const target = before.map((id) => (id === from ? to : id));
    for (let i = 0; i < 20; i++) await brokerOf(leader).produce("t", [{ key: null, value: enc.encode(`a${i}`), partition: 0 }], -1);
    await brokerOf(to).reassignPartition("t", 0, target);
    // Midway: the new replica is a voter, the old one not yet removed; then the leader dies.
    await waitFor("the new replica added", () => groupOf(brokerOf(leader), "t")?.node.confState().voters.includes(to));
    const victim = nodes.find((n) => n.id === leader)!;
    network.crash(victim.id);
    victim.fs.crash("power");
    victim.broker = null;
    await moveDone("t", target);
    const next = leaderOf("t");
    expect(next).not.toBe(leader);
    expect(groupOf(brokerOf(next), "t")!.node.confState().voters).toEqual([...target].sort((a, b) => a - b));
    await brokerOf(to).produce("t", [{ key: null, value: enc.encode("after"), partition: 0 }], -1);
    const got = await valuesOn(brokerOf(to), "t", 21);
    expect(got.map((r) => r.value)).toEqual([...Array.from({ length: 20 }, (_, i) => `a${i}`), "after"]);
  }, 20_000);

  it("moves a replica off a dead peer; when it restarts it deletes the files left behind", async () => {
    await startCluster(4);
    await createTopic("t");
    const before = replicasOf(live()[0]!, "t");
    const from = before.find((id) => id !== leaderOf("t"))!;
    const to = [1, 2, 3, 4].find((id) => !before.includes(id))!;
    const target = before.map((id) => (id === from ? to : id));
    await brokerOf(to).produce("t", [{ key: null, value: enc.encode("before"), partition: 0 }], -1);
    const dead = nodes.find((n) => n.id === from)!;
    network.crash(dead.id);
    dead.fs.crash("power");
    dead.broker = null;
    await brokerOf(to).reassignPartition("t", 0, target);
    await moveDone("t", target);
    const dir = `/data/topics/t~${brokerOf(to).cluster!.metadata.topic("t")!.record.id}/0`;
    expect(await dead.fs.exists(dir)).toBe(true);
    const back = await openNode(dead, network.restart(dead.id));
    await waitFor("the restarted peer to delete its old replica", async () => !(await dead.fs.exists(dir)));
    expect(groupOf(back, "t")).toBeUndefined();
    // its stored vote and log end were kept as a tombstone, read from the files without a Raft group
    expect(back.cluster!.hadReplica(brokerOf(to).cluster!.metadata.topic("t")!.record.id, 0)).toBe(true);
    expect((await valuesOn(brokerOf(to), "t", 1)).map((r) => r.value)).toEqual(["before"]);
  }, 20_000);

  it("keeps a replica that moved away and back across a restart: replaying the old placements deletes nothing", async () => {
    await startCluster(4);
    await createTopic("t");
    const before = replicasOf(live()[0]!, "t");
    const from = before.find((id) => id !== leaderOf("t"))!;
    const to = [1, 2, 3, 4].find((id) => !before.includes(id))!;
    const away = before.map((id) => (id === from ? to : id));
    await brokerOf(to).reassignPartition("t", 0, away);
    await moveDone("t", away);
    // The retired replica left its vote and log end behind: it votes as that log would when it comes back.
    const group = partitionGroupId(brokerOf(to).cluster!.metadata.topic("t")!.record.id, 0);
    const tombs = await waitFor("the tombstone", async () => {
      const bytes = await nodes.find((x) => x.id === from)!.fs.readFile("/data/cluster/replica-tombstones.json");
      return bytes ? (JSON.parse(dec.decode(bytes)) as { groups: Record<string, { term: number; index: number }> }) : undefined;
    });
    expect(tombs.groups[group]!.index).toBeGreaterThan(0);
    await brokerOf(to).reassignPartition("t", 0, before);
    await moveDone("t", before);
    await brokerOf(to).produce("t", [{ key: null, value: enc.encode("back"), partition: 0 }], -1);
    await valuesOn(brokerOf(from), "t", 1);
    // A clean restart of the peer that moved back: its metadata replays the move away first. Cut
    // off from the others, it can serve the record only from the files it kept.
    const n = nodes.find((x) => x.id === from)!;
    await n.broker!.close();
    network.crash(n.id);
    n.broker = null;
    const transport = network.restart(n.id);
    network.isolate(n.id);
    const back = await openNode(n, transport);
    const got = await valuesOn(back, "t", 1);
    expect(got.map((r) => r.value)).toEqual(["back"]);
    await waitFor("the metadata applied to its end", () => back.cluster!.metadata.appliedIndex >= back.cluster!.controller.group.node.log.committed);
    expect(groupOf(back, "t")).toBeDefined();
    network.heal();
  }, 20_000);

  it("refuses a target naming a peer that is not a member", async () => {
    await startCluster(3);
    await createTopic("t");
    await expect(live()[0]!.reassignPartition("t", 0, [1, 2, 9])).rejects.toMatchObject({ code: "INVALID_REQUEST" });
    await expect(live()[0]!.reassignPartition("t", 5, [1, 2, 3])).rejects.toMatchObject({ code: "INVALID_PARTITIONS" });
  });
});

describe("removing a peer that holds replicas", () => {
  it("moves its replicas to the spare peer, then removes it; the site keeps serving", async () => {
    await startCluster(4);
    await createTopic("t", 2);
    const gone = replicasOf(live()[0]!, "t", 0)[1]!;
    const keeper = live().find((b) => b.cluster!.self !== gone)!;
    await keeper.produce("t", [{ key: null, value: enc.encode("before"), partition: 0 }], -1);
    await keeper.removePeer(gone);
    const rest = live().filter((b) => b.cluster!.self !== gone);
    await waitFor("the metadata to forget the peer", () => rest.every((b) => !b.cluster!.metadata.peers().some((p) => p.id === gone)));
    for (const t of keeper.cluster!.metadata.topics()) {
      for (const rs of t.replicas) {
        expect(rs).not.toContain(gone);
        expect(rs).toHaveLength(3);
      }
    }
    await keeper.produce("t", [{ key: null, value: enc.encode("after"), partition: 0 }], -1);
    const got = await valuesOn(keeper, "t", 2);
    expect(got.map((r) => r.value)).toEqual(["before", "after"]);
  }, 20_000);

  it("removes a dead peer of a three-peer cluster: with no spare, its partitions shrink to the two left, which still commit", async () => {
    await startCluster(3);
    await createTopic("t");
    await live()[0]!.produce("t", [{ key: null, value: enc.encode("before"), partition: 0 }], -1);
    const victim = nodes.find((n) => n.id === 3)!;
    network.crash(victim.id);
    victim.fs.crash("power");
    victim.broker = null;
    await brokerOf(1).removePeer(3);
    await waitFor("the metadata to forget peer 3", () => live().every((b) => !b.cluster!.metadata.peers().some((p) => p.id === 3)));
    for (const t of brokerOf(1).cluster!.metadata.topics()) for (const rs of t.replicas) expect([...rs].sort()).toEqual([1, 2]);
    expect(brokerOf(2).cluster!.controller.group.node.confState().voters).toEqual([1, 2]);
    await brokerOf(2).produce("t", [{ key: null, value: enc.encode("after"), partition: 0 }], -1);
    const got = await valuesOn(brokerOf(1), "t", 2);
    expect(got.map((r) => r.value)).toEqual(["before", "after"]);
  }, 20_000);
});
