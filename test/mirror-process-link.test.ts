/**
 * The uplink with real Bun broker processes (test/support/mirror-process.ts), and the edge as a
 * 3-peer cluster:
 *
 * - the bytes-per-second cap holds within 10 % on the wire (gzip on), measured as the bytes the
 *   fault proxy carried from the edge to the central over a window while a backlog drains;
 * - a fresh record on a live topic reaches the central fast while a backlog drains: its latency
 *   against the drain time;
 * - a 3-peer edge: SIGKILL of the peer leading `__mirror_checkpoints` mid-mirroring; another peer
 *   takes the link over and the central's copy equals the edge log, record for record.
 */
import { afterEach, describe, expect, it } from "vitest";
import { caughtUp, content, createTopic, highWatermark, mirrorStatus, produce, readRecords, startEdgeCluster, startMirrorPair, type EdgeCluster, type MirrorPair, type ProduceRecord } from "./support/mirror-process.ts";
import { rng } from "./support/random.ts";
import { waitFor } from "./support/wait.ts";

let pair: MirrorPair | null = null;
let edges: EdgeCluster | null = null;
afterEach(async () => {
  await pair?.stop();
  await edges?.stop();
  pair = null;
  edges = null;
});

const LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789";

/** Readings with random letters: gzip shrinks them about 1.6 times, like mixed telemetry. */
function readings(seed: number, n: number, pad: number): ProduceRecord[] {
  const random = rng(seed);
  return Array.from({ length: n }, (_, i) => ({
    key: `device-${(seed + i) % 50}`,
    value: `${seed}-${i}-${Array.from({ length: pad }, () => LETTERS[Math.floor(random() * LETTERS.length)]).join("")}`,
  }));
}

async function backlog(url: string, topic: string, requests: number, perRequest = 100, pad = 400): Promise<void> {
  for (let i = 0; i < requests; i++) expect(await produce(url, topic, readings(i * 1000, perRequest, pad))).toBe(true);
}

describe("the mirror uplink between real broker processes", () => {
  it("holds the bytes-per-second cap within 10 % on the wire, gzip on", async () => {
    const cap = 150_000;
    pair = await startMirrorPair({ link: { uplink: { bytesPerSecond: cap } } });
    const p = pair;
    await createTopic(p.edge.url, "bulk", 2);
    p.proxy.cut();
    await backlog(p.edge.url, "bulk", 60); // ~2.5 MB stored, ~1.6 MB gzipped: ten seconds at the cap
    p.proxy.heal();
    // Past the first second's burst, measure a window while the backlog still drains.
    await waitFor("the first second of draining", () => p.proxy.stats().bytesAtoB > cap * 1.5, 20_000);
    const start = { bytes: p.proxy.stats().bytesAtoB, ms: performance.now() };
    await waitFor("a measuring window of 4 s", () => performance.now() - start.ms >= 4000, 20_000);
    const rate = (p.proxy.stats().bytesAtoB - start.bytes) / ((performance.now() - start.ms) / 1000);
    const status = await mirrorStatus(p.edge.url);
    expect(status.links[0]!.summary.lagRecords, "the backlog, not the data, bounded the window").toBeGreaterThan(0);
    expect(rate).toBeGreaterThan(cap * 0.9);
    expect(rate).toBeLessThan(cap * 1.1);
  }, 60_000);

  it("a live record reaches the central fast while a backlog drains", async () => {
    pair = await startMirrorPair({ link: { uplink: { bytesPerSecond: 300_000, backlogShare: 0.5 } } });
    const p = pair;
    await createTopic(p.edge.url, "bulk", 1);
    await createTopic(p.edge.url, "live", 1);
    expect(await produce(p.edge.url, "live", readings(1, 1, 20))).toBe(true);
    await waitFor("the live topic mirrored", async () => (await highWatermark(p.central.url, "site7.live", 0)) === 1);
    p.proxy.cut();
    await backlog(p.edge.url, "bulk", 80); // ~3.3 MB stored, ~2 MB gzipped: about 7 s at the cap
    const healedAt = performance.now();
    p.proxy.heal();
    const latencies: number[] = [];
    let drainedAt: number | null = null;
    for (let i = 2; drainedAt === null; i++) {
      expect(await produce(p.edge.url, "live", readings(i, 1, 20))).toBe(true);
      const sentAt = performance.now();
      await waitFor(`live record ${i} at the central`, async () => (await highWatermark(p.central.url, "site7.live", 0)) === i, 20_000);
      latencies.push(performance.now() - sentAt);
      const s = await mirrorStatus(p.edge.url);
      if (caughtUp(s, ["bulk"])) drainedAt = performance.now();
      expect(i).toBeLessThan(500);
    }
    const drainMs = drainedAt - healedAt;
    const worst = Math.max(...latencies);
    console.log(`backlog drained in ${drainMs.toFixed(0)} ms; live latency while draining: worst ${worst.toFixed(0)} ms over ${latencies.length} records`);
    expect(drainMs).toBeGreaterThan(3000);
    expect(latencies.length).toBeGreaterThan(3);
    // One send slice of the cap (250 ms) plus a round trip and the polling, far below the drain.
    expect(worst).toBeLessThan(drainMs / 3);
  }, 60_000);

  it("a 3-peer edge: SIGKILL of the peer leading __mirror_checkpoints mid-mirroring; another takes the link over, the copy exact", async () => {
    edges = await startEdgeCluster({ tickMs: 50 });
    const e = edges;
    const nodes = () => e.cluster.nodes;
    await createTopic(nodes()[0]!.url, "telemetry", 2);
    const leaderIndex = async (): Promise<number | undefined> => {
      for (let i = 0; i < nodes().length; i++) {
        const s = await mirrorStatus(nodes()[i]!.url).catch(() => null);
        if (s?.leading && s.links[0]?.state === "connected") return i;
      }
      return undefined;
    };
    const first = await waitFor("a peer running the link", leaderIndex, 30_000);
    // Slow enough that the link cannot finish before the kill, even on a busy machine.
    e.proxy.throttle(5_000);
    let seq = 0;
    const produceVia = async (skip: number) => {
      const via = nodes().find((_, i) => i !== skip)!;
      const batch = readings(seq, 20, 200);
      await waitFor("a produce taken", () => produce(via.url, "telemetry", batch, "all"), 30_000);
      seq += 20;
    };
    for (let i = 0; i < 20; i++) await produceVia(first);
    const atCentral = async () => (await readRecords(e.central.url, "site7.telemetry", 0).catch(() => [])).length + (await readRecords(e.central.url, "site7.telemetry", 1).catch(() => [])).length;
    const midway = await waitFor("mirroring under way", async () => {
      const n = await atCentral();
      return n > 20 ? n : undefined;
    }, 30_000);
    expect(midway).toBeLessThan(seq);

    await e.cluster.kill(first, "SIGKILL");
    const next = await waitFor("another peer running the link", async () => {
      const i = await leaderIndex().catch(() => undefined);
      return i !== undefined && i !== first ? i : undefined;
    }, 40_000);
    for (let i = 0; i < 10; i++) await produceVia(first);
    e.proxy.heal();
    const via = nodes()[next]!;
    // `via` serves its own replica, which may trail the partitions' leaders: wait until it holds
    // every value produced and the link shows no lag against it, so both sides are complete.
    const complete = async () => {
      const edge = await Promise.all([0, 1].map((part) => readRecords(via.url, "telemetry", part)));
      const values = new Set(edge.flat().map((r) => r.value));
      if (values.size < seq || !caughtUp(await mirrorStatus(via.url), ["telemetry"])) return undefined;
      const central = await Promise.all([0, 1].map((part) => readRecords(e.central.url, "site7.telemetry", part)));
      return central.every((c, part) => c.length >= edge[part]!.length) ? { edge, central } : undefined;
    };
    const { edge, central } = await waitFor("the new leader caught up with every record", complete, 40_000);
    // A produce retried after a timeout may be in the edge log twice: the central must equal the log, whatever it holds.
    for (const part of [0, 1]) expect(content(central[part]!)).toEqual(content(edge[part]!));
    expect(new Set(central.flat().map((r) => r.value)).size).toBe(seq); // every acknowledged record made it
  }, 90_000);
});
