/**
 * The edge's mirror in a three-broker Raft cluster (in-memory network and disks): the links run
 * only on the peer that leads __mirror_checkpoints; when that peer stops, another takes the
 * leadership, replays the checkpoints and goes on; the central (mem-sink.ts, standing in for the
 * central cluster) ends with every record once, in order.
 */
import { afterEach, describe, expect, it } from "vitest";
import { Broker } from "../src/broker.ts";
import { MemNetwork } from "../src/cluster/mem-transport.ts";
import { defaultConfig } from "../src/config.ts";
import { createLogger, silentLogger } from "../src/logger.ts";
import { brokerMirrorHost } from "../src/mirror/broker-host.ts";
import { parseMirrorConfig } from "../src/mirror/config.ts";
import { MirrorEdge } from "../src/mirror/edge.ts";
import { MemCentral } from "../src/mirror/mem-sink.ts";
import { systemClock } from "../src/runtime/clock.ts";
import { MemFileSystem } from "../src/runtime/mem-fs.ts";
import { rng } from "./support/random.ts";
import { waitFor } from "./support/wait.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const PEERS = "1@sim:1,2@sim:2,3@sim:3";
const CONFIG = { links: [{ name: "to-dc", central: { address: "dc:8481" }, topics: { include: ["telemetry"] }, uplink: { bytesPerSecond: 10_000_000 } }] };

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

describe("mirror in an edge cluster", () => {
  it("runs on the leader of __mirror_checkpoints only, and a new leader resumes where the old one stopped", async () => {
    const network = new MemNetwork({ clock: systemClock, random: rng(7), minDelayMs: 0, maxDelayMs: 1 });
    const central = new MemCentral();
    peers = await Promise.all(
      [1, 2, 3].map(async (id) => {
        const config = defaultConfig({ "cluster.node.id": String(id), "cluster.peers": PEERS, "cluster.tick.ms": "10", "data.dir": "/data", "cluster.request.timeout.ms": "5000" });
        const broker = await Broker.open(config, { fs: new MemFileSystem(), logger: createLogger("error"), cluster: { transport: network.transport(id), random: rng(id * 31) } });
        const edge = new MirrorEdge({
          clusterId: "site7",
          config: parseMirrorConfig(CONFIG, "site7"),
          host: brokerMirrorHost(broker),
          sinkFor: () => central.connect(),
          clock: systemClock,
          random: rng(id),
          logger: silentLogger,
          checkpointIntervalMs: 20,
        });
        void edge.start();
        return { id, broker, edge };
      }),
    );
    const leading = () => peers.filter((p) => p.edge.status().leading);
    await waitFor("one peer running the links", () => leading().length === 1);
    await waitFor("the topic created", async () => {
      try {
        await peers[0]!.broker.createTopic("telemetry", 2);
        return true;
      } catch {
        return peers[0]!.broker.listTopics().some((t) => t.name === "telemetry");
      }
    });
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
    const atCentral = async (via: Broker) => {
      for (const p of [0, 1]) if (central.records("site7.telemetry", p).length !== (await edgeLog(via, p)).length) return false;
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
});
