/**
 * The edge's mirror in a three-broker Raft cluster (in-memory network and disks): the links run
 * only on the peer that leads __mirror_checkpoints; when that peer stops, another takes the
 * leadership, replays the checkpoints and goes on; the central (mem-sink.ts, standing in for the
 * central cluster) ends with every record once, in order.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Broker } from "../src/broker.ts";
import type { MirrorEdge } from "../src/mirror/edge.ts";
import { MemCentral } from "../src/mirror/mem-sink.ts";
import { createTopicWhenReady, openSimPeer, simNetwork, simPeers, startSimEdge } from "./support/sim-peers.ts";
import { waitFor } from "./support/wait.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

interface Peer {
  id: number;
  broker: Broker;
  edge: MirrorEdge;
}

let peers: Peer[] = [];

afterEach(async () => {
  for (const p of peers) {
    await p.edge.stop();
    await p.broker.close();
  }
  peers = [];
});

async function startPeers(central: MemCentral): Promise<Peer[]> {
  const network = simNetwork(7);
  return Promise.all(
    simPeers(3).map(async (p) => {
      const id = p.id;
      const broker = await openSimPeer(p, network);
      const edge = startSimEdge(broker, central, id);
      return { id, broker, edge };
    }),
  );
}

const createTopic = createTopicWhenReady;

describe("mirror in an edge cluster", () => {
  it("runs on the leader of __mirror_checkpoints only, and a new leader resumes where the old one stopped", async () => {
    const central = new MemCentral();
    peers = await startPeers(central);
    const leading = () => peers.filter((p) => p.edge.status().leading);
    await waitFor("one peer running the links", () => leading().length === 1);
    await createTopic(peers[0]!.broker, "telemetry", 2);
    let sent = 0;
    // An election may refuse or time out a produce: sent again (a duplicate in the edge log is
    // fine here: the central must equal the edge log, whatever it holds).
    const produce = async (n: number, via: Broker) => {
      for (let i = 0; i < n; i++, sent++) {
        const record = { key: null, value: enc.encode(`v${sent}`), partition: sent % 2 };
        await waitFor("a produce taken", () => via.produce("telemetry", [record], -1).then(() => true, () => false));
      }
    };
    const edgeLog = async (via: Broker, p: number) => {
      const r = await via.fetch("telemetry", p, 0, { maxRecords: 10_000 });
      return r.records.map((x) => dec.decode(x.value!));
    };
    await produce(20, peers[0]!.broker);
    // `via` may be a follower whose replica trails the leader (it serves committed reads as far as
    // it has them): wait until it holds every value produced, not only until it and the central
    // agree, or both lagging by the same record would pass (seen under load).
    const atCentral = async (via: Broker) => {
      for (const p of [0, 1]) {
        const log = await edgeLog(via, p);
        const produced = Array.from({ length: sent }, (_, i) => i).filter((i) => i % 2 === p);
        if (!produced.every((i) => log.includes(`v${i}`))) return false;
        if (central.records("site7.telemetry", p).length !== log.length) return false;
      }
      return true;
    };
    await waitFor("the first records at the central", () => atCentral(peers[0]!.broker));
    expect(leading().length).toBe(1);

    // The running peer stops (SIGTERM: the mirror first, then the broker hands its leaderships over).
    const old = leading()[0]!;
    await old.edge.stop();
    await old.broker.close();
    peers = peers.filter((p) => p !== old);
    await waitFor("another peer running the links", () => leading().length === 1, 20_000);
    const sendsBefore = central.sendsAnswered;
    await produce(20, peers[0]!.broker);
    const via = peers[0]!.broker;
    await waitFor("every record at the central", () => atCentral(via), 20_000);
    const now = leading()[0]!.edge.status().links[0]!;
    expect(now.partitions.map((p) => p.notes)).toEqual([[], []]);
    expect(central.sendsAnswered).toBeGreaterThan(sendsBefore);
    for (const p of [0, 1]) {
      const values = central.records("site7.telemetry", p).map((r) => dec.decode(r.record.value!));
      expect(values).toEqual(await edgeLog(via, p));
      expect(new Set(values).size).toBeGreaterThanOrEqual(20);
    }
  }, 60_000);

  it("a peer that does not lead follows the positions through its replica of __mirror_checkpoints (its retention deletes what the central holds)", async () => {
    const central = new MemCentral();
    peers = await startPeers(central);
    await waitFor("one peer running the links", () => peers.filter((p) => p.edge.status().leading).length === 1);
    const via = peers[0]!.broker;
    await createTopic(via, "telemetry", 2);
    for (let i = 0; i < 30; i++) {
      const record = { key: null, value: enc.encode(`v${i}`), partition: i % 2 };
      await waitFor("a produce taken", () => via.produce("telemetry", [record], -1).then(() => true, () => false));
    }
    await waitFor("every record at the central", () => [0, 1].every((p) => central.records("site7.telemetry", p).length === 15));
    // Offsets of a partition include the control batches of Raft leaders: the central says where it is.
    const at = [0, 1].map((p) => central.position("site7.telemetry", p)!);
    expect(Math.min(...at)).toBeGreaterThanOrEqual(15);
    const followers = peers.filter((p) => !p.edge.status().leading);
    expect(followers.length).toBe(2);
    // Before the fix a follower never loaded positions: mirroredBelow stayed 0, so it kept everything.
    for (const f of followers) {
      await waitFor(`peer ${f.id} to know both positions`, () => [0, 1].every((p) => f.edge.retention.mirroredBelow("telemetry", p) === at[p]));
    }
    expect(followers[0]!.edge.retention.mirroredBelow("other", 0)).toBeNull();
  }, 60_000);
});
