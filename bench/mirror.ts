/**
 * Mirror link benchmark on loopback, with real broker processes (test/support/mirror-process.ts):
 * an edge broker mirrors into a central broker (`--mirror-central true`), the link dialling the
 * central's gRPC port directly. For each send compression (gzip, none):
 *
 * 1. **Backlog catch-up.** The link is paused (`POST /v1/mirror/links/to-dc/pause`) while
 *    BENCH_BACKLOG_MB (default 1024) of telemetry is produced at the edge, then resumed; the
 *    catch-up time is from the resume until `GET /v1/mirror` shows no lag on any partition.
 *    Records/s and MB/s stored are the backlog over that time; MB/s on the wire and bytes per
 *    record on the wire come from the edge's `tributary_mirror_bytes_sent_total` (the sink's
 *    payload bytes, gzipped or not, without gRPC framing).
 * 2. **Live throughput.** BENCH_LIVE_MB (default 128) produced with the link running, as fast as
 *    4 HTTP producers go: the time from the first produce until the central has it all.
 *
 * The payload is the CBOR telemetry reading of bench/telemetry.ts (~181 B, keyed by device id),
 * produced over HTTP in requests of 1000 records to a topic of 4 partitions; the link's cap is set
 * far above what loopback carries (1 GB/s), so the broker and the link are what limit it.
 *
 * Prints a table; appends it to bench/RESULTS.md (BENCH_RECORD=0: print only) with the machine,
 * runtime versions and date.
 *
 * usage: npm run bench:mirror:link   |   BENCH_BACKLOG_MB=64 BENCH_LIVE_MB=16 BENCH_RECORD=0 bun bench/mirror.ts
 */
import { execFileSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { appendToSection, fmt, machine, npmBin, REPO, table } from "./lib.ts";
import { cbor, telemetryReading } from "./telemetry.ts";
import { caughtUp, createTopic, highWatermark, mirrorStatus, startMirrorPair, type MirrorPair } from "../test/support/mirror-process.ts";
import { rng } from "../test/support/random.ts";
import { waitFor } from "../test/support/wait.ts";

const BACKLOG_MB = Number(process.env.BENCH_BACKLOG_MB ?? 1024);
const LIVE_MB = Number(process.env.BENCH_LIVE_MB ?? 128);
const record = process.env.BENCH_RECORD !== "0";
const TOPIC = "telemetry";
const PARTITIONS = 4;
const PER_REQUEST = 1000;
const PRODUCERS = 4;
/** Distinct request bodies, cycled: generating 5 million readings would load the driver, not the brokers. */
const BODIES = 64;
const HEADING = "## Mirror link — `npm run bench:mirror:link`";

interface Body {
  json: string;
  /** Key and value bytes, what the records carry. */
  payloadBytes: number;
}

function bodies(): Body[] {
  const random = rng(42);
  return Array.from({ length: BODIES }, (_, b) => {
    let payloadBytes = 0;
    const records = Array.from({ length: PER_REQUEST }, (_, j) => {
      const r = telemetryReading(b * PER_REQUEST + j, random);
      const value = cbor.encode(r);
      const key = String(r.deviceId);
      payloadBytes += value.length + key.length;
      return { key, valueBase64: Buffer.from(value).toString("base64") };
    });
    return { json: JSON.stringify({ records }), payloadBytes };
  });
}

/** Produce until `targetBytes` of key+value went in, PRODUCERS requests at a time; records produced. */
async function produceBytes(url: string, targetBytes: number, pool: readonly Body[]): Promise<number> {
  let sentBytes = 0;
  let records = 0;
  let next = 0;
  const worker = async () => {
    while (sentBytes < targetBytes) {
      const body = pool[next++ % pool.length]!;
      sentBytes += body.payloadBytes;
      for (;;) {
        const r = await fetch(`${url}/v1/topics/${TOPIC}/records?acks=1`, { method: "POST", headers: { "content-type": "application/json" }, body: body.json });
        const text = await r.text();
        if (r.status === 200) break;
        if (r.status !== 503) throw new Error(`produce: ${r.status} ${text}`);
      }
      records += PER_REQUEST;
    }
  };
  await Promise.all(Array.from({ length: PRODUCERS }, worker));
  return records;
}

async function wireBytesSent(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) if (line.startsWith("tributary_mirror_bytes_sent_total{")) total += Number(line.slice(line.lastIndexOf(" ") + 1));
  return total;
}

async function storedBytes(url: string): Promise<number> {
  const r = await fetch(`${url}/v1/topics/${TOPIC}`);
  const t = (await r.json()) as { partitions?: { sizeBytes?: number }[] };
  return (t.partitions ?? []).reduce((n, p) => n + (p.sizeBytes ?? 0), 0);
}

async function edgeRecords(url: string): Promise<number> {
  let n = 0;
  for (let p = 0; p < PARTITIONS; p++) n += (await highWatermark(url, TOPIC, p)) ?? 0;
  return n;
}

async function untilCaughtUp(p: MirrorPair, timeoutMs: number): Promise<void> {
  await waitFor("the central to catch up", async () => caughtUp(await mirrorStatus(p.edge.url), [TOPIC]), timeoutMs);
}

async function link(path: string, p: MirrorPair): Promise<void> {
  const r = await fetch(`${p.edge.url}/v1/mirror/links/to-dc/${path}`, { method: "POST" });
  if (r.status !== 204) throw new Error(`${path}: ${r.status} ${await r.text()}`);
}

interface Run {
  compression: "gzip" | "none";
  records: number;
  storedBytes: number;
  produceS: number;
  catchUpS: number;
  wireBytes: number;
  liveRecords: number;
  liveS: number;
  liveWireBytes: number;
}

async function runOnce(compression: "gzip" | "none", pool: readonly Body[]): Promise<Run> {
  const p = await startMirrorPair({ direct: true, link: { uplink: { bytesPerSecond: 1e9, maxInflightSends: 8, compression } } });
  try {
    await createTopic(p.edge.url, TOPIC, PARTITIONS);
    await link("pause", p);
    let started = performance.now();
    const records = await produceBytes(p.edge.url, BACKLOG_MB * 1e6, pool);
    const produceS = (performance.now() - started) / 1000;
    const stored = await storedBytes(p.edge.url);
    const wire0 = await wireBytesSent(p.edge.url);
    started = performance.now();
    await link("resume", p);
    await untilCaughtUp(p, 3_600_000);
    const catchUpS = (performance.now() - started) / 1000;
    const wireBytes = (await wireBytesSent(p.edge.url)) - wire0;
    console.error(`${compression}: backlog of ${fmt.int(records)} records (${fmt.mb(stored)} MB stored) produced in ${produceS.toFixed(1)} s, caught up in ${catchUpS.toFixed(1)} s`);

    const before = await edgeRecords(p.edge.url);
    const liveWire0 = await wireBytesSent(p.edge.url);
    started = performance.now();
    await produceBytes(p.edge.url, LIVE_MB * 1e6, pool);
    await untilCaughtUp(p, 600_000);
    const liveS = (performance.now() - started) / 1000;
    const liveRecords = (await edgeRecords(p.edge.url)) - before;
    const liveWireBytes = (await wireBytesSent(p.edge.url)) - liveWire0;
    console.error(`${compression}: live ${fmt.int(liveRecords)} records mirrored in ${liveS.toFixed(1)} s`);
    return { compression, records, storedBytes: stored, produceS, catchUpS, wireBytes, liveRecords, liveS, liveWireBytes };
  } finally {
    await p.stop();
  }
}

const bunVersion = execFileSync(npmBin("bun"), ["--version"], { encoding: "utf8" }).trim();
const date = new Date().toISOString().slice(0, 10);
const loadBefore = loadavg()[0]!;
const pool = bodies();
const runs: Run[] = [];
for (const c of ["gzip", "none"] as const) runs.push(await runOnce(c, pool));

const rows = runs.map((r) => [
  r.compression,
  `${fmt.mb(r.storedBytes)} MB, ${fmt.int(r.records)} records`,
  `${r.catchUpS.toFixed(1)} s`,
  fmt.int(r.records / r.catchUpS),
  fmt.mb(r.storedBytes / r.catchUpS),
  fmt.mb(r.wireBytes / r.catchUpS),
  (r.storedBytes / r.records).toFixed(1),
  (r.wireBytes / r.records).toFixed(1),
  fmt.int(r.liveRecords / r.liveS),
  (r.liveWireBytes / r.liveRecords).toFixed(1),
]);
const run = [
  `### ${date}`,
  "",
  `${machine()}; edge and central brokers on Bun ${bunVersion}, on loopback (the link dials the central directly); CBOR telemetry (~181 B values, keyed by device id; bench/telemetry.ts) produced over HTTP with acks=1, ${PER_REQUEST} records a request, ${PRODUCERS} at a time, to ${PARTITIONS} partitions. Backlog: ${BACKLOG_MB} MB of keys and values produced with the link paused, then resumed; live: ${LIVE_MB} MB produced with the link running, timed until the central has it all. Wire bytes: the sink's payloads (tributary_mirror_bytes_sent_total), without gRPC framing. Load average ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after.`,
  "",
  table(
    ["send compression", "backlog", "catch-up", "records/s", "MB/s stored", "MB/s on the wire", "B/record stored", "B/record on the wire", "live records/s (produce + mirror)", "live B/record on the wire"],
    rows,
  ),
].join("\n");
console.log(run);
if (record) {
  const path = join(REPO, "bench", "RESULTS.md");
  await writeFile(path, appendToSection(await readFile(path, "utf8"), HEADING, run));
}
