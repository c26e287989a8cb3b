/**
 * Three brokers in one process, each on its own in-memory disk, joined by the simulated network
 * (src/cluster/mem-transport.ts) on the real clock: the cluster's produce and fetch semantics end
 * to end, without processes. (Real processes on loopback: test/cluster-process.test.ts.)
 */
import { afterEach, describe, expect, it } from "vitest";
import { Broker } from "../src/broker.ts";
import { defaultConfig } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { MemNetwork } from "../src/cluster/mem-transport.ts";
import { MemFileSystem } from "../src/runtime/mem-fs.ts";
import { systemClock } from "../src/runtime/clock.ts";
import { rng } from "./support/random.ts";
import { codeOf } from "./support/errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const PEERS = "1@sim:1,2@sim:2,3@sim:3";

interface Node {
  id: number;
  fs: MemFileSystem;
  broker: Broker | null;
}

let nodes: Node[] = [];
let network: MemNetwork;

async function openNode(n: Node, transport = network.transport(n.id)): Promise<Broker> {
  const config = defaultConfig({ "cluster.node.id": String(n.id), "cluster.peers": PEERS, "cluster.tick.ms": "10", "data.dir": "/data", "cluster.request.timeout.ms": "5000" });
  n.broker = await Broker.open(config, { fs: n.fs, logger: createLogger("error"), cluster: { transport, random: rng(n.id * 31) } });
  return n.broker;
}

async function startCluster(): Promise<void> {
  network = new MemNetwork({ clock: systemClock, random: rng(7), minDelayMs: 0, maxDelayMs: 1 });
  nodes = [1, 2, 3].map((id) => ({ id, fs: new MemFileSystem(), broker: null }));
  await Promise.all(nodes.map((n) => openNode(n)));
}

async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function live(): Broker[] {
  return nodes.flatMap((n) => (n.broker ? [n.broker] : []));
}

function leaderOf(topic: string, partition: number): number {
  for (const b of live()) {
    const st = b.cluster!.status().find((g) => g.role === "leader" && g.group.endsWith(`/${partition}`) && b.describeTopic(topic));
    if (st) return b.cluster!.self;
  }
  return 0;
}

afterEach(async () => {
  await Promise.all(live().map((b) => b.close()));
  nodes = [];
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
    await startCluster();
    await waitFor("a controller leader", () => live().every((b) => b.cluster!.controller.group.leader !== 0));
    await live()[0]!.createTopic("t", 1);
    await waitFor("the topic everywhere", () => live().every((b) => b.listTopics().some((t) => t.name === "t")));
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

  it("rides through the leader's crash: a new leader takes the writes and nothing acknowledged is lost", async () => {
    await startCluster();
    await waitFor("a controller leader", () => live().every((b) => b.cluster!.controller.group.leader !== 0));
    await live()[0]!.createTopic("t", 1);
    await waitFor("the topic everywhere", () => live().every((b) => b.listTopics().some((t) => t.name === "t")));
    const acked: string[] = [];
    for (let i = 0; i < 20; i++) {
      await live()[0]!.produce("t", [{ key: null, value: enc.encode(`a${i}`), partition: 0 }], -1);
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
      await survivor.produce("t", [{ key: null, value: enc.encode(`b${i}`), partition: 0 }], -1);
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

  it("refuses a produce with NOT_LEADER-class retries exhausted when no quorum is left", async () => {
    await startCluster();
    await waitFor("a controller leader", () => live().every((b) => b.cluster!.controller.group.leader !== 0));
    await live()[0]!.createTopic("t", 1);
    await waitFor("the topic everywhere", () => live().every((b) => b.listTopics().some((t) => t.name === "t")));
    const alone = nodes[0]!;
    network.isolate(alone.id);
    const code = await codeOf(alone.broker!.produce("t", [{ key: null, value: enc.encode("x"), partition: 0 }], -1));
    expect(["NOT_LEADER", "PEER_UNAVAILABLE"]).toContain(code);
    network.heal();
  }, 20_000);
});
