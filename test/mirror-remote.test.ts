/**
 * The edge's mirror in a five-broker cluster with replication factor 3 (in-memory network and
 * disks): the links run on the peer that leads __mirror_checkpoints, which holds no replica of
 * some partitions; those are read from a replica elsewhere (Broker.readReplica, remote-source.ts).
 * Every partition reaches the central exactly as the edge holds it (same order, no duplicate), also
 * when a peer leading such a partition loses power mid-way and comes back.
 */
import { afterEach, describe, expect, it } from "vitest";
import { isTributaryError } from "../src/errors.ts";
import { decodeRecords, readBatchHeader, splitBatches } from "../src/storage/record-batch.ts";
import type { Broker } from "../src/broker.ts";
import type { MirrorEdge } from "../src/mirror/edge.ts";
import { MemCentral } from "../src/mirror/mem-sink.ts";
import type { MemNetwork } from "../src/cluster/mem-transport.ts";
import { createTopicWhenReady, openSimPeer, simNetwork, simPeers, startSimEdge, type SimPeer } from "./support/sim-peers.ts";
import { waitFor } from "./support/wait.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const SETTINGS = { "replication.factor": "3" };
const PEERS = 5;
const PARTITIONS = 10;

interface Peer {
  sim: SimPeer;
  edge: MirrorEdge | null;
}

let peers: Peer[] = [];
let network: MemNetwork;

afterEach(async () => {
  for (const p of peers) await p.edge?.stop();
  // All at once: one by one, each waits up to 2 s handing leaderships to peers already closing.
  await Promise.all(peers.map((p) => p.sim.broker?.close()));
  peers = [];
});

async function start(p: Peer, central: MemCentral, transport = network.transport(p.sim.id)): Promise<void> {
  const broker = await openSimPeer(p.sim, network, SETTINGS, { peers: PEERS, transport });
  p.edge = startSimEdge(broker, central, p.sim.id);
}

const live = () => peers.filter((p) => p.sim.broker !== null);
const brokerOf = (p: Peer) => p.sim.broker!;

const createTopic = createTopicWhenReady;

/** The values of a partition as the edge holds them, up to the high watermark of `via`'s replica. */
async function edgeLog(via: Broker, p: number): Promise<string[]> {
  const r = await via.fetch("telemetry", p, 0, { maxRecords: 10_000 });
  return r.records.map((x) => dec.decode(x.value!));
}

describe("mirror of partitions the links' peer holds no replica of", () => {
  it("every partition reaches the central exactly, through a power cut of the leader of a remote partition", async () => {
    network = simNetwork(11);
    const central = new MemCentral();
    peers = simPeers(PEERS).map((sim) => ({ sim, edge: null }));
    await Promise.all(peers.map((p) => start(p, central)));
    const leading = () => live().filter((p) => p.edge!.status().leading);
    const links = await waitFor("one peer running the links", () => (leading().length === 1 ? leading()[0] : undefined), 20_000);
    await createTopic(brokerOf(links), "telemetry", PARTITIONS);
    await waitFor("the topic on every peer", () => live().every((p) => brokerOf(p).listTopics().some((t) => t.name === "telemetry")));
    const remote = Array.from({ length: PARTITIONS }, (_, i) => i).filter((i) => brokerOf(links).localPartition("telemetry", i) === null);
    expect(remote.length).toBeGreaterThan(0);

    const produced: string[][] = Array.from({ length: PARTITIONS }, () => []);
    let seq = 0;
    // A live peer holding a replica of partition `p` (a peer without one forwards to the
    // partition's first replica, which may be the crashed one).
    const holder = (p: number) => {
      const holders = live().filter((x) => brokerOf(x).localPartition("telemetry", p) !== null);
      return brokerOf(holders[seq % holders.length]!);
    };
    // A produce an election refuses or times out is sent again (a duplicate in the edge log is
    // fine: the central must equal the edge log, whatever it holds).
    const produceRound = async () => {
      for (let p = 0; p < PARTITIONS; p++) {
        const value = `${p}:${seq++}`;
        const via = holder(p);
        await waitFor("a produce taken", () => via.produce("telemetry", [{ key: null, value: enc.encode(value), partition: p }], -1).then(() => true, () => false));
        produced[p]!.push(value);
      }
    };
    const exact = async () => {
      for (let p = 0; p < PARTITIONS; p++) {
        const log = await edgeLog(holder(p), p).catch(() => null);
        // The replica answering may trail: wait until it holds every value produced.
        if (!log || !produced[p]!.every((v) => log.includes(v))) return false;
        const atCentral = central.records("site7.telemetry", p).map((r) => dec.decode(r.record.value!));
        if (atCentral.length !== log.length) return false;
      }
      return true;
    };
    const checkExact = async () => {
      for (let p = 0; p < PARTITIONS; p++) {
        const atCentral = central.records("site7.telemetry", p);
        expect(atCentral.map((r) => dec.decode(r.record.value!))).toEqual(await edgeLog(holder(p), p));
        const offsets = atCentral.map((r) => r.sourceOffset);
        expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
        expect(new Set(offsets).size).toBe(offsets.length);
      }
    };

    for (let i = 0; i < 5; i++) await produceRound();
    await waitFor("every partition at the central", exact, 20_000);
    await checkExact();
    const status = links.edge!.status().links[0]!;
    for (const p of remote) expect(status.partitions.find((x) => x.partition === p)?.state).toBe("sending");

    // The leader of a remote partition loses power mid-way, with records still to mirror.
    const topicId = brokerOf(links).topicRecords().find((t) => t.name === "telemetry")!.id;
    const group = (b: Broker, p: number) => b.cluster!.status().find((g) => g.group === `${topicId}/${p}` && g.role === "leader");
    const victim = await waitFor("a leader of a remote partition", () => live().find((x) => x !== links && remote.some((p) => group(brokerOf(x), p))));
    for (let i = 0; i < 3; i++) await produceRound();
    network.crash(victim.sim.id);
    victim.sim.fs.crash("power");
    const oldEdge = victim.edge!;
    victim.sim.broker = null;
    victim.edge = null;
    void oldEdge.stop().catch(() => {});
    for (let i = 0; i < 2; i++) await produceRound();
    await waitFor("every partition at the central without the crashed peer", exact, 20_000);
    await checkExact();

    // It comes back on what its disk kept and catches up; mirroring goes on.
    await start(victim, central, network.restart(victim.sim.id));
    for (let i = 0; i < 2; i++) await produceRound();
    await waitFor("every partition at the central after the restart", exact, 20_000);
    await checkExact();
    expect(leading()).toEqual([links]);
  }, 60_000);

  it("readReplica: raw batches from a replica elsewhere up to its high watermark, a long poll that ends when it advances, bounded concurrent waits", async () => {
    network = simNetwork(13);
    const central = new MemCentral();
    peers = simPeers(PEERS).map((sim) => ({ sim, edge: null }));
    await Promise.all(peers.map((p) => start(p, central)));
    await waitFor("a controller leader", () => live().every((p) => brokerOf(p).cluster!.controller.group.leader !== 0));
    await createTopic(brokerOf(peers[0]!), "raw", 1);
    await waitFor("the topic on every peer", () => live().every((p) => brokerOf(p).listTopics().some((t) => t.name === "raw")));
    const outside = brokerOf(peers.find((p) => brokerOf(p).localPartition("raw", 0) === null)!);
    const holders = peers.map(brokerOf).filter((b) => b.localPartition("raw", 0) !== null);
    expect(holders).toHaveLength(3);
    const value = (i: number) => enc.encode(`r${i}`);
    for (let i = 0; i < 3; i++) await waitFor("a produce taken", () => holders[0]!.produce("raw", [{ key: null, value: value(i), partition: 0 }], -1).then(() => true, () => false));

    const first = await waitFor("the bounds of every record", async () => {
      const r = await outside.readReplica("raw", 0, 0, 1 << 20, 0);
      const values = [...splitBatches(r.batches)].filter((b) => !readBatchHeader(b).isControl).flatMap((b) => decodeRecords(b)).map((x) => dec.decode(x.value!));
      return values.length === 3 ? { r, values } : undefined;
    });
    expect(first.values).toEqual(["r0", "r1", "r2"]);
    expect(first.r.logStartOffset).toBe(0);
    expect(first.r.sizeBytes).toBeGreaterThan(0);
    expect(first.r.logEndOffset).toBeGreaterThanOrEqual(first.r.highWatermark);
    const hw = first.r.highWatermark;
    // Bounds only: no bytes.
    expect((await outside.readReplica("raw", 0, hw, 0, 0)).batches.length).toBe(0);
    // Never past the high watermark: nothing at it, and a replica asked past it refuses (retriable: another may have it).
    const leader = await waitFor("the partition's leader", () => holders.find((b) => b.localPartition("raw", 0)!.leading));
    expect((await leader.readReplica("raw", 0, hw, 1000, 0)).batches.length).toBe(0);
    await expect(leader.readReplica("raw", 0, hw + 5, 1000, 0)).rejects.toMatchObject({ code: "NOT_LEADER" });

    // A long poll at the high watermark answers once a record is committed.
    let answered = false;
    const poll = outside.readReplica("raw", 0, hw, 0, 60_000).then((r) => {
      answered = true;
      return r;
    });
    // A replica serves at most 64 waits at once: fill a follower's (the poll above went to the leader it learnt), the next is refused.
    const follower = holders.find((b) => b !== leader)!;
    await waitFor("the follower at the high watermark", () => follower.localPartition("raw", 0)!.log.highWatermark === hw);
    const waits = Array.from({ length: 64 }, () => follower.readReplica("raw", 0, hw, 0, 60_000));
    const refused = await follower.readReplica("raw", 0, hw, 0, 60_000).catch((e: unknown) => e);
    expect(isTributaryError(refused) && refused.code).toBe("OVERLOADED");
    expect(answered).toBe(false);
    await leader.produce("raw", [{ key: null, value: value(3), partition: 0 }], -1);
    expect((await poll).highWatermark).toBeGreaterThan(hw);
    for (const w of await Promise.all(waits)) expect(w.highWatermark).toBeGreaterThan(hw);
  }, 30_000);
});
