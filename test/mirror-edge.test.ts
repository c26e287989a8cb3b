/**
 * MirrorEdge (src/mirror/edge.ts) and its checkpoints (checkpoints.ts) on in-memory twins of the
 * broker and the central, with a ManualClock: links run only while this peer leads
 * __mirror_checkpoints, a new leader replays the checkpoints and resumes without resending,
 * positions are written at most once per interval and at shutdown, retention is told what is
 * mirrored (lowest over the links), the drop ledger is durable before recordDropped resolves,
 * mirrored groups' offsets reach the central (pending ones sent again), and status shows it all.
 */
import { describe, expect, it } from "vitest";
import { silentLogger } from "../src/logger.ts";
import { Metrics } from "../src/metrics.ts";
import { CHECKPOINTS_TOPIC, MirrorCheckpoints, decodeCheckpointRecord, encodeLedgerRecord, encodePositionRecord } from "../src/mirror/checkpoints.ts";
import { parseMirrorConfig } from "../src/mirror/config.ts";
import { MirrorEdge } from "../src/mirror/edge.ts";
import { MemCentral } from "../src/mirror/mem-sink.ts";
import { ManualClock } from "../src/runtime/clock.ts";
import { memHost, MemCheckpointTopic } from "./support/mirror-source.ts";
import { rng } from "./support/random.ts";

const dec = new TextDecoder();

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

async function run(clock: ManualClock, ms: number, stepMs = 10): Promise<void> {
  for (let t = 0; t < ms; t += stepMs) {
    clock.advance(stepMs);
    await settle();
  }
}

const CONFIG = {
  links: [
    { name: "to-dc", central: { address: "dc:8481" }, topics: { include: ["*"] }, uplink: { bytesPerSecond: 1_000_000 }, groups: ["dash"] },
    { name: "to-backup", central: { address: "backup:8481" }, topics: { include: ["alarms"], prefix: "" }, uplink: { bytesPerSecond: 1_000_000 } },
  ],
};

function edgeRig(host = memHost(), clock = new ManualClock(), config: unknown = CONFIG) {
  const centrals = new Map([
    ["to-dc", new MemCentral({ clock })],
    ["to-backup", new MemCentral({ clock })],
  ]);
  const metrics = new Metrics();
  const edge = new MirrorEdge({
    clusterId: "site7",
    config: parseMirrorConfig(config, "site7"),
    host,
    sinkFor: (l) => centrals.get(l.name)!.connect(),
    clock,
    random: rng(5),
    logger: silentLogger,
    metrics,
    checkpointIntervalMs: 1000,
    groupSyncIntervalMs: 2000,
  });
  return { host, clock, centrals, edge, metrics };
}

describe("mirror checkpoints", () => {
  it("encode and decode positions and ledgers; foreign records are skipped", () => {
    const p = encodePositionRecord("l", "t", 3, { position: 10, sourceTopicId: "a", targetTopicId: "b", updatedAtMs: 5 });
    expect(JSON.parse(dec.decode(p.key))).toEqual([1, "l", "t", 3]);
    expect(decodeCheckpointRecord(p.key, p.value)).toEqual({ kind: "position", link: "l", topic: "t", partition: 3, value: { position: 10, sourceTopicId: "a", targetTopicId: "b", updatedAtMs: 5 } });
    const l = encodeLedgerRecord("t", 0, { ranges: [{ from: 1, to: 4, reason: "disk-budget" }], droppedOffsets: 3, droppedBytes: 0 });
    expect(JSON.parse(dec.decode(l.value!))).toEqual({ ranges: [[1, 4, "disk-budget"]], droppedOffsets: 3, droppedBytes: 0 });
    expect(decodeCheckpointRecord(l.key, l.value)?.kind).toBe("ledger");
    const enc = new TextEncoder();
    for (const [k, v] of [["[1,\"l\",\"t\",-1]", "{}"], ["[3]", "{}"], ["nope", "{}"], ["[2,\"t\",0]", '{"ranges":[[5,1,"retention"]],"droppedOffsets":0,"droppedBytes":0}'], ["[1,\"l\",\"t\",0]", '{"position":"x"}']] as const) {
      expect(decodeCheckpointRecord(enc.encode(k), enc.encode(v))).toBeNull();
    }
  });

  it("writes positions at most once per interval, and what is left at flush", async () => {
    const clock = new ManualClock();
    const topic = new MemCheckpointTopic();
    const cps = new MirrorCheckpoints(topic, clock, { intervalMs: 1000, logger: silentLogger });
    const ids = { sourceTopicId: "s", targetTopicId: "t" };
    for (let i = 1; i <= 50; i++) {
      cps.acknowledged("l", "t", 0, i * 10, ids);
      await run(clock, 100, 100);
    }
    // 5 s of acks every 100 ms: one write per second.
    expect(topic.records.length).toBeGreaterThanOrEqual(4);
    expect(topic.records.length).toBeLessThanOrEqual(6);
    cps.acknowledged("l", "t", 0, 999, ids);
    await cps.flush();
    const again = new MirrorCheckpoints(topic, clock, { intervalMs: 1000, logger: silentLogger });
    await again.load();
    expect(again.checkpoint("l", "t", 0)).toBe(999);
  });

  it("tells retention the lowest mirrored position over the links carrying a topic, and keeps the ledger durable first", async () => {
    const clock = new ManualClock();
    const topic = new MemCheckpointTopic();
    const cps = new MirrorCheckpoints(topic, clock, { intervalMs: 1000, logger: silentLogger });
    cps.registerLink("a", () => true);
    cps.registerLink("b", (t) => t === "alarms");
    const ids = { sourceTopicId: "s", targetTopicId: "t" };
    expect(cps.mirroredBelow("alarms", 0)).toBe(0); // carried, nothing known mirrored: keep everything
    cps.acknowledged("a", "alarms", 0, 100, ids);
    cps.acknowledged("b", "alarms", 0, 40, ids);
    cps.acknowledged("a", "telemetry", 0, 70, ids);
    expect(cps.mirroredBelow("alarms", 0)).toBe(40);
    expect(cps.mirroredBelow("telemetry", 0)).toBe(70);
    cps.unregisterLink("a");
    expect(cps.mirroredBelow("telemetry", 0)).toBeNull();
    topic.failAppends = 1;
    await expect(cps.recordDropped("alarms", 0, [{ from: 0, to: 10, reason: "disk-budget" }])).rejects.toThrow();
    expect(cps.dropped("alarms", 0)).toEqual([]);
    await cps.recordDropped("alarms", 0, [{ from: 0, to: 10, reason: "disk-budget" }]);
    await cps.recordDropped("alarms", 0, [{ from: 10, to: 15, reason: "disk-budget" }]);
    const replay = new MirrorCheckpoints(topic, clock, { intervalMs: 1000, logger: silentLogger });
    await replay.load();
    expect(replay.dropped("alarms", 0)).toEqual([{ from: 0, to: 15, reason: "disk-budget" }]);
    expect(replay.ledger("alarms", 0)?.droppedOffsets).toBe(15);
  });
});

describe("MirrorEdge", () => {
  it("runs the links only while leading __mirror_checkpoints; a new leader replays and resumes without resending", async () => {
    const r = edgeRig();
    const { source, checkpoints } = r.host;
    source.createTopic("telemetry", 2);
    source.createTopic("alarms", 1);
    checkpoints.setLeading(false);
    await r.edge.start();
    source.append("telemetry", 0, 10);
    source.append("alarms", 0, 4);
    await run(r.clock, 500);
    expect(r.edge.status().leading).toBe(false);
    expect(r.centrals.get("to-dc")!.sendsAnswered).toBe(0);

    checkpoints.setLeading(true);
    await run(r.clock, 500);
    expect(r.edge.status().leading).toBe(true);
    expect(r.centrals.get("to-dc")!.position("site7.telemetry", 0)).toBe(10);
    expect(r.centrals.get("to-backup")!.position("alarms", 0)).toBe(4);
    expect(r.edge.retention.mirroredBelow("alarms", 0)).toBe(4);

    // Leadership moves away: the links stop and their positions are written.
    checkpoints.setLeading(false);
    await run(r.clock, 100);
    expect(r.edge.status().links.map((l) => l.state)).toEqual(["stopped", "stopped"]);
    const written = new MirrorCheckpoints(checkpoints, r.clock, { intervalMs: 1000, logger: silentLogger });
    await written.load();
    expect(written.checkpoint("to-dc", "telemetry", 0)).toBe(10);

    // Another peer leads, on the same replicated topic and the same central.
    await r.edge.stop();
    const next = edgeRig({ ...r.host }, r.clock);
    next.centrals.clear();
    for (const [k, v] of r.centrals) next.centrals.set(k, v);
    const sends = r.centrals.get("to-dc")!.sendsAnswered;
    await next.edge.start();
    checkpoints.setLeading(true);
    await run(r.clock, 500);
    expect(r.centrals.get("to-dc")!.sendsAnswered).toBe(sends);
    const t0 = next.edge.status().links[0]!.partitions.find((p) => p.topic === "telemetry" && p.partition === 0)!;
    expect(t0.notes).toEqual([]);
    source.append("telemetry", 0, 5);
    await run(r.clock, 300);
    expect(r.centrals.get("to-dc")!.position("site7.telemetry", 0)).toBe(15);
    await next.edge.stop();
  });

  it("mirrors committed offsets of the configured groups, sending held-back ones again", async () => {
    // A slow uplink: the group has read records the central does not hold yet.
    const slow = { links: [{ ...CONFIG.links[0]!, uplink: { bytesPerSecond: 5000 } }] };
    const r = edgeRig(memHost(), new ManualClock(), slow);
    r.host.source.createTopic("telemetry", 1);
    for (let i = 0; i < 10; i++) r.host.source.append("telemetry", 0, 1, { valueBytes: 10_000 });
    r.host.groups.offsets.set("dash", [{ topic: "telemetry", partition: 0, offset: 8, metadata: "" }]);
    r.host.groups.offsets.set("other", [{ topic: "telemetry", partition: 0, offset: 3, metadata: "" }]);
    const central = r.centrals.get("to-dc")!;
    await r.edge.start();
    await run(r.clock, 2100, 100);
    expect(central.position("site7.telemetry", 0)).toBeLessThan(8);
    expect(central.groupOffsets.size).toBe(0);
    expect(r.edge.status().links[0]!.pendingGroupOffsets).toBe(1);
    await run(r.clock, 30_000, 100);
    expect(central.position("site7.telemetry", 0)).toBe(10);
    expect(central.groupOffsets.get("dash/telemetry/0")).toBe(8);
    expect(central.groupOffsets.has("other/telemetry/0")).toBe(false);
    expect(r.edge.status().links[0]!.pendingGroupOffsets).toBe(0);
    // A new commit goes soon after it is made, not at the next periodic pass.
    r.host.groups.commit("dash", [{ topic: "telemetry", partition: 0, offset: 10, metadata: "" }]);
    await run(r.clock, 200, 50);
    expect(central.groupOffsets.get("dash/telemetry/0")).toBe(10);
    await r.edge.stop();
  });

  it("shows status and metrics per link and partition, with the drop ledger; pause and resume per link", async () => {
    const r = edgeRig();
    r.host.source.createTopic("alarms", 1);
    await r.edge.start();
    r.host.source.append("alarms", 0, 3);
    await r.edge.checkpoints.recordDropped("alarms", 0, [{ from: 0, to: 0 + 1, reason: "retention" }]);
    await run(r.clock, 300);
    const s = r.edge.status();
    expect(s.cluster).toBe("site7");
    const dc = s.links.find((l) => l.name === "to-dc")!;
    expect(dc.state).toBe("connected");
    expect(dc.partitions[0]).toMatchObject({ topic: "alarms", partition: 0, target: "site7.alarms", state: "sending", lag: { lagRecords: 0, position: 3 } });
    expect(dc.dropped).toEqual([{ topic: "alarms", partition: 0, ranges: [{ from: 0, to: 1, reason: "retention" }], droppedOffsets: 1 }]);
    const text = r.metrics.render();
    expect(text).toContain('tributary_mirror_lag_records{link="to-dc",topic="alarms",partition="0"} 0');
    expect(text).toContain('tributary_mirror_link_state{link="to-dc",state="connected"} 1');
    expect(text).toMatch(/tributary_mirror_bytes_sent_total\{link="to-dc",lane="live"\} [1-9]/);
    expect(text).toContain("tributary_mirror_last_advance_timestamp_seconds");

    r.edge.pause("to-dc");
    r.host.source.append("alarms", 0, 2);
    await run(r.clock, 300);
    expect(r.edge.status().links[0]!.state).toBe("paused");
    expect(r.centrals.get("to-dc")!.position("site7.alarms", 0)).toBe(3);
    expect(r.centrals.get("to-backup")!.position("alarms", 0)).toBe(5);
    r.edge.resume("to-dc");
    await run(r.clock, 300);
    expect(r.centrals.get("to-dc")!.position("site7.alarms", 0)).toBe(5);
    expect(() => r.edge.pause("nope")).toThrow(/no mirror link/);
    await r.edge.stop();
  });

  it("keeps trying to create __mirror_checkpoints while the cluster cannot, and starts the links once it can", async () => {
    const r = edgeRig();
    r.host.checkpoints.failEnsures = 2;
    r.host.source.createTopic("alarms", 1);
    r.host.source.append("alarms", 0, 1);
    await r.edge.start();
    await run(r.clock, 900, 100);
    expect(r.edge.status().leading).toBe(false);
    await run(r.clock, 1500, 100);
    expect(r.edge.status().leading).toBe(true);
    expect(r.centrals.get("to-dc")!.position("site7.alarms", 0)).toBe(1);
    await r.edge.stop();
  });

  it("re-routes when a topic is created", async () => {
    const r = edgeRig();
    await r.edge.start();
    await run(r.clock, 100);
    r.host.source.createTopic("late", 1);
    r.host.source.append("late", 0, 2);
    await run(r.clock, 300);
    expect(r.centrals.get("to-dc")!.position("site7.late", 0)).toBe(2);
    expect(CHECKPOINTS_TOPIC).toBe("__mirror_checkpoints");
    await r.edge.stop();
  });
});
