/**
 * The controller end to end without a network: three real RaftNodes over MetaStores on their own
 * MemFileSystems, driven by a hand-written loop in the contract's order (persist, send, apply,
 * advance), applying ClusterMetadata commands, snapshotting every few entries. A node loses power
 * and misses enough to need the leader's snapshot; another restarts from its own snapshot and log.
 * In the end every peer holds the same metadata, byte for byte.
 */
import { describe, expect, it } from "vitest";
import { MetaStore } from "../src/cluster/meta-store.ts";
import { ClusterMetadata, encodeCommand, type ApplyResult, type MetaCommand } from "../src/cluster/metadata.ts";
import { RaftNode, type Message, type NodeId } from "../src/raft/index.ts";
import { MemFileSystem } from "../src/runtime/mem-fs.ts";
import type { TopicRecord } from "../src/topic-metadata.ts";
import { rng } from "./support/random.ts";

const DIR = "/data/cluster/meta";
const IDS: readonly NodeId[] = [1, 2, 3];
const SNAPSHOT_EVERY_ENTRIES = 8;

interface Peer {
  readonly id: NodeId;
  readonly fs: MemFileSystem;
  store?: MetaStore;
  node?: RaftNode;
  md: ClusterMetadata;
  results: Map<number, ApplyResult>;
  snapshotsInstalled: number;
}

class Controller {
  readonly peers = IDS.map((id): Peer => ({ id, fs: new MemFileSystem(), md: new ClusterMetadata(), results: new Map(), snapshotsInstalled: 0 }));
  private network: Message[] = [];
  private starts = 0;

  peer(id: NodeId): Peer {
    return this.peers.find((p) => p.id === id)!;
  }

  async start(p: Peer): Promise<void> {
    p.store = await MetaStore.open(DIR, p.fs);
    const snap = p.store.snapshot();
    p.md = snap.meta.index > 0 ? ClusterMetadata.restore(snap.data) : new ClusterMetadata();
    p.results = new Map();
    const random = rng(1000 * ++this.starts + p.id);
    const config = { id: p.id, peers: IDS, electionTicks: 10, heartbeatTicks: 1, preVote: true, checkQuorum: true, maxInflightMsgs: 8, maxSizePerMsg: 4096, random };
    p.node = new RaftNode(config, p.store);
  }

  /** A power cut between Readies: what persist() resolved must be all the node needs. */
  crash(p: Peer): void {
    p.node = undefined;
    p.store = undefined;
    p.fs.crash("power");
  }

  private alive(): Peer[] {
    return this.peers.filter((p) => p.node !== undefined);
  }

  /** One Ready, in the contract's order. */
  private async handle(p: Peer): Promise<boolean> {
    const node = p.node;
    const store = p.store;
    if (!node || !store || !node.hasReady()) return false;
    const rd = node.ready();
    await store.persist(rd.entries, rd.hardState, rd.snapshot);
    this.network.push(...rd.messages);
    if (rd.snapshot) {
      p.md = ClusterMetadata.restore(rd.snapshot.data);
      p.snapshotsInstalled++;
    }
    for (const e of rd.committedEntries) p.results.set(e.index, p.md.applyEntry(e));
    node.advance(rd);
    expect(p.md.appliedIndex, `peer ${p.id}`).toBe(node.log.applied);
    if (store.shouldSnapshot(SNAPSHOT_EVERY_ENTRIES) && node.log.applied > store.snapshot().meta.index) {
      await store.createSnapshot(node.log.applied, node.confState(), p.md.snapshot());
    }
    return true;
  }

  /** Handle every Ready and deliver every message until nothing moves. */
  private async pump(): Promise<void> {
    for (let round = 0; round < 1000; round++) {
      let moved = false;
      for (const p of this.alive()) while (await this.handle(p)) moved = true;
      const batch = this.network;
      this.network = [];
      for (const m of batch) {
        moved = true;
        this.peer(m.to).node?.step(m);
      }
      if (!moved) return;
    }
    throw new Error("the controller never went quiet");
  }

  /** Tick and pump until `done` holds. */
  async until(done: () => boolean, what: string): Promise<void> {
    for (let tick = 0; tick < 500; tick++) {
      await this.pump();
      if (done()) return;
      for (const p of this.alive()) p.node!.tick();
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  leader(): Peer | undefined {
    return this.alive().find((p) => p.node!.role === "leader");
  }

  /** Propose at the leader, wait until every live peer applied it, and return each peer's result. */
  async propose(cmd: MetaCommand): Promise<ApplyResult[]> {
    await this.until(() => this.leader() !== undefined, "a leader");
    const r = this.leader()!.node!.propose(encodeCommand(cmd));
    if (!r.ok) throw new Error(`proposal refused: ${r.reason}`);
    await this.until(() => this.alive().every((p) => p.md.appliedIndex >= r.index), `index ${r.index} applied everywhere`);
    return this.alive().map((p) => p.results.get(r.index)!);
  }
}

function topic(name: string): TopicRecord {
  return { name, id: `id${name}`, partitions: 2, config: {}, createdAtMs: 1 };
}

describe("the controller over MetaStores", () => {
  it("keeps three peers' metadata equal through power cuts, snapshots and restarts", async () => {
    const c = new Controller();
    for (const p of c.peers) await c.start(p);
    for (const id of IDS) await c.propose({ type: "add-peer", peer: { id, address: `peer${id}:9093` } });
    for (let i = 0; i < 5; i++) {
      const results = await c.propose({ type: "create-topic", record: topic(`t${i}`), replicationFactor: 3 });
      expect(results.map((r) => r.ok)).toEqual([true, true, true]);
    }
    const dup = await c.propose({ type: "create-topic", record: topic("t0"), replicationFactor: 1 });
    expect(dup.map((r) => (r.ok ? "ok" : r.error.code))).toEqual(["TOPIC_EXISTS", "TOPIC_EXISTS", "TOPIC_EXISTS"]);

    // Peer 3 loses power and misses more than a snapshot's worth, so it must take the leader's.
    const p3 = c.peer(3);
    c.crash(p3);
    for (let i = 5; i < 15; i++) await c.propose({ type: "create-topic", record: topic(`t${i}`), replicationFactor: 2 });
    await c.propose({ type: "delete-topic", name: "t1" });
    await c.start(p3);
    const leader = c.leader()!;
    await c.until(() => p3.md.appliedIndex === leader.md.appliedIndex, "peer 3 to catch up");
    expect(p3.snapshotsInstalled).toBeGreaterThan(0);

    // The leader restarts from its own snapshot and log; the others go on without it.
    expect(leader.store!.snapshot().meta.index).toBeGreaterThan(0);
    c.crash(leader);
    await c.start(leader);
    expect(leader.md.appliedIndex).toBeGreaterThan(0); // restored from its own snapshot, the rest replayed
    await c.propose({ type: "delete-topic", name: "t2" });
    await c.until(() => new Set(c.peers.map((p) => p.md.appliedIndex)).size === 1, "every peer at the same index");

    const bytes = c.peers.map((p) => new TextDecoder().decode(p.md.snapshot()));
    expect(bytes[1]).toBe(bytes[0]);
    expect(bytes[2]).toBe(bytes[0]);
    const md = c.peers[0]!.md;
    expect(md.topics().map((t) => t.record.name)).toEqual(["t0", "t10", "t11", "t12", "t13", "t14", "t3", "t4", "t5", "t6", "t7", "t8", "t9"]);
    // Placement went round the peers: each leads a third of the 26 partitions, give or take one.
    const leads = IDS.map((id) => md.topics().flatMap((t) => t.replicas).filter((rs) => rs[0] === id).length);
    expect(Math.max(...leads) - Math.min(...leads)).toBeLessThanOrEqual(2);
  });
});
