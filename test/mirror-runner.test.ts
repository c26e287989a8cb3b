/**
 * The mirror link runner (src/mirror/runner.ts) against the in-memory central (mem-sink.ts), on a
 * ManualClock with a seeded random source: continuous appends through random sink failures, lost
 * acks, central outages and runner restarts end with the central's copy equal to the source,
 * record for record; restarts resume from the checkpoints; a new leader replays them; reconnects
 * back off within bounds; the cap holds within 10 % over simulated time; the live lane stays fast
 * while a backlog drains; a partition whose bounds were unknown is planned once they are known.
 * A failing seed is printed and replays the run.
 */
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../src/logger.ts";
import { MirrorCheckpoints } from "../src/mirror/checkpoints.ts";
import { MemCentral } from "../src/mirror/mem-sink.ts";
import { BACKOFF_MAX_MS, BACKOFF_MIN_MS, MirrorLink, backoffDelayMs, type MirrorSinkFactory } from "../src/mirror/runner.ts";
import { compileTopicMapping } from "../src/mirror/topics.ts";
import type { MirrorSink } from "../src/mirror/types.ts";
import type { UplinkConfig } from "../src/mirror/uplink.ts";
import { ManualClock } from "../src/runtime/clock.ts";
import { MemCheckpointTopic, MemSourceLog } from "./support/mirror-source.ts";
import { rng } from "./support/random.ts";

const dec = new TextDecoder();
const CLUSTER = "site7";

/** Let every promise that can settle now settle (the sink and source answer without I/O). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

interface Rig {
  clock: ManualClock;
  source: MemSourceLog;
  central: MemCentral;
  topic: MemCheckpointTopic;
  checkpoints: MirrorCheckpoints;
  link: MirrorLink;
  newLink(): MirrorLink;
  /** Advance in steps, letting promises settle between them. */
  run(ms: number, stepMs?: number): Promise<void>;
}

function rig(options: { random?: () => number; uplink?: Partial<UplinkConfig>; connect?: (central: MemCentral) => MirrorSinkFactory; include?: string[] } = {}): Rig {
  const clock = new ManualClock();
  const source = new MemSourceLog();
  const central = new MemCentral({ clock });
  const topic = new MemCheckpointTopic();
  const random = options.random ?? rng(1);
  const r: Rig = {
    clock,
    source,
    central,
    topic,
    checkpoints: new MirrorCheckpoints(topic, clock, { intervalMs: 1000, logger: silentLogger }),
    link: undefined as unknown as MirrorLink,
    newLink() {
      const link = new MirrorLink({
        name: "to-dc",
        cluster: CLUSTER,
        mapping: compileTopicMapping({ include: options.include ?? ["*"] }, CLUSTER),
        uplink: { bytesPerSec: 10_000_000, ...options.uplink },
        source,
        connect: options.connect?.(central) ?? (() => central.connect()),
        checkpoints: r.checkpoints,
        clock,
        random,
        logger: silentLogger,
      });
      r.checkpoints.registerLink(link.name, (t) => link.carries(t));
      return link;
    },
    async run(ms, stepMs = 10) {
      for (let t = 0; t < ms; t += stepMs) {
        clock.advance(stepMs);
        await settle();
      }
    },
  };
  r.link = r.newLink();
  return r;
}

/** The central's copy of a partition as (source offset, value) pairs. */
function centralCopy(central: MemCentral, topic: string, p: number): [number, string][] {
  return central.records(`${CLUSTER}.${topic}`, p).map((m) => [m.sourceOffset, dec.decode(m.record.value!)]);
}

function sourceCopy(source: MemSourceLog, topic: string, p: number): [number, string][] {
  return source.records(topic, p).map((r) => [r.offset, dec.decode(r.value!)]);
}

describe("mirror link runner", () => {
  it("backoff doubles from 500 ms to 30 s with 50-100 % jitter", () => {
    const random = rng(7);
    for (let attempt = 0; attempt < 30; attempt++) {
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
      for (let i = 0; i < 50; i++) {
        const d = backoffDelayMs(attempt, random);
        expect(d).toBeGreaterThanOrEqual(base / 2);
        expect(d).toBeLessThanOrEqual(base);
      }
    }
    expect(backoffDelayMs(0, () => 0)).toBe(250);
    expect(backoffDelayMs(40, () => 1)).toBe(30_000);
  });

  it("reconnects to a central that is down at backed-off, jittered intervals", async () => {
    const attempts: number[] = [];
    const r = rig({ random: rng(3), connect: (central) => () => (attempts.push(r.clock.now()), central.connect()) });
    r.central.down = true;
    r.source.createTopic("t", 1);
    r.link.start();
    await r.run(200_000, 50);
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
    expect(gaps.length).toBeGreaterThan(6);
    gaps.forEach((g, i) => {
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** i);
      expect(g).toBeGreaterThanOrEqual(base / 2 - 50);
      expect(g).toBeLessThanOrEqual(base + 100);
    });
    expect(r.link.status().state).toBe("backing-off");
    r.central.down = false;
    r.source.append("t", 0, 3);
    await r.run(31_000, 50);
    expect(r.link.status().state).toBe("connected");
    expect(centralCopy(r.central, "t", 0)).toEqual(sourceCopy(r.source, "t", 0));
    await r.link.stop();
  });

  for (const seed of [11, 12, 13, 14]) {
    it(`copies every record once, in order, through failures, lost acks, outages and restarts (seed ${seed})`, async () => {
      const random = rng(seed);
      const r = rig({ random, uplink: { bytesPerSec: 200_000, maxInflightSends: 3 } });
      r.source.createTopic("telemetry", 2);
      r.source.createTopic("alarms", 1);
      const parts: [string, number][] = [["telemetry", 0], ["telemetry", 1], ["alarms", 0]];
      r.link.start();
      let restarts = 0;
      try {
        for (let step = 0; step < 3000; step++) {
          const x = random();
          const [t, p] = parts[Math.floor(random() * parts.length)]!;
          if (x < 0.3) r.source.append(t, p, 1 + Math.floor(random() * 20), { timestampMs: r.clock.now() });
          else if (x < 0.32) r.source.appendControl(t, p);
          else if (x < 0.335) r.central.failSends = 1;
          else if (x < 0.345) r.central.loseAcks = 1;
          else if (x < 0.35) r.central.failOpens = 2;
          else if (x < 0.355) r.central.down = !r.central.down;
          else if (x < 0.38) r.central.delayMs = Math.floor(random() * 200);
          else if (x < 0.385) {
            // A restart: the runner goes (its positions flushed or not), a new one reads the checkpoints back.
            restarts++;
            await r.link.stop();
            if (random() < 0.5) await r.checkpoints.flush();
            r.checkpoints = new MirrorCheckpoints(r.topic, r.clock, { intervalMs: 1000, logger: silentLogger });
            await r.checkpoints.load();
            r.link = r.newLink();
            r.link.start();
          } else if (x < 0.39) r.source.createTopic(`late-${step}`, 1);
          r.clock.advance(Math.floor(random() * 40));
          await settle();
        }
        Object.assign(r.central, { down: false, delayMs: 0, failSends: 0, loseAcks: 0, failOpens: 0 });
        await r.run(60_000, 100);
        for (const [t, p] of parts) {
          const copy = centralCopy(r.central, t, p);
          expect(copy.length).toBeGreaterThan(0);
          expect(copy, `${t}/${p} (seed ${seed})`).toEqual(sourceCopy(r.source, t, p));
        }
        const status = r.link.status();
        expect(status.summary.lagRecords).toBe(0);
        // The run did go through the faults it names.
        expect(r.central.acksLost).toBeGreaterThan(0);
        expect(status.reconnects).toBeGreaterThan(0);
        expect(restarts).toBeGreaterThan(3);
        expect(status.state).toBe("connected");
      } finally {
        await r.link.stop();
      }
    });
  }

  it("plans a partition whose bounds were unknown once the host learns them (a partition read from a replica elsewhere), without a reconnect", async () => {
    const r = rig();
    r.source.createTopic("t", 2);
    r.source.append("t", 0, 3);
    r.source.append("t", 1, 4);
    // Partition 1's bounds are unknown at first, as a remote partition's are until its first poll answers.
    let known = false;
    const bounds = r.source.bounds.bind(r.source);
    r.source.bounds = (topic, p) => (p === 1 && !known ? null : bounds(topic, p));
    const listeners: ((hw: number) => void)[] = [];
    const subscribe = r.source.onHighWatermark.bind(r.source);
    r.source.onHighWatermark = (topic, p, fn) => {
      if (p === 1) listeners.push(fn);
      return subscribe(topic, p, fn);
    };
    const stateOf = (p: number) => r.link.status().partitions.find((x) => x.partition === p)?.state;
    r.link.start();
    await r.run(500);
    expect(centralCopy(r.central, "t", 0)).toEqual(sourceCopy(r.source, "t", 0));
    expect(centralCopy(r.central, "t", 1)).toEqual([]);
    expect(stateOf(1)).toBe("unavailable");
    // Known now; the host tells the listeners (the high watermark has not moved since).
    known = true;
    expect(listeners.length).toBeGreaterThan(0);
    for (const fn of listeners) fn(bounds("t", 1)!.highWatermark);
    await r.run(500);
    expect(stateOf(1)).toBe("sending");
    expect(centralCopy(r.central, "t", 1)).toEqual(sourceCopy(r.source, "t", 1));
    expect(r.link.status().reconnects).toBe(0);
    await r.link.stop();
  });

  it("resumes from the checkpoints after a restart: nothing resent, the plan agrees with the central", async () => {
    const r = rig();
    r.source.createTopic("t", 1);
    for (let i = 0; i < 10; i++) r.source.append("t", 0, 5);
    r.link.start();
    await r.run(2000);
    expect(r.central.position(`${CLUSTER}.t`, 0)).toBe(50);
    await r.link.stop();
    await r.checkpoints.flush();
    const sendsBefore = r.central.sendsAnswered;
    r.checkpoints = new MirrorCheckpoints(r.topic, r.clock, { intervalMs: 1000, logger: silentLogger });
    await r.checkpoints.load();
    expect(r.checkpoints.checkpoint("to-dc", "t", 0)).toBe(50);
    r.link = r.newLink();
    r.link.start();
    await r.run(500);
    expect(r.central.sendsAnswered).toBe(sendsBefore);
    expect(r.link.status().partitions[0]!.notes).toEqual([]);
    r.source.append("t", 0, 5);
    await r.run(500);
    expect(centralCopy(r.central, "t", 0)).toEqual(sourceCopy(r.source, "t", 0));
    // A central that lost the target: the link starts it again from the log start, and says so.
    await r.link.stop();
    r.central.dropTarget(`${CLUSTER}.t`);
    r.link = r.newLink();
    r.link.start();
    await r.run(1000);
    expect(r.link.status().partitions[0]!.notes).toContain("central-reset");
    expect(centralCopy(r.central, "t", 0)).toEqual(sourceCopy(r.source, "t", 0));
    await r.link.stop();
  });

  it("reports what the edge deleted unmirrored as a gap and goes on from the log start", async () => {
    const r = rig();
    r.source.createTopic("t", 1);
    for (let i = 0; i < 4; i++) r.source.append("t", 0, 5);
    r.link.start();
    await r.run(500);
    await r.link.stop();
    for (let i = 0; i < 4; i++) r.source.append("t", 0, 5);
    await r.checkpoints.recordDropped("t", 0, [{ from: 20, to: 30, reason: "disk-budget" }]);
    r.source.deleteBelow("t", 0, 30);
    r.link = r.newLink();
    r.link.start();
    await r.run(500);
    const p = r.link.status().partitions[0]!;
    expect(p.gaps).toEqual([]); // declared with the first send and accepted
    expect(r.central.position(`${CLUSTER}.t`, 0)).toBe(40);
    expect(centralCopy(r.central, "t", 0).map(([o]) => o)).toEqual([...Array.from({ length: 20 }, (_, i) => i), ...Array.from({ length: 10 }, (_, i) => 30 + i)]);
    await r.link.stop();
  });

  it("waits for a new leader's high watermark to reach the central's position, then goes on", async () => {
    const r = rig();
    r.source.createTopic("t", 1);
    r.source.append("t", 0, 10);
    r.link.start();
    await r.run(500);
    await r.link.stop();
    // A new edge leader: its log has the records, its commit trails what the central holds.
    const fresh = new MemSourceLog();
    fresh.createTopic("t", 1);
    fresh.append("t", 0, 10, { commit: false });
    fresh.append("t", 0, 5, { commit: false });
    fresh.commit("t", 0, 0);
    const link = new MirrorLink({
      name: "to-dc",
      cluster: CLUSTER,
      mapping: compileTopicMapping({ include: ["*"] }, CLUSTER),
      uplink: { bytesPerSec: 1_000_000 },
      source: fresh,
      connect: () => r.central.connect(),
      checkpoints: r.checkpoints,
      clock: r.clock,
      random: rng(2),
      logger: silentLogger,
    });
    // Same topic id as the first source, so the central takes it as the same source.
    (fresh.topics()[0] as { id: string }).id = r.source.topics()[0]!.id;
    link.start();
    await r.run(300);
    expect(link.status().partitions[0]!.state).toBe("waiting");
    fresh.commit("t", 0, 15);
    await r.run(300);
    expect(link.status().partitions[0]!.state).toBe("sending");
    expect(r.central.position(`${CLUSTER}.t`, 0)).toBe(15);
    expect(centralCopy(r.central, "t", 0)).toEqual(sourceCopy(fresh, "t", 0));
    await link.stop();
  });

  it("holds the bytes-per-second cap within 10 % over simulated time", async () => {
    const bytesPerSec = 50_000;
    let sent = 0;
    const counting = (central: MemCentral): MirrorSinkFactory => () => {
      const sink = central.connect();
      return { ...sink, open: (h) => sink.open(h), close: () => sink.close(), commitGroupOffsets: (c, x) => sink.commitGroupOffsets(c, x), send: (s) => ((sent += s.reduce((n, x) => n + x.batches.length, 0)), sink.send(s)) } satisfies MirrorSink;
    };
    const r = rig({ uplink: { bytesPerSec, minSendBytes: 4096 }, connect: counting });
    r.source.createTopic("t", 2);
    for (let i = 0; i < 400; i++) r.source.append("t", i % 2, 20, { valueBytes: 100 }); // ~1 MB of backlog
    r.link.start();
    await r.run(1000, 20);
    const start = sent;
    const seconds = 10;
    await r.run(seconds * 1000, 20);
    const rate = (sent - start) / seconds;
    expect(rate).toBeGreaterThan(bytesPerSec * 0.9);
    expect(rate).toBeLessThan(bytesPerSec * 1.1);
    expect(r.link.status().summary.lagRecords).toBeGreaterThan(0); // still draining: the cap, not the data, bounded it
    await r.link.stop();
  });

  it("counts the cap in wire bytes: a sink that compresses reports them, and the link sends at the cap on the wire", async () => {
    const bytesPerSec = 20_000;
    let wire = 0;
    let batches = 0;
    // As GrpcMirrorSink does: the ack carries the gzipped payload's size.
    const gzipping = (central: MemCentral): MirrorSinkFactory => () => {
      const sink = central.connect();
      return {
        open: (h) => sink.open(h),
        close: () => sink.close(),
        commitGroupOffsets: (c, x) => sink.commitGroupOffsets(c, x),
        send: async (sends) => {
          const sizes = sends.map((x) => gzipSync(x.batches).length);
          const acks = await sink.send(sends);
          wire += sizes.reduce((a, b) => a + b, 0);
          batches += sends.reduce((n, x) => n + x.batches.length, 0);
          return acks.map((a, i) => ({ ...a, wireBytes: sizes[i]! }));
        },
      } satisfies MirrorSink;
    };
    const r = rig({ uplink: { bytesPerSec, minSendBytes: 4096 }, connect: gzipping });
    r.source.createTopic("t", 2);
    // Values of one repeated byte: gzip shrinks them many times over.
    for (let i = 0; i < 2000; i++) r.source.append("t", i % 2, 20, { valueBytes: 100 });
    r.link.start();
    await r.run(1000, 20);
    const [wire0, batches0] = [wire, batches];
    const seconds = 10;
    await r.run(seconds * 1000, 20);
    const wireRate = (wire - wire0) / seconds;
    expect(wireRate).toBeGreaterThan(bytesPerSec * 0.9);
    expect(wireRate).toBeLessThan(bytesPerSec * 1.1);
    // The batches went at several times the cap: counting them would have held the wire far below it.
    expect((batches - batches0) / seconds).toBeGreaterThan(bytesPerSec * 2);
    expect(r.link.status().uplink.bytesSent.backlog + r.link.status().uplink.bytesSent.live).toBe(wire);
    await r.link.stop();
  });

  it("keeps the live lane fast while a backlog drains", async () => {
    const r = rig({ uplink: { bytesPerSec: 50_000, backlogShare: 0.5, minSendBytes: 4096 } });
    r.source.createTopic("backlog", 1);
    r.source.createTopic("live", 1);
    for (let i = 0; i < 400; i++) r.source.append("backlog", 0, 20, { valueBytes: 100 });
    r.link.start();
    await r.run(1000, 10);
    const latencies: number[] = [];
    for (let i = 0; i < 40; i++) {
      r.source.append("live", 0, 1, { timestampMs: r.clock.now() });
      const at = r.clock.now();
      const want = i + 1;
      for (let t = 0; t < 5000 && (r.central.position(`${CLUSTER}.live`, 0) ?? 0) < want; t += 10) await r.run(10, 10);
      latencies.push(r.clock.now() - at);
      await r.run(250, 10);
    }
    expect(Math.max(...latencies)).toBeLessThanOrEqual(500);
    const backlog = r.link.status().partitions.find((p) => p.topic === "backlog")!;
    expect(backlog.lag!.lagRecords).toBeGreaterThan(0);
    expect(backlog.lane).toBe("backlog");
    await r.link.stop();
  });

  it("shows lag, state and a stalled flag per partition", async () => {
    const r = rig();
    r.source.createTopic("t", 1);
    r.link.start();
    await r.run(200);
    r.central.down = true;
    r.source.append("t", 0, 10, { timestampMs: r.clock.now() });
    await r.run(61_000, 100);
    const p = r.link.status().partitions[0]!;
    expect(p.lag!.lagRecords).toBe(10);
    expect(p.lag!.lagSeconds).toBeGreaterThanOrEqual(60);
    expect(p.lag!.stalled).toBe(true);
    expect(r.link.status().state).toBe("backing-off");
    r.link.pause();
    expect(r.link.status().state).toBe("paused");
    expect(r.link.status().partitions[0]!.lag!.stalled).toBe(false);
    r.central.down = false;
    r.link.resume();
    await r.run(500);
    const after = r.link.status().partitions[0]!;
    expect(after.lag!.lagRecords).toBe(0);
    expect(after.lag!.lastAdvanceMs).not.toBeNull();
    expect(after.lag!.stalled).toBe(false);
    await r.link.stop();
  });
});
