/**
 * The uplink scheduler, driven by a simulated link in 1 ms steps: partitions whose records arrive
 * on a schedule (or sit there as a backlog) are cut into whole batches, each grant takes as many
 * batches as fit (at least one), and a send completes after the link's latency plus its bytes at
 * the link's raw speed. Measured: bytes per window (the cap), time from a record's arrival to the
 * end of the send that carried it (latency), bytes per lane and per topic (shares, priorities).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { UplinkScheduler, type Lane, type UplinkConfig, type UplinkGrant } from "../src/mirror/uplink.ts";
import { codeOf } from "./support/errors.ts";
import { rng } from "./support/random.ts";

interface SimPartition {
  topic: string;
  partition?: number;
  /** Bytes waiting at the start. */
  backlogBytes?: number;
  /** A record of `recordBytes` every `everyMs`, from `startMs` on. */
  everyMs?: number;
  startMs?: number;
  recordBytes?: number;
  /** Kept at this many unsent bytes (from `startMs` on), topped up after every grant: a lane that always wants more. */
  floodBytes?: number;
  batchBytes?: number;
}

interface Send {
  grantMs: number;
  doneMs: number;
  lane: Lane;
  topic: string;
  bytes: number;
}

interface SimResult {
  sends: Send[];
  /** Per topic: arrival-to-delivery latencies of its scheduled records. */
  latencyMs: Map<string, number[]>;
}

function simulate(config: UplinkConfig, parts: SimPartition[], durationMs: number, link = { latencyMs: 20, rawBytesPerSec: 10_000_000 }): SimResult {
  const up = new UplinkScheduler(config, 0);
  const state = parts.map((p) => ({ ...p, partition: p.partition ?? 0, unsent: p.backlogBytes ?? (p.startMs ? 0 : p.floodBytes) ?? 0, arrivals: [] as { at: number; bytes: number }[] }));
  for (const s of state) up.pending(s.topic, s.partition, s.unsent, 0);
  const inflight: { grant: UplinkGrant; doneMs: number; bytes: number; carried: { at: number }[]; s: (typeof state)[number] }[] = [];
  const sends: Send[] = [];
  const latencyMs = new Map<string, number[]>();
  let wakeMs = 0;
  for (let now = 0; now <= durationMs; now++) {
    for (const s of state) {
      if (s.floodBytes && s.startMs === now) {
        s.unsent = s.floodBytes;
        up.pending(s.topic, s.partition, s.unsent, now);
        wakeMs = now;
      }
      if (s.everyMs && now % s.everyMs === 0 && now >= (s.startMs ?? 0)) {
        s.unsent += s.recordBytes!;
        s.arrivals.push({ at: now, bytes: s.recordBytes! });
        up.pending(s.topic, s.partition, s.unsent, now);
        wakeMs = now;
      }
    }
    for (let i = inflight.length - 1; i >= 0; i--) {
      const f = inflight[i]!;
      if (f.doneMs > now) continue;
      inflight.splice(i, 1);
      up.sent(f.grant, f.bytes, now);
      const l = latencyMs.get(f.s.topic) ?? [];
      for (const c of f.carried) l.push(now - c.at);
      latencyMs.set(f.s.topic, l);
      wakeMs = now;
    }
    if (now < wakeMs) continue;
    for (;;) {
      const d = up.next(now);
      if (d.kind === "wait") {
        wakeMs = now + d.waitMs;
        break;
      }
      if (d.kind === "idle") {
        wakeMs = Infinity;
        break;
      }
      const s = state.find((x) => x.topic === d.topic && x.partition === d.partition)!;
      const batch = s.batchBytes ?? 4096;
      const whole = Math.max(1, Math.floor(d.maxBytes / batch)) * batch;
      const bytes = Math.min(s.unsent, whole);
      expect(bytes).toBeGreaterThan(0);
      s.unsent -= bytes;
      let take = bytes;
      const carried: { at: number }[] = [];
      while (s.arrivals.length && take >= s.arrivals[0]!.bytes) {
        take -= s.arrivals[0]!.bytes;
        carried.push(s.arrivals.shift()!);
      }
      if (s.floodBytes) s.unsent = s.floodBytes;
      up.pending(s.topic, s.partition, s.unsent, now);
      const doneMs = now + link.latencyMs + Math.ceil((bytes * 1000) / link.rawBytesPerSec);
      inflight.push({ grant: d, doneMs, bytes, carried, s });
      sends.push({ grantMs: now, doneMs, lane: d.lane, topic: d.topic, bytes });
    }
  }
  return { sends, latencyMs };
}

const bytesIn = (sends: Send[], fromMs: number, toMs: number, pick: (s: Send) => boolean = () => true) =>
  sends.filter((s) => s.doneMs >= fromMs && s.doneMs < toMs && pick(s)).reduce((a, s) => a + s.bytes, 0);

const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.ceil(xs.length * 0.99) - 1]!;

const backlogs = (n: number, bytes: number, extra: Partial<SimPartition> = {}): SimPartition[] =>
  Array.from({ length: n }, (_, i) => ({ topic: `bulk-${i}`, backlogBytes: bytes, ...extra }));

describe("uplink scheduler on a simulated link", () => {
  for (const batchBytes of [4096, 65_536]) {
    it(`holds the cap within 10% over a simulated minute (batches of ${batchBytes} bytes)`, () => {
      const cap = 100_000;
      const { sends } = simulate(
        { bytesPerSec: cap },
        [...backlogs(3, 50_000_000, { batchBytes }), { topic: "live", everyMs: 100, recordBytes: 500, batchBytes: 500 }],
        60_000,
      );
      const total = bytesIn(sends, 0, 60_000);
      expect(total).toBeGreaterThan(0.9 * cap * 60);
      expect(total).toBeLessThan(1.1 * cap * 60);
      // Past the first second's burst, every 10 s window holds the rate too.
      for (let t = 10_000; t + 10_000 <= 60_000; t += 5_000) expect(bytesIn(sends, t, t + 10_000)).toBeLessThan(1.1 * cap * 10);
    });
  }

  it("holds the cap within 10% for random workloads", () => {
    for (let seed = 1; seed <= 4; seed++) {
      const r = rng(seed);
      const cap = 20_000 + Math.floor(r() * 500_000);
      const parts: SimPartition[] = Array.from({ length: 1 + Math.floor(r() * 12) }, (_, i) => ({
        topic: `t${i}`,
        backlogBytes: i === 0 || r() < 0.66 ? cap * 120 : 0,
        everyMs: 1 + Math.floor(r() * 200),
        recordBytes: 100 + Math.floor(r() * 3000),
        batchBytes: 1 << (10 + Math.floor(r() * 7)),
      }));
      const { sends } = simulate({ bytesPerSec: cap, backlogShare: 0.1 + r() * 0.8, priorities: [{ pattern: "t1*", priority: 5 }] }, parts, 60_000);
      const total = bytesIn(sends, 0, 60_000);
      expect(total, `seed ${seed}`).toBeGreaterThan(0.9 * cap * 60);
      expect(total, `seed ${seed}`).toBeLessThan(1.1 * cap * 60);
    }
  });

  it("keeps live-lane latency low while a backlog of many partitions drains, and gives the backlog what the live lane leaves", () => {
    const cap = 200_000;
    const config = { bytesPerSec: cap, backlogShare: 0.5 };
    const live = { topic: "live", everyMs: 50, recordBytes: 1000, batchBytes: 1000 };
    const { sends, latencyMs } = simulate(config, [...backlogs(20, 20_000_000), live], 60_000);
    const lat = latencyMs.get("live")!;
    expect(lat.length).toBeGreaterThan(1000);
    // One send slice (250 ms of the cap) plus the link's latency, at worst.
    expect(p99(lat)).toBeLessThan(350);
    expect(Math.max(...lat)).toBeLessThan(450);
    // Work-conserving: the backlog gets all the live lane (20 kB/s) leaves.
    expect(bytesIn(sends, 0, 60_000, (s) => s.lane === "backlog")).toBeGreaterThan(0.9 * (cap - 20_000) * 60);
    // Without the lanes (every partition counted live) the same record waits behind 20 partitions' sends.
    const flat = simulate({ ...config, liveMaxBytes: 1 << 30 }, [...backlogs(20, 20_000_000), live], 20_000);
    expect(p99(flat.latencyMs.get("live")!)).toBeGreaterThan(1000);
  });

  for (const share of [0.5, 0.2]) {
    it(`gives the backlog ${share} of the cap when both lanes want more, and all of it when the live lane is idle`, () => {
      const cap = 100_000;
      const floods = [0, 1, 2].map((i) => ({ topic: `live-${i}`, floodBytes: 2000, batchBytes: 1000 }));
      const both = simulate({ bytesPerSec: cap, backlogShare: share }, [...floods, ...backlogs(2, 50_000_000)], 60_000);
      const backlog = bytesIn(both.sends, 5_000, 60_000, (s) => s.lane === "backlog");
      const total = bytesIn(both.sends, 5_000, 60_000);
      expect(backlog / total).toBeGreaterThan(share - 0.05);
      expect(backlog / total).toBeLessThan(share + 0.05);
      const alone = simulate({ bytesPerSec: cap, backlogShare: share }, backlogs(2, 50_000_000), 60_000);
      expect(bytesIn(alone.sends, 0, 60_000, (s) => s.lane === "backlog")).toBeGreaterThan(0.9 * cap * 60);
      // A live lane that wakes after 30 s idle gets its share, not 30 s of banked credit.
      const late = floods.map((f) => ({ ...f, startMs: 30_000 }));
      const woken = simulate({ bytesPerSec: cap, backlogShare: share }, [...late, ...backlogs(2, 50_000_000)], 45_000);
      const after = bytesIn(woken.sends, 31_000, 41_000, (s) => s.lane === "backlog") / bytesIn(woken.sends, 31_000, 41_000);
      expect(after).toBeGreaterThan(share - 0.05);
      expect(after).toBeLessThan(share + 0.05);
    });
  }

  it("orders sends by priority and shares bytes by weight 2^priority, without starving the lowest", () => {
    const cap = 100_000;
    const config = { bytesPerSec: cap, priorities: [{ pattern: "alarms*", priority: 3 }] };
    const { sends } = simulate(config, [{ topic: "bulk", backlogBytes: 50_000_000 }, { topic: "alarms", backlogBytes: 50_000_000 }], 60_000);
    expect(sends[0]!.topic).toBe("alarms");
    const alarms = bytesIn(sends, 0, 60_000, (s) => s.topic === "alarms");
    const bulk = bytesIn(sends, 0, 60_000, (s) => s.topic === "bulk");
    expect(alarms / bulk).toBeGreaterThan(8 * 0.85);
    expect(alarms / bulk).toBeLessThan(8 * 1.15);
    // No starvation, even at the widest spread of priorities (weights 128 and 1): once the start-up
    // burst is spent (it lets bulk send while alarms' send is in flight, so bulk starts ahead and its
    // first wait is twice as long), bulk is served once in every 129 sends.
    const wide = simulate({ bytesPerSec: cap, priorities: [{ pattern: "alarms", priority: 7 }] }, [{ topic: "bulk", backlogBytes: 50_000_000 }, { topic: "alarms", backlogBytes: 50_000_000 }], 200_000);
    const runs = wide.sends.map((s) => (s.topic === "bulk" ? "B" : "a")).join("").split("B").map((r) => r.length);
    const steady = runs.slice(3, -1);
    expect(steady.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...steady)).toBeLessThanOrEqual(129);
    expect(Math.max(...runs)).toBeLessThanOrEqual(2 * 129);
  });

  it("serves a waking partition of a busy lane at once, without credit for its idle time", () => {
    // `late` wakes after 30 s next to two partitions that have sent all along: it joins level with them.
    const cap = 100_000;
    const { sends } = simulate({ bytesPerSec: cap }, [...backlogs(2, 50_000_000), { topic: "late", everyMs: 30_000, startMs: 30_000, recordBytes: 20_000_000 }], 60_000);
    const after = sends.filter((s) => s.grantMs >= 30_000);
    const late = after.findIndex((s) => s.topic === "late");
    expect(late).toBeLessThanOrEqual(2);
    // From then on the three share alike (first grant at 0 ms counted out: "late" had nothing then).
    const share = bytesIn(after, 31_000, 60_000, (s) => s.topic === "late") / bytesIn(after, 31_000, 60_000);
    expect(share).toBeGreaterThan(0.28);
    expect(share).toBeLessThan(0.39);
  });
});

describe("uplink scheduler, one decision at a time", () => {
  const small: UplinkConfig = { bytesPerSec: 10_000, minSendBytes: 1000, maxSendBytes: 4000, burstMs: 1000, maxInflightSends: 2 };

  it("is idle with nothing to send, and grants once per partition until the send is settled", () => {
    const up = new UplinkScheduler(small, 0);
    expect(up.next(0)).toEqual({ kind: "idle" });
    up.pending("t", 0, 500, 0);
    const g = up.next(0);
    expect(g).toMatchObject({ kind: "send", lane: "live", topic: "t", partition: 0, maxBytes: 2500 });
    up.pending("t", 0, 500, 0); // more arrived, the send is still in flight
    expect(up.next(0)).toEqual({ kind: "idle" });
    if (g.kind !== "send") throw new Error("unreachable");
    up.sent(g, 500, 10);
    expect(up.next(10)).toMatchObject({ kind: "send", topic: "t" });
  });

  it("holds at most maxInflightSends grants", () => {
    const up = new UplinkScheduler(small, 0);
    for (let p = 0; p < 3; p++) up.pending("t", p, 100, 0);
    expect(up.next(0).kind).toBe("send");
    expect(up.next(0).kind).toBe("send");
    expect(up.next(0)).toEqual({ kind: "idle" });
  });

  it("waits out a debt: a batch bigger than the grant delays the next one by its overdraft at the rate", () => {
    const up = new UplinkScheduler(small, 0); // bucket: 10000 bytes
    up.pending("t", 0, 100_000, 0);
    const g = up.next(0);
    if (g.kind !== "send") throw new Error("expected a grant");
    up.sent(g, 15_000, 0); // one 15 kB batch: 5000 bytes of debt
    expect(up.next(0)).toEqual({ kind: "wait", waitMs: 500 });
    expect(up.next(499)).toEqual({ kind: "wait", waitMs: 1 });
    expect(up.next(500).kind).toBe("send");
    expect(up.stats(500).bytesSent).toEqual({ live: 0, backlog: 15_000 });
  });

  it("gives back a cancelled grant, charging only the bytes that went", () => {
    const up = new UplinkScheduler(small, 0);
    up.pending("t", 0, 100, 0);
    const g = up.next(0);
    if (g.kind !== "send") throw new Error("expected a grant");
    expect(up.stats(0).tokens).toBe(10_000 - 2500);
    up.cancel(g, 0, 300);
    expect(up.stats(0).tokens).toBe(10_000 - 300);
    expect(up.stats(0).inflight).toBe(0);
    expect(() => up.sent(g, 1, 0)).toThrow(/settled twice/);
  });

  it("moves a partition to the backlog past four sends' worth, and back once it fits one", () => {
    const up = new UplinkScheduler(small, 0); // liveMaxBytes = maxBytes = 2500
    up.pending("t", 0, 2500, 0);
    expect(up.laneOf("t", 0)).toBe("live");
    up.pending("t", 0, 10_000, 0);
    expect(up.laneOf("t", 0)).toBe("live");
    up.pending("t", 0, 10_001, 0);
    expect(up.laneOf("t", 0)).toBe("backlog");
    up.pending("t", 0, 2501, 0);
    expect(up.laneOf("t", 0)).toBe("backlog");
    up.pending("t", 0, 2500, 0);
    expect(up.laneOf("t", 0)).toBe("live");
    up.pending("u", 0, 2501, 0);
    expect(up.laneOf("u", 0)).toBe("backlog");
  });

  it("refuses bad settings with INVALID_CONFIG, and more partitions than its bound with OVERLOADED", async () => {
    const bad: UplinkConfig[] = [
      { bytesPerSec: 0 },
      { bytesPerSec: Number.NaN },
      { bytesPerSec: 1000, backlogShare: 0 },
      { bytesPerSec: 1000, backlogShare: 1 },
      { bytesPerSec: 1000, minSendBytes: 10, maxSendBytes: 5 },
      { bytesPerSec: 1000, maxInflightSends: 1.5 },
      { bytesPerSec: 1000, priorities: [{ pattern: "a", priority: 8 }] },
      { bytesPerSec: 1000, priorities: [{ pattern: "a*b", priority: 1 }] },
    ];
    for (const c of bad) expect(await codeOf(() => new UplinkScheduler(c, 0)), JSON.stringify(c)).toBe("INVALID_CONFIG");
    const up = new UplinkScheduler({ bytesPerSec: 1000, maxPartitions: 2 }, 0);
    up.pending("a", 0, 1, 0);
    up.pending("a", 1, 1, 0);
    expect(await codeOf(() => up.pending("a", 2, 1, 0))).toBe("OVERLOADED");
  });

  it("never grants a busy or empty partition, never holds more than its in-flight bound, and never sends faster than rate + burst + its in-flight reservations", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("pending" as const), p: fc.nat({ max: 5 }), bytes: fc.nat({ max: 30_000 }) }),
      fc.record({ kind: fc.constant("next" as const) }),
      fc.record({ kind: fc.constant("settle" as const), i: fc.nat(), bytes: fc.nat({ max: 8000 }), cancel: fc.boolean() }),
      fc.record({ kind: fc.constant("advance" as const), ms: fc.nat({ max: 2000 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const up = new UplinkScheduler(small, 0);
        const pending = new Map<number, number>();
        const inflight: UplinkGrant[] = [];
        let now = 0;
        let settled = 0;
        let overshoot = 0;
        for (const o of ops) {
          if (o.kind === "pending") {
            pending.set(o.p, o.bytes);
            up.pending("t", o.p, o.bytes, now);
          } else if (o.kind === "advance") {
            now += o.ms;
          } else if (o.kind === "next") {
            const d = up.next(now);
            if (d.kind !== "send") continue;
            expect(pending.get(d.partition) ?? 0).toBeGreaterThan(0);
            expect(inflight.some((g) => g.partition === d.partition)).toBe(false);
            inflight.push(d);
            expect(inflight.length).toBeLessThanOrEqual(small.maxInflightSends!);
          } else if (inflight.length) {
            const [g] = inflight.splice(o.i % inflight.length, 1) as [UplinkGrant];
            if (o.cancel) up.cancel(g, now, o.bytes);
            else up.sent(g, o.bytes, now);
            settled += o.bytes;
            overshoot = Math.max(overshoot, o.bytes - g.maxBytes);
          }
          const bound = up.burstBytes + (up.bytesPerSec * now) / 1000 + small.maxInflightSends! * (up.sendBytes + overshoot);
          expect(settled).toBeLessThanOrEqual(bound);
        }
      }),
    );
  });
});
