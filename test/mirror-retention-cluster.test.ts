/**
 * The disk budget in an in-process 3-broker cluster (each broker on its own in-memory disk,
 * joined by the simulated network, as in test/cluster-broker.test.ts): every peer runs its own
 * mirror-aware pass over its own disk, and a budget deletion moves each replica's Raft anchor
 * through the log's retention hook, so the replicas keep agreeing on every record they still
 * hold, keep replicating, and a restarted peer opens its log against its anchor and catches up.
 *
 * `FakeMirrorSource` stands in for the edge's mirror checkpoints (built elsewhere): nothing is
 * mirrored, and the ledger is an array (the replicated checkpoint topic, in the real thing).
 */
import { afterEach, describe, expect, it } from "vitest";
import { Broker } from "../src/broker.ts";
import { silentLogger } from "../src/logger.ts";
import type { MemNetwork } from "../src/cluster/mem-transport.ts";
import type { DroppedRange, MirrorRetentionSource } from "../src/mirror/types.ts";
import { openSimPeer, simNetwork, simPeers, type SimPeer } from "./support/sim-peers.ts";
import { waitFor } from "./support/wait.ts";

const VALUE_BYTES = 1500;
const dec = new TextDecoder();

class FakeMirrorSource implements MirrorRetentionSource {
  readonly ledger: { ranges: DroppedRange[]; logStartAtRecord: number }[] = [];
  constructor(private readonly startNow: () => number) {}
  mirroredBelow(): number | null {
    return 0;
  }
  async recordDropped(_topic: string, _partition: number, ranges: readonly DroppedRange[]): Promise<void> {
    this.ledger.push({ ranges: ranges.map((r) => ({ ...r })), logStartAtRecord: this.startNow() });
  }
}

type Node = SimPeer;

let nodes: Node[] = [];
let network: MemNetwork;

function openNode(n: Node, transport = network.transport(n.id)): Promise<Broker> {
  return openSimPeer(
    n,
    network,
    { "segment.bytes": "4096", "mirror.disk.budget.bytes": String(6 * VALUE_BYTES), "mirror.disk.full.policy": "drop-oldest" },
    { logger: silentLogger, transport },
  );
}

function live(): Broker[] {
  return nodes.flatMap((n) => (n.broker ? [n.broker] : []));
}

/** The records a peer's own replica holds, committed: offset and value. */
async function held(b: Broker): Promise<string[]> {
  const d = b.describeTopic("t").partitions[0]!;
  const out: string[] = [];
  let at = d.logStartOffset;
  while (at < d.highWatermark) {
    const r = await b.fetch("t", 0, at, { maxRecords: 1000 });
    out.push(...r.records.map((x) => `${x.offset}:${dec.decode(x.value!).replace(/^x+/, "")}`));
    at = r.nextOffset;
  }
  return out;
}

const bounds = (b: Broker) => b.describeTopic("t").partitions[0]!;

afterEach(async () => {
  await Promise.all(live().map((b) => b.close()));
  nodes = [];
});

describe("the disk budget in a three-broker cluster", () => {
  it("drops the oldest unmirrored segments on every replica, recorded first, and the replicas stay consistent, replicate on and restart", async () => {
    network = simNetwork(11);
    nodes = simPeers(3);
    await Promise.all(nodes.map((n) => openNode(n)));
    await waitFor("a controller leader", () => live().every((b) => b.cluster!.controller.group.leader !== 0));
    await live()[0]!.createTopic("t", 1);
    await waitFor("the topic everywhere", () => live().every((b) => b.listTopics().some((t) => t.name === "t")));
    const value = (i: number) => new TextEncoder().encode(String(i).padStart(VALUE_BYTES, "x"));
    for (let i = 0; i < 12; i++) await live()[i % 3]!.produce("t", [{ key: null, value: value(i), partition: 0 }], -1);
    // Segments are settled once committed: wait until every replica has applied everything.
    await waitFor("every replica committed", () => live().every((b) => bounds(b).highWatermark === bounds(b).logEndOffset && bounds(b).logEndOffset === bounds(live()[0]!).logEndOffset));
    const before = await held(live()[0]!);
    expect(before).toHaveLength(12);

    const sources = new Map<Broker, FakeMirrorSource>();
    for (const b of live()) {
      const s = new FakeMirrorSource(() => bounds(b).logStartOffset);
      sources.set(b, s);
      b.setMirrorRetention(s);
    }
    for (const b of live()) await b.runMaintenance();

    for (const b of live()) {
      const start = bounds(b).logStartOffset;
      expect(start).toBeGreaterThan(0);
      const ledger = sources.get(b)!.ledger;
      // Recorded before its files went, and naming exactly what is gone.
      expect(ledger.every((e) => e.logStartAtRecord === 0)).toBe(true);
      const ranges = ledger.flatMap((e) => e.ranges);
      expect(ranges.every((r) => r.reason === "disk-budget")).toBe(true);
      expect(ranges[0]!.from).toBe(0);
      expect(ranges[ranges.length - 1]!.to).toBe(start);
      for (let i = 1; i < ranges.length; i++) expect(ranges[i]!.from).toBe(ranges[i - 1]!.to);
      // What the replica still holds is the same tail as before, record for record.
      expect(await held(b)).toEqual(before.filter((r) => Number(r.split(":")[0]) >= start));
    }

    // Replication goes on after the anchors moved.
    for (let i = 12; i < 16; i++) await live()[i % 3]!.produce("t", [{ key: null, value: value(i), partition: 0 }], -1);
    const end = bounds(live()[0]!).logEndOffset;
    await waitFor("the new records on every replica", () => live().every((b) => bounds(b).highWatermark === end));
    const tails = await Promise.all(live().map(async (b) => (await held(b)).slice(-4)));
    for (const t of tails) expect(t.map((r) => r.split(":")[1])).toEqual(["12", "13", "14", "15"]);
    expect(new Set(tails.map((t) => t.join()))).toHaveProperty("size", 1);

    // A peer restarts on its disk: its log opens against the anchor its budget pass recorded, and it catches up.
    const victim = nodes[1]!;
    const startBefore = bounds(victim.broker!).logStartOffset;
    await victim.broker!.close();
    victim.broker = null;
    network.crash(victim.id); // its transport is gone with it; restart makes a fresh one
    const back = await openNode(victim, network.restart(victim.id));
    await waitFor("the restarted peer to have the topic", () => back.listTopics().some((t) => t.name === "t"));
    await live()[0]!.produce("t", [{ key: null, value: value(16), partition: 0 }], -1);
    const last = Math.max(...live().map((b) => bounds(b).logEndOffset));
    await waitFor("the restarted peer to catch up", () => bounds(back).highWatermark === last);
    expect(bounds(back).logStartOffset).toBe(startBefore);
    const all = await Promise.all(live().map(held));
    const common = Math.max(...live().map((b) => bounds(b).logStartOffset));
    const fromCommon = all.map((h) => h.filter((r) => Number(r.split(":")[0]) >= common).join());
    expect(new Set(fromCommon).size).toBe(1);
    expect(fromCommon[0]!.endsWith(":16")).toBe(true);
  });
});
