/**
 * The coordinator on a real broker (files in a temp dir) with a ManualClock: members join, leave
 * and are killed (stop heartbeating); after every step the invariants are checked:
 *   - no partition is held by two members at once, and in each generation's replies each
 *     partition has at most one owner; once stable, exactly one;
 *   - commits from a stale generation or a member that no longer holds the partition are fenced;
 *   - a committed offset never goes backwards.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Broker } from "../src/broker.ts";
import { defaultConfig } from "../src/config.ts";
import { TributaryError } from "../src/errors.ts";
import { silentLogger } from "../src/logger.ts";
import { ManualClock } from "../src/runtime/clock.ts";
import type { AssignorName, GroupHeartbeatResponse, TopicPartition } from "../src/groups/types.ts";
import { codeOf } from "./support/errors.ts";

const enc = new TextEncoder();
let dir: string;
let broker: Broker | null = null;
let clock: ManualClock;

async function open(): Promise<Broker> {
  broker = await Broker.open(
    defaultConfig({ "data.dir": dir, "group.initial.rebalance.delay.ms": "3000", "group.min.session.timeout.ms": "6000" }),
    { logger: silentLogger, clock },
  );
  return broker;
}

const key = (tp: TopicPartition) => `${tp.topic}-${tp.partition}`;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tributary-groups-"));
  clock = new ManualClock();
});
afterEach(async () => {
  await broker?.close();
  broker = null;
  await rm(dir, { recursive: true, force: true });
});

interface SimMember {
  name: string;
  last: GroupHeartbeatResponse;
  positions: Map<string, number>;
  alive: boolean;
}

/** Drives members against broker.groups and checks the invariants after every step. */
class Scenario {
  readonly members = new Map<string, SimMember>();
  /** generation -> partition -> member that was given it in that generation. */
  private readonly owners = new Map<number, Map<string, string>>();
  private readonly committed = new Map<string, number>();
  fenced = 0;

  constructor(
    private readonly b: Broker,
    private readonly group: string,
    private readonly topic: string,
    private readonly assignor: AssignorName,
  ) {}

  async join(name: string): Promise<void> {
    const last = await this.b.groups.heartbeat({ groupId: this.group, topics: [this.topic], assignor: this.assignor, sessionTimeoutMs: 6000, clientId: name });
    this.members.set(name, { name, last, positions: new Map(), alive: true });
    this.note(name, last);
  }

  async leave(name: string): Promise<void> {
    const m = this.members.get(name)!;
    await this.b.groups.leave(this.group, m.last.memberId);
    this.members.delete(name);
  }

  /** The process dies: it stops heartbeating, but a late commit from it may still arrive. */
  kill(name: string): SimMember {
    const m = this.members.get(name)!;
    m.alive = false;
    this.members.delete(name);
    return m;
  }

  private note(name: string, r: GroupHeartbeatResponse): void {
    let gen = this.owners.get(r.generationId);
    if (!gen) this.owners.set(r.generationId, (gen = new Map()));
    for (const tp of r.assignment) {
      const prev = gen.get(key(tp));
      if (prev !== undefined && prev !== name) throw new Error(`generation ${r.generationId}: ${key(tp)} given to ${prev} and ${name}`);
      gen.set(key(tp), name);
    }
    // No two live members are told they may consume the same partition.
    const seen = new Map<string, string>();
    for (const m of this.members.values()) {
      for (const tp of m.last.assignment) {
        const other = seen.get(key(tp));
        if (other !== undefined) throw new Error(`${key(tp)} held by ${other} and ${m.name} at once`);
        seen.set(key(tp), m.name);
      }
    }
  }

  /** Every live member heartbeats, consumes a few records from its partitions and commits. */
  async step(): Promise<void> {
    for (const m of [...this.members.values()]) {
      m.last = await this.b.groups.heartbeat({ groupId: this.group, memberId: m.last.memberId });
      this.note(m.name, m.last);
      for (const k of [...m.positions.keys()]) if (!m.last.assignment.some((tp) => key(tp) === k)) m.positions.delete(k);
      for (const tp of m.last.assignment) {
        const pos = m.positions.get(key(tp)) ?? (await this.b.groups.startOffset(this.group, tp.topic, tp.partition, "earliest"));
        const r = await this.b.fetch(tp.topic, tp.partition, pos, { maxRecords: 3 });
        m.positions.set(key(tp), r.nextOffset);
      }
      await this.commit(m);
    }
  }

  async commit(m: SimMember): Promise<void> {
    const offsets = [...m.positions].map(([k, offset]) => {
      const i = k.lastIndexOf("-");
      return { topic: k.slice(0, i), partition: Number(k.slice(i + 1)), offset };
    });
    try {
      await this.b.groups.commitOffsets({ groupId: this.group, memberId: m.last.memberId, generationId: m.last.generationId, offsets });
    } catch (e) {
      if (!(e instanceof TributaryError) || !["ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "REBALANCE_IN_PROGRESS"].includes(e.code)) throw e;
      this.fenced++;
      return;
    }
    for (const c of (await this.b.groups.fetchCommittedOffsets(this.group))) {
      const k = key(c);
      expect(c.offset, `committed offset of ${k} went backwards`).toBeGreaterThanOrEqual(this.committed.get(k) ?? 0);
      this.committed.set(k, c.offset);
    }
  }

  /** Time passes in heartbeat-sized ticks, live members heartbeating and working. */
  async run(ms: number): Promise<void> {
    for (let t = 0; t < ms; t += 1000) {
      clock.advance(1000);
      await this.step();
    }
  }

  expectStable(partitions: number): void {
    const owners = new Map<string, string>();
    for (const m of this.members.values()) {
      expect(m.last.rebalanceInProgress, `${m.name} still rebalancing`).toBe(false);
      for (const tp of m.last.assignment) owners.set(key(tp), m.name);
    }
    expect(owners.size).toBe(partitions);
    const counts = [...this.members.values()].map((m) => m.last.assignment.length);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
    expect(new Set([...this.members.values()].map((m) => m.last.generationId)).size).toBe(1);
  }
}

async function fill(b: Broker, topic: string, partitions: number, perPartition: number): Promise<void> {
  for (let p = 0; p < partitions; p++) {
    await b.produce(topic, Array.from({ length: perPartition }, (_, i) => ({ key: null, value: enc.encode(`v${i}`), partition: p })));
  }
}

describe("group coordinator", () => {
  for (const assignor of ["range", "roundrobin", "cooperative-sticky"] as const) {
    it(`three members join, one is killed, one leaves, one joins (${assignor}): one owner per partition, stale commits fenced, commits never go back`, async () => {
      const b = await open();
      await b.createTopic("t", 6);
      await fill(b, "t", 6, 200);
      const s = new Scenario(b, "g", "t", assignor);
      await s.join("a");
      await s.join("b");
      await s.join("c");
      // Initial rebalance delay: nothing is assigned until it is over.
      await s.step();
      for (const m of s.members.values()) expect(m.last.assignment).toEqual([]);
      await s.run(5000);
      s.expectStable(6);
      expect((await b.groups.describeGroup("g")).state).toBe("stable");

      const dead = s.kill("c");
      const deadGeneration = dead.last.generationId;
      await s.run(8000); // past c's 6 s session
      s.expectStable(6);
      expect(s.members.get("a")!.last.generationId).toBeGreaterThan(deadGeneration);
      // The dead member's late commit is fenced.
      const before = s.fenced;
      await s.commit(dead);
      expect(s.fenced).toBe(before + 1);
      expect(await codeOf(b.groups.heartbeat({ groupId: "g", memberId: dead.last.memberId }))).toBe("UNKNOWN_MEMBER_ID");

      await s.leave("b");
      await s.run(3000);
      s.expectStable(6);
      expect(s.members.get("a")!.last.assignment.length).toBe(6);

      await s.join("d");
      await s.join("e");
      await s.run(4000);
      s.expectStable(6);
      const d = (await b.groups.describeGroup("g"));
      expect(d.members.map((m) => m.clientId).sort()).toEqual(["a", "d", "e"]);
      expect(d.partitions.every((p) => p.memberId !== null && p.committedOffset !== null)).toBe(true);
      expect(d.totalLag).toBe(d.partitions.reduce((n, p) => n + p.highWatermark - p.committedOffset!, 0));
    });
  }

  it("cooperative-sticky keeps partitions in place and withholds a moving partition until its holder lets go", async () => {
    const b = await open();
    await b.createTopic("t", 4);
    const g = b.groups;
    const a1 = await g.heartbeat({ groupId: "g", topics: ["t"], sessionTimeoutMs: 6000 });
    clock.advance(3000);
    const a2 = await g.heartbeat({ groupId: "g", memberId: a1.memberId });
    expect(a2.assignment.map((x) => x.partition)).toEqual([0, 1, 2, 3]);
    const b1 = await g.heartbeat({ groupId: "g", topics: ["t"], sessionTimeoutMs: 6000 });
    expect(b1.generationId).toBe(a2.generationId + 1);
    expect(b1.assignment).toEqual([]);
    expect(b1.pendingPartitions.length).toBe(2);
    expect(b1.rebalanceInProgress).toBe(true);
    // a's old generation commit is fenced; it heartbeats, still holding everything.
    expect(await codeOf(g.commitOffsets({ groupId: "g", memberId: a1.memberId, generationId: a2.generationId, offsets: [{ topic: "t", partition: 0, offset: 0 }] }))).toBe("ILLEGAL_GENERATION");
    const a3 = await g.heartbeat({ groupId: "g", memberId: a1.memberId, ownedPartitions: a2.assignment });
    expect(a3.assignment.length).toBe(2);
    const moving = b1.pendingPartitions;
    // b may not commit what a still holds.
    expect(await codeOf(g.commitOffsets({ groupId: "g", memberId: b1.memberId, generationId: b1.generationId, offsets: [{ ...moving[0]!, offset: 0 }] }))).toBe("REBALANCE_IN_PROGRESS");
    // a commits the moving partition before releasing it (allowed: it still holds it)...
    await g.commitOffsets({ groupId: "g", memberId: a1.memberId, generationId: a3.generationId, offsets: [{ ...moving[0]!, offset: 0 }] });
    // ...then reports it no longer holds it: b gets it.
    await g.heartbeat({ groupId: "g", memberId: a1.memberId, ownedPartitions: a3.assignment });
    const b2 = await g.heartbeat({ groupId: "g", memberId: b1.memberId });
    expect(b2.assignment).toEqual(moving);
    expect(b2.rebalanceInProgress).toBe(false);
    // And now a may no longer commit it.
    expect(await codeOf(g.commitOffsets({ groupId: "g", memberId: a1.memberId, generationId: a3.generationId, offsets: [{ ...moving[0]!, offset: 0 }] }))).toBe("ILLEGAL_GENERATION");
  });

  it("keeps committed offsets across a restart; resets and deletes only groups without members", async () => {
    let b = await open();
    await b.createTopic("t", 2);
    await fill(b, "t", 2, 10);
    const m = await b.groups.heartbeat({ groupId: "g", topics: ["t"], sessionTimeoutMs: 6000 });
    clock.advance(3000);
    const hb = await b.groups.heartbeat({ groupId: "g", memberId: m.memberId });
    await b.groups.commitOffsets({ groupId: "g", memberId: hb.memberId, generationId: hb.generationId, offsets: [{ topic: "t", partition: 0, offset: 7, metadata: "m" }, { topic: "t", partition: 1, offset: 3 }] });
    await b.groups.commitOffsets({ groupId: "g", memberId: hb.memberId, generationId: hb.generationId, offsets: [{ topic: "t", partition: 0, offset: 8 }] });
    expect(await codeOf(b.groups.resetOffsets("g", "t", { to: "earliest" }))).toBe("GROUP_NOT_EMPTY");
    expect(await codeOf(b.groups.deleteGroup("g"))).toBe("GROUP_NOT_EMPTY");
    await b.close();

    b = await open();
    expect((await b.groups.fetchCommittedOffsets("g")).map((c) => [c.partition, c.offset, c.metadata])).toEqual([[0, 8, ""], [1, 3, ""]]);
    expect((await b.groups.listGroups())).toEqual([{ groupId: "g", state: "empty", members: 0, assignor: null }]);
    const d = (await b.groups.describeGroup("g"));
    expect(d.partitions.map((p) => p.lag)).toEqual([2, 7]);
    expect((await b.groups.startOffset("g", "t", 0, "latest"))).toBe(8);
    expect((await b.groups.startOffset("other", "t", 0, "latest"))).toBe(10);
    expect((await b.groups.startOffset("other", "t", 0, "earliest"))).toBe(0);

    expect((await b.groups.resetOffsets("g", "t", { to: "earliest" })).map((c) => c.offset)).toEqual([0, 0]);
    expect((await b.groups.resetOffsets("g", "t", { to: "offset", offset: 99 }, [1])).map((c) => c.offset)).toEqual([10]);
    expect((await b.groups.resetOffsets("g", "t", { to: "timestamp", timestampMs: 0 })).map((c) => c.offset)).toEqual([0, 0]);
    expect((await b.groups.resetOffsets("g", "t", { to: "latest" })).map((c) => c.offset)).toEqual([10, 10]);
    // An empty group takes tool commits without member or generation.
    await b.groups.commitOffsets({ groupId: "g", memberId: "", generationId: -1, offsets: [{ topic: "t", partition: 0, offset: 5 }] });
    expect((await b.groups.fetchCommittedOffsets("g", [{ topic: "t", partition: 0 }]))[0]!.offset).toBe(5);
    await b.close();

    b = await open();
    expect((await b.groups.fetchCommittedOffsets("g")).map((c) => c.offset)).toEqual([5, 10]);
    await b.groups.deleteGroup("g");
    expect(await codeOf(b.groups.describeGroup("g"))).toBe("GROUP_NOT_FOUND");
    await b.close();
    b = await open();
    expect((await b.groups.listGroups())).toEqual([]);
    // The offsets topic is the broker's own.
    expect(b.listTopics().map((t) => t.name)).toEqual(["t"]);
    expect(b.listTopics({ includeInternal: true }).map((t) => t.name)).toEqual(["__consumer_offsets", "t"]);
    expect(await codeOf(b.produce("__consumer_offsets", [{ key: enc.encode("k"), value: null }]))).toBe("INVALID_TOPIC_NAME");
    expect(await codeOf(b.deleteTopic("__consumer_offsets"))).toBe("INVALID_TOPIC_NAME");
  });

  it("refuses bad group ids, session timeouts out of bounds, a second assignor and commits without a member", async () => {
    const b = await open();
    await b.createTopic("t", 1);
    expect(await codeOf(b.groups.heartbeat({ groupId: "bad/id", topics: ["t"] }))).toBe("INVALID_GROUP_ID");
    expect(await codeOf(b.groups.heartbeat({ groupId: "g", topics: ["t"], sessionTimeoutMs: 10 }))).toBe("INVALID_SESSION_TIMEOUT");
    const m = await b.groups.heartbeat({ groupId: "g", topics: ["t"], assignor: "range" });
    expect(m.sessionTimeoutMs).toBe(45_000);
    expect(await codeOf(b.groups.heartbeat({ groupId: "g", topics: ["t"], assignor: "roundrobin" }))).toBe("INVALID_REQUEST");
    expect(await codeOf(b.groups.commitOffsets({ groupId: "g", memberId: "", generationId: -1, offsets: [] }))).toBe("UNKNOWN_MEMBER_ID");
    expect(await codeOf(b.groups.commitOffsets({ groupId: "g", memberId: "nobody", generationId: m.generationId, offsets: [] }))).toBe("UNKNOWN_MEMBER_ID");
    expect(await codeOf(b.groups.leave("g", "nobody"))).toBe("UNKNOWN_MEMBER_ID");
    await b.groups.leave("g", m.memberId);
    expect((await b.groups.listGroups())).toEqual([]);
  });

  it("rebalances when a subscribed topic appears", async () => {
    const b = await open();
    const m = await b.groups.heartbeat({ groupId: "g", topics: ["later"], sessionTimeoutMs: 6000 });
    clock.advance(3000);
    expect((await b.groups.heartbeat({ groupId: "g", memberId: m.memberId })).assignment).toEqual([]);
    await b.createTopic("later", 2);
    const r = await b.groups.heartbeat({ groupId: "g", memberId: m.memberId });
    expect(r.assignment.map((x) => x.partition)).toEqual([0, 1]);
  });
});
