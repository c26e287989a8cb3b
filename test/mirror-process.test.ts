/**
 * Mirroring end to end with real broker processes on loopback (Bun; one run under Deno) (test/support/mirror-process.ts):
 * an edge broker mirrors into a central broker through a TCP fault proxy on the uplink.
 *
 * - Continuous keyed produce (acks=1, 3 partitions) while the proxy cuts, stalls, resets, slows
 *   and delays the link at random (seeded, the seed printed): the central's target partitions end
 *   equal to the edge logs, record for record (key, value, headers, order; no duplicate, no gap).
 * - SIGKILL of the edge (restarted: it resumes from its checkpoints and the central's position)
 *   and of the central (restarted) while a backlog drains: the copy is still exact.
 * - `GET /v1/mirror` and `tributary mirror status`: backing-off while cut, lag falling to zero,
 *   and the stalled flag while the link is stalled and the source advances.
 *
 * Everything is read through the public HTTP API. Every wait is for a condition; fault durations
 * are counted in produce requests, not in time.
 *
 * The disk budget under each policy is not repeated with processes: test/mirror-retention.test.ts
 * runs both policies on a real broker with real files (refuse, drop-oldest with the ledger written
 * before any file goes, the counters), and test/mirror-retention-cluster.test.ts in a 3-peer cluster.
 */
import { spawn } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { REPO_ROOT, runtimeCommand } from "./support/broker-process.ts";
import { caughtUp, content, createTopic, mirrorStatus, produce, readRecords, startMirrorPair, type MirrorPair, type ProduceRecord } from "./support/mirror-process.ts";
import { rng } from "./support/random.ts";
import { waitFor } from "./support/wait.ts";

const TOPIC = "telemetry";
const TARGET = `site7.${TOPIC}`;
const PARTITIONS = 3;

let pair: MirrorPair | null = null;
afterEach(async () => {
  await pair?.stop();
  pair = null;
});

const LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789";

/** Keyed records with a header; values carry a sequence so a duplicate or a gap shows, and letters gzip shrinks only so much. */
function records(from: number, n: number, pad = 40): ProduceRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const seq = from + i;
    const random = rng(seq);
    const noise = Array.from({ length: pad }, () => LETTERS[Math.floor(random() * LETTERS.length)]).join("");
    return { key: `device-${seq % 37}`, value: `reading-${seq}-${noise}`, headers: { seq: String(seq), "content-type": "text/plain" } };
  });
}

/** Produces batches of 10 until stopped, to whatever `pair.edge` is now (it may be restarted); counts requests. */
function producer(p: () => MirrorPair, topic = TOPIC) {
  const state = { stop: false, requests: 0, acked: 0, seq: 0, done: Promise.resolve() };
  state.done = (async () => {
    while (!state.stop) {
      const batch = records(state.seq, 10);
      state.seq += 10;
      if (await produce(p().edge.url, topic, batch, "1")) state.acked++;
      state.requests++;
    }
  })();
  return state;
}

async function expectExactCopy(p: MirrorPair, label: string): Promise<void> {
  await waitFor(`${label}: the link caught up`, async () => caughtUp(await mirrorStatus(p.edge.url), [TOPIC]), 45_000);
  let total = 0;
  for (let part = 0; part < PARTITIONS; part++) {
    const edge = await readRecords(p.edge.url, TOPIC, part);
    const central = await readRecords(p.central.url, TARGET, part);
    expect(content(central), `${label}: partition ${part}`).toEqual(content(edge));
    const seqs = central.map((r) => r.headers.seq);
    expect(new Set(seqs).size, `${label}: no duplicate in partition ${part}`).toBe(seqs.length);
    total += central.length;
  }
  expect(total).toBeGreaterThan(0);
}

describe("mirroring between real broker processes", () => {
  it("keeps the central copy exact through random cuts, stalls, resets and slow links while the edge takes writes", async () => {
    const seed = Number(process.env.MIRROR_SEED ?? Date.now() % 100_000);
    console.log(`mirror fault schedule seed ${seed} (MIRROR_SEED=${seed} replays it)`);
    const random = rng(seed);
    pair = await startMirrorPair({ link: { uplink: { bytesPerSecond: 20_000_000, maxSendBytes: 65_536 } } });
    const p = pair;
    await createTopic(p.edge.url, TOPIC, PARTITIONS);
    const prod = producer(() => p);
    const faults = ["cut", "stall", "reset", "throttle", "delay"] as const;
    const seen = new Set<string>();
    for (let round = 0; round < 20; round++) {
      const fault = faults[Math.floor(random() * faults.length)]!;
      seen.add(fault);
      if (fault === "cut") p.proxy.cut();
      else if (fault === "stall") p.proxy.stall();
      else if (fault === "reset") p.proxy.reset();
      else if (fault === "throttle") p.proxy.throttle(20_000 + Math.floor(random() * 100_000));
      else p.proxy.delay(20 + Math.floor(random() * 200));
      // A fault lasts for some produce requests, then the link heals for a few.
      const until = prod.requests + 3 + Math.floor(random() * 12);
      await waitFor(`produce past request ${until}`, () => prod.requests >= until);
      p.proxy.heal();
      const after = prod.requests + 1 + Math.floor(random() * 4);
      await waitFor(`produce past request ${after}`, () => prod.requests >= after);
    }
    prod.stop = true;
    await prod.done;
    expect(prod.acked).toBeGreaterThan(20);
    expect(p.proxy.stats().connections).toBeGreaterThan(1); // the faults did break connections
    await expectExactCopy(p, `seed ${seed}, faults ${[...seen].join(",")}`);
  }, 60_000);

  it("under Deno too: through cuts and a SIGKILL of the edge the central copy stays exact", async () => {
    pair = await startMirrorPair({ runtime: "deno", link: { uplink: { bytesPerSecond: 20_000_000, maxSendBytes: 65_536 } } });
    const p = pair;
    await createTopic(p.edge.url, TOPIC, PARTITIONS);
    const prod = producer(() => p);
    for (let round = 0; round < 3; round++) {
      p.proxy.cut();
      const until = prod.requests + 5;
      await waitFor(`produce past request ${until} while cut`, () => prod.requests >= until, 30_000);
      p.proxy.heal();
      const after = prod.requests + 3;
      await waitFor(`produce past request ${after}`, () => prod.requests >= after, 30_000);
    }
    await p.restartEdge("SIGKILL");
    const after = prod.requests + 5;
    await waitFor(`produce past request ${after} after the restart`, () => prod.requests >= after, 30_000);
    prod.stop = true;
    await prod.done;
    expect(prod.acked).toBeGreaterThan(10);
    await expectExactCopy(p, "deno");
  }, 90_000);

  it("SIGKILL of the edge and of the central while a backlog drains: restarted, no duplicate, no gap", async () => {
    pair = await startMirrorPair({ link: { uplink: { bytesPerSecond: 20_000_000 } } });
    const p = pair;
    await createTopic(p.edge.url, TOPIC, PARTITIONS);
    // A backlog that drains slowly through a throttled uplink, so the kills land mid-mirroring.
    p.proxy.throttle(60_000);
    for (let i = 0; i < 60; i++) expect(await produce(p.edge.url, TOPIC, records(100_000 + i * 50, 50, 200))).toBe(true);
    const prod = producer(() => p);
    const centralCount = async () => {
      let n = 0;
      for (let part = 0; part < PARTITIONS; part++) n += (await readRecords(p.central.url, TARGET, part).catch(() => [])).length;
      return n;
    };
    const lagOf = async () => (await mirrorStatus(p.edge.url)).links[0]!.summary.lagRecords;
    await waitFor("some records at the central, more to come", async () => (await centralCount()) > 200 && (await lagOf()) > 500, 30_000);

    await p.restartEdge("SIGKILL");
    const afterEdge = await centralCount();
    await waitFor("the restarted edge mirrors again", async () => (await centralCount()) > afterEdge + 200, 30_000);
    const resumed = (await mirrorStatus(p.edge.url)).links[0]!;
    expect(resumed.partitions.every((x) => x.state === "sending")).toBe(true);
    // The plan resumed at the central's position: nothing declared lost; and the restarted edge
    // had its checkpoints (replayed from __mirror_checkpoints: at most stale, never missing).
    expect(resumed.partitions.flatMap((x) => x.gaps)).toEqual([]);
    const notes = resumed.partitions.flatMap((x) => x.notes);
    expect(notes).not.toContain("checkpoint-missing");
    expect(notes).not.toContain("new-link");

    expect(await lagOf()).toBeGreaterThan(0);
    await p.restartCentral("SIGKILL");
    const afterCentral = await centralCount();
    await waitFor("the edge mirrors into the restarted central", async () => (await centralCount()) > afterCentral + 200, 40_000);

    prod.stop = true;
    await prod.done;
    p.proxy.heal();
    await expectExactCopy(p, "after both kills");
  }, 90_000);

  it("shows backing-off while cut, lag falling to zero, and stalled while the position stands still (HTTP and CLI)", async () => {
    pair = await startMirrorPair({ link: { stallAfterMs: 1500 } });
    const p = pair;
    await createTopic(p.edge.url, TOPIC, PARTITIONS);
    expect(await produce(p.edge.url, TOPIC, records(0, 60))).toBe(true);
    await waitFor("caught up", async () => caughtUp(await mirrorStatus(p.edge.url), [TOPIC]));

    p.proxy.cut();
    expect(await produce(p.edge.url, TOPIC, records(60, 60))).toBe(true);
    const cut = await waitFor("backing-off with lag", async () => {
      const s = await mirrorStatus(p.edge.url);
      return s.links[0]!.state === "backing-off" && s.links[0]!.summary.lagRecords > 0 ? s : undefined;
    });
    expect(cut.links[0]!.lastError).not.toBeNull();
    expect(await cliStatus(p.edge.url)).toMatch(/link to-dc: backing-off .*lag [1-9]\d* records/);

    p.proxy.heal();
    const lags: number[] = [cut.links[0]!.summary.lagRecords];
    await waitFor("lag falling to zero", async () => {
      const s = await mirrorStatus(p.edge.url);
      lags.push(s.links[0]!.summary.lagRecords);
      return caughtUp(s, [TOPIC]);
    }, 40_000);
    expect(lags.at(-1)).toBe(0);
    expect(lags[0]).toBeGreaterThan(0);
    for (const x of lags.slice(1)) expect(x).toBeLessThanOrEqual(lags[0]!); // nothing produced meanwhile: it only falls
    expect(await cliStatus(p.edge.url)).toMatch(/link to-dc: connected.*, lag 0 records/);

    // A stall holds the stream open: connected, sends unanswered, the position stands while the source grows.
    p.proxy.stall();
    let seq = 120;
    const stalled = await waitFor("a stalled partition", async () => {
      expect(await produce(p.edge.url, TOPIC, records(seq, 3))).toBe(true);
      seq += 3;
      const s = await mirrorStatus(p.edge.url);
      return s.links[0]!.summary.stalledPartitions > 0 ? s : undefined;
    }, 30_000);
    const part = stalled.links[0]!.partitions.find((x) => x.lag?.stalled)!;
    expect(part.lag!.lagRecords).toBeGreaterThan(0);
    expect(stalled.links[0]!.state).not.toBe("paused");
    expect(await cliStatus(p.edge.url)).toMatch(/\tyes$/m);

    p.proxy.heal();
    await waitFor("caught up, nothing stalled", async () => {
      const s = await mirrorStatus(p.edge.url);
      return caughtUp(s, [TOPIC]) && s.links[0]!.summary.stalledPartitions === 0;
    }, 40_000);
    await expectExactCopy(p, "status test");
  }, 60_000);
});

/** `tributary mirror status --url URL`, its stdout. */
async function cliStatus(url: string): Promise<string> {
  const cmd = runtimeCommand("bun", ["mirror", "status", "--url", url]);
  const child = spawn(cmd.command, cmd.args, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  if (code !== 0) throw new Error(`tributary mirror status exited ${code}: ${err}`);
  return out;
}
