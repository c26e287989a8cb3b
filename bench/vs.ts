/**
 * `npm run bench:vs`: Tributary side by side with NATS JetStream and Mosquitto on this machine, in
 * one run, every system started from scratch on loopback, every load in its own Bun process with
 * the system's own client (bench/vs-systems.ts). Scenarios (argument, or all):
 *
 *   fsync    (a) acknowledged after fsync on one node: JetStream file storage, sync_interval always,
 *            against Tributary acks=1, flush.mode=batch.
 *   cache    (b) acknowledged from the page cache: JetStream defaults against flush.mode=none.
 *   r3       (c) three replicas on loopback, quorum ack: JetStream R3 (sync always; defaults as a
 *            reference row) against a 3-peer Tributary cluster, acks=all, producing to the leader.
 *            Each of (a)-(c) with 100 B and 1 KiB messages, one message in flight (the latency
 *            floor) and 256 in flight (throughput), one message per publish for both; and a row
 *            of Tributary producing batches of 100 records, 16 in flight, as its clients can
 *            (JetStream 2.10 has no batch publish), compared to JetStream's 256-in-flight rate.
 *   mqtt     (d) 100 devices at QoS 1 into Mosquitto: bridged into Tributary against a plain
 *            mqtt.js subscriber (bench/mqtt.ts).
 *   catchup  (e) a consumer reading a backlog of BENCH_CATCHUP_MB (default 256; the issue's
 *            1 GiB is BENCH_CATCHUP_MB=1024) of 1 KiB messages from the start, from a broker
 *            restarted after the backlog was written (page cache warm, broker caches cold).
 *   memory   idle RSS with 100 partitions and peak RSS under load, on Bun and Deno (bench/vs-memory.ts).
 *   floor    not in the default set (it runs 6 systems, 2 sizes, 3 rounds: about 4 minutes): one
 *            message in flight without a consumer, JetStream and Tributary against servers that
 *            do nothing but the transport (and one fsync per message): what the gap in (a) is
 *            made of (floorScenario).
 *   soak     not in the default set (it takes BENCH_SOAK_SECONDS, default 600, per runtime): the
 *            maximum rate, then a broker at half of it, RSS every 10 s, growth over the second
 *            half (bench/vs-memory.ts). Runtimes: BENCH_SOAK_RUNTIMES (default bun; "bun,deno").
 *
 * Prints the tables and appends them, with machine, versions and date, to bench/RESULTS.md
 * (BENCH_NO_RESULTS=1: print only). Env: BENCH_SECONDS (default 3) per run; BENCH_RUNTIME
 * (bun|deno) of the Tributary broker in (a)-(e), default bun.
 *
 * usage: bun bench/vs.ts [fsync|cache|r3|mqtt|catchup|memory|soak ...]
 */
import { execFileSync } from "node:child_process";
import { appendFile, mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fmt, machine, median, npmBin, REPO, table } from "./lib.ts";
import { runMqttFanIn, MQTT_DEVICES } from "./mqtt.ts";
import { natsServerBinary, natsServerVersion } from "./nats-server.ts";
import { IDLE_PARTITIONS, memoryBudget, soakRuns, type MemoryResult, type SoakResult } from "./vs-memory.ts";
import { startSystem, systemName, type Measured, type SystemSpec } from "./vs-systems.ts";
import { mosquittoBinary } from "../test/support/mosquitto.ts";
import type { Runtime } from "../test/support/broker-process.ts";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const RUNTIME = (process.env.BENCH_RUNTIME ?? "bun") as Runtime;
const CATCHUP_MB = Number(process.env.BENCH_CATCHUP_MB ?? 256);
const SOAK_S = Number(process.env.BENCH_SOAK_SECONDS ?? 600);
const SOAK_RUNTIMES = (process.env.BENCH_SOAK_RUNTIMES ?? "bun").split(",") as Runtime[];
/** The maximum rate the soak halves is measured over this long. */
const SOAK_MAX_RATE_S = Math.max(SECONDS, 10);
const ALL = ["fsync", "cache", "r3", "mqtt", "catchup", "memory"] as const;
const KNOWN = [...ALL, "soak", "floor"] as const;
type ScenarioName = (typeof KNOWN)[number];

interface Shape {
  name: string;
  batch: number;
  inflight: number;
  /** Tributary only (JetStream cannot batch): compared to the JetStream row named here. */
  tributaryOnly?: string;
}
const SHAPES: Shape[] = [
  { name: "1 in flight", batch: 1, inflight: 1 },
  { name: "256 in flight", batch: 1, inflight: 256 },
  { name: "batches of 100, 16 in flight", batch: 100, inflight: 16, tributaryOnly: "256 in flight" },
];
const SIZES = [100, 1024];

interface ProduceScenario {
  id: ScenarioName;
  title: string;
  tributary: SystemSpec;
  jetstream: SystemSpec;
  /** Run too, shown without ratio. */
  reference?: SystemSpec;
  goal: boolean;
}
const PRODUCE: ProduceScenario[] = [
  {
    id: "fsync",
    title: "(a) acknowledged after fsync, one node",
    tributary: { system: "tributary", runtime: RUNTIME, flush: "batch", peers: 1 },
    jetstream: { system: "jetstream", sync: "always", replicas: 1 },
    goal: true,
  },
  {
    id: "cache",
    title: "(b) acknowledged from the page cache, one node",
    tributary: { system: "tributary", runtime: RUNTIME, flush: "none", peers: 1 },
    jetstream: { system: "jetstream", sync: "default", replicas: 1 },
    goal: false,
  },
  {
    id: "r3",
    title: "(c) three replicas on loopback, quorum ack",
    tributary: { system: "tributary", runtime: RUNTIME, flush: "batch", peers: 3 },
    jetstream: { system: "jetstream", sync: "always", replicas: 3 },
    reference: { system: "jetstream", sync: "default", replicas: 3 },
    goal: true,
  },
];

interface Row {
  spec: SystemSpec;
  recordBytes: number;
  shape: Shape;
  m: Measured;
}

const rate = (m: Measured) => m.records / (m.elapsedMs / 1000);
const sizeName = (b: number) => (b === 1024 ? "1 KiB" : `${b} B`);
const ms = (v: number | null | undefined) => (v === null || v === undefined || Number.isNaN(v) ? "-" : fmt.ms(v));

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-bench-vs-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One system, fresh, for one record size: every shape it takes, in order (latency floor first). */
async function runSystem(spec: SystemSpec, recordBytes: number): Promise<Row[]> {
  return withDir(async (dir) => {
    const sys = await startSystem(spec, dir);
    try {
      const rows: Row[] = [];
      for (const shape of SHAPES) {
        if (shape.tributaryOnly && spec.system !== "tributary") continue;
        const m = await sys.produce({ recordBytes, batch: shape.batch, inflight: shape.inflight, durationMs: SECONDS * 1000 });
        rows.push({ spec, recordBytes, shape, m });
        console.error(`done: ${systemName(spec)} ${sizeName(recordBytes)} ${shape.name}: ${fmt.int(rate(m))}/s p99 ${ms(m.p99)} ms`);
      }
      return rows;
    } finally {
      await sys.stop();
    }
  });
}

function detailTable(rows: Row[]): string {
  return table(
    ["system", "message", "shape", "msgs/s", "MB/s", "ack p50 / p99 / p99.9 ms", "e2e p50 / p99 ms", "broker CPU cores", "CPU µs/msg", "load gen CPU cores", "peak RSS MB", "errors"],
    rows.map(({ spec, recordBytes, shape, m }) => [
      systemName(spec),
      sizeName(recordBytes),
      shape.name,
      fmt.int(rate(m)),
      fmt.mb(m.bytes / (m.elapsedMs / 1000)),
      `${ms(m.p50)} / ${ms(m.p99)} / ${ms(m.p999)}`,
      `${ms(m.e2eP50)} / ${ms(m.e2eP99)}`,
      (m.cpuS / m.wallS).toFixed(2),
      m.records > 0 ? fmt.int((m.cpuS * 1e6) / m.records) : "-",
      m.loadCpuS === undefined ? "-" : (m.loadCpuS / m.wallS).toFixed(2),
      fmt.mb(m.peakRssBytes),
      m.errors,
    ]),
  );
}

interface SummaryRow {
  cells: (string | number)[];
}

/** The goal for (a) and (c): at least 1.0x the throughput and at most 1.0x the p99, both. */
function verdict(goal: boolean, thr: number, p99: number): string {
  if (!goal) return "(report)";
  const misses = [...(thr < 1 ? ["throughput"] : []), ...(p99 > 1 ? ["p99"] : [])];
  return misses.length === 0 ? "met" : `missed (${misses.join(", ")})`;
}

function summarize(s: ProduceScenario, rows: Row[]): SummaryRow[] {
  const out: SummaryRow[] = [];
  const find = (spec: SystemSpec, size: number, shapeName: string) => rows.find((r) => r.spec === spec && r.recordBytes === size && r.shape.name === shapeName);
  for (const size of SIZES) {
    for (const shape of SHAPES) {
      const t = find(s.tributary, size, shape.name);
      const j = find(s.jetstream, size, shape.tributaryOnly ?? shape.name);
      if (!t || !j) continue;
      const thr = rate(t.m) / rate(j.m);
      const p99 = shape.tributaryOnly ? NaN : t.m.p99 / j.m.p99;
      out.push({
        cells: [
          s.title,
          sizeName(size),
          shape.tributaryOnly ? `T: ${shape.name} / J: ${shape.tributaryOnly}` : shape.name,
          `${fmt.int(rate(t.m))} / ${fmt.int(rate(j.m))}`,
          fmt.ratio(thr),
          `${ms(t.m.p99)} / ${ms(j.m.p99)}`,
          Number.isNaN(p99) ? "-" : fmt.ratio(p99),
          `${ms(t.m.e2eP99)} / ${ms(j.m.e2eP99)}`,
          verdict(s.goal, thr, p99),
        ],
      });
    }
  }
  return out;
}

async function produceScenario(s: ProduceScenario): Promise<{ detail: string; summary: SummaryRow[] }> {
  const rows: Row[] = [];
  for (const size of SIZES) {
    // Back to back per size, JetStream first, so drift in the machine's load hits both alike.
    for (const spec of [s.jetstream, s.tributary, ...(s.reference ? [s.reference] : [])]) rows.push(...(await runSystem(spec, size)));
  }
  return { detail: `#### ${s.title}\n\n${detailTable(rows)}`, summary: summarize(s, rows) };
}

const FLOOR_ROUNDS = Number(process.env.BENCH_FLOOR_ROUNDS ?? 3);
const FLOOR_SPECS: SystemSpec[] = [
  { system: "jetstream", sync: "always", replicas: 1 },
  { system: "tributary", runtime: RUNTIME, flush: "batch", peers: 1 },
  { system: "floor", server: "grpc-js", fsync: false },
  { system: "floor", server: "grpc-js", fsync: true },
  { system: "floor", server: "h2", fsync: false },
  { system: "floor", server: "h2", fsync: true },
];


/**
 * floor: (a)'s one message in flight, without a consumer, against what the transport alone
 * allows: JetStream (sync always), Tributary (acks=1, flush batch) and the floor servers of
 * bench/floor-server.ts (grpc-js or gRPC on node:http2, answering at once or after a blocking
 * write + fdatasync), all driven by their clients in separate Bun processes. BENCH_FLOOR_ROUNDS
 * rounds (default 3), every system fresh in each, in turn; medians of the rounds.
 */
async function floorScenario(): Promise<{ detail: string; summary: SummaryRow[] }> {
  const runs = new Map<string, Measured[]>();
  const key = (spec: SystemSpec, size: number) => `${systemName(spec)}|${size}`;
  for (const size of SIZES) {
    for (let round = 0; round < FLOOR_ROUNDS; round++) {
      for (const spec of FLOOR_SPECS) {
        const m = await withDir(async (dir) => {
          const sys = await startSystem(spec, dir);
          try {
            return await sys.produce({ recordBytes: size, batch: 1, inflight: 1, durationMs: SECONDS * 1000, e2e: false });
          } finally {
            await sys.stop();
          }
        });
        runs.set(key(spec, size), [...(runs.get(key(spec, size)) ?? []), m]);
        console.error(`done: floor round ${round + 1} ${systemName(spec)} ${sizeName(size)}: ${fmt.int(rate(m))}/s p99 ${ms(m.p99)} ms`);
      }
    }
  }
  const rows: (string | number)[][] = [];
  for (const size of SIZES) {
    const js = runs.get(key(FLOOR_SPECS[0]!, size))!;
    const [jsRate, jsP99] = [median(js.map(rate)), median(js.map((m) => m.p99))];
    for (const spec of FLOOR_SPECS) {
      const ms_ = runs.get(key(spec, size))!;
      const [r, p50, p99] = [median(ms_.map(rate)), median(ms_.map((m) => m.p50)), median(ms_.map((m) => m.p99))];
      rows.push([
        systemName(spec),
        sizeName(size),
        `${fmt.int(r)} (${ms_.map((m) => fmt.int(rate(m))).join(", ")})`,
        fmt.ratio(r / jsRate),
        `${ms(p50)} / ${ms(p99)}`,
        fmt.ratio(p99 / jsP99),
        fmt.int(median(ms_.map((m) => (m.cpuS * 1e6) / Math.max(1, m.records)))),
        fmt.int(median(ms_.map((m) => ((m.loadCpuS ?? NaN) * 1e6) / Math.max(1, m.records)))),
      ]);
    }
  }
  const detail = table(["system", "message", "msgs/s, median (rounds)", "vs JetStream", "ack p50 / p99 ms", "p99 vs JetStream", "server CPU µs/msg", "load gen CPU µs/msg"], rows);
  return { detail: `#### floor: one message in flight, no consumer, ${FLOOR_ROUNDS} rounds\n\n${detail}`, summary: [] };
}

async function catchupScenario(): Promise<{ detail: string; summary: SummaryRow[] }> {
  const count = Math.floor((CATCHUP_MB * 2 ** 20) / 1024);
  const specs: SystemSpec[] = [
    { system: "jetstream", sync: "default", replicas: 1 },
    { system: "tributary", runtime: RUNTIME, flush: "batch", peers: 1 },
  ];
  const results: { spec: SystemSpec; fillS: number; m: Measured }[] = [];
  for (const spec of specs) {
    await withDir(async (dir) => {
      let sys = await startSystem(spec, dir);
      try {
        const fill = await sys.produce({
          recordBytes: 1024,
          batch: spec.system === "tributary" ? 100 : 1,
          inflight: spec.system === "tributary" ? 16 : 256,
          durationMs: 600_000,
          count,
          e2e: false,
        });
        if (fill.records < count) throw new Error(`${systemName(spec)}: wrote ${fill.records} of ${count} backlog records`);
        sys = await sys.restart();
        const m = await sys.catchup(count, 300_000);
        results.push({ spec, fillS: fill.elapsedMs / 1000, m });
        console.error(`done: catch-up ${systemName(spec)}: ${fmt.int(rate(m))}/s`);
      } finally {
        await sys.stop();
      }
    });
  }
  const detail = table(
    ["system", "backlog", "written in s", "read msgs/s", "read MB/s", "first message ms", "broker CPU cores", "CPU µs/msg", "peak RSS MB"],
    results.map(({ spec, fillS, m }) => [
      systemName(spec),
      `${fmt.int(count)} x 1 KiB (${CATCHUP_MB} MiB)`,
      fillS.toFixed(1),
      fmt.int(rate(m)),
      fmt.mb(m.bytes / (m.elapsedMs / 1000)),
      ms(m.p50),
      (m.cpuS / m.wallS).toFixed(2),
      fmt.int((m.cpuS * 1e6) / Math.max(1, m.records)),
      fmt.mb(m.peakRssBytes),
    ]),
  );
  const [j, t] = [results[0]!, results[1]!];
  const summary = [
    {
      cells: [`(e) catch-up read of ${CATCHUP_MB} MiB`, "1 KiB", "from the start", `${fmt.int(rate(t.m))} / ${fmt.int(rate(j.m))}`, fmt.ratio(rate(t.m) / rate(j.m)), "-", "-", "-", "(report)"],
    },
  ];
  return { detail: `#### (e) catch-up read\n\n${detail}`, summary };
}

async function mqttScenario(): Promise<{ detail: string; summary: SummaryRow[] }> {
  const rows = await runMqttFanIn();
  const [plain, bridge] = [rows[0]!, rows[1]!];
  const detail = table(
    ["path", "messages", "seconds", "msgs/s", "vs plain", "Mosquitto CPU s", "Tributary CPU s", "Tributary peak RSS MB"],
    rows.map((r) => [
      r.path,
      r.messages,
      r.seconds.toFixed(2),
      fmt.int(r.rate),
      fmt.ratio(r.rate / plain.rate),
      r.mosquittoCpuS.toFixed(2),
      r.brokerCpuS === undefined ? "-" : r.brokerCpuS.toFixed(2),
      r.brokerPeakRssBytes === undefined ? "-" : fmt.mb(r.brokerPeakRssBytes),
    ]),
  );
  const summary = [
    {
      cells: [`(d) MQTT fan-in, ${MQTT_DEVICES} devices QoS 1`, "~110 B JSON", "bridge vs plain subscriber", `${fmt.int(bridge.rate)} / ${fmt.int(plain.rate)}`, fmt.ratio(bridge.rate / plain.rate), "-", "-", "-", "(report)"],
    },
  ];
  return { detail: `#### (d) MQTT fan-in (Mosquitto ${mosquittoVersion()})\n\n${detail}`, summary };
}

function memoryTables(results: MemoryResult[]): string {
  const mb = (b: number) => fmt.mb(b);
  const budget = table(
    ["runtime", `idle RSS, ${IDLE_PARTITIONS} partitions`, "goal < 80 MB", "peak RSS under load (1 KiB x 100, 16 in flight)", "load msgs/s", "goal < 256 MB"],
    results.map((r) => [
      r.runtime,
      `${mb(r.idleRssBytes)} MB`,
      r.idleRssBytes < 80e6 ? "met" : "missed",
      `${mb(r.load.peakRssBytes)} MB`,
      fmt.int(rate(r.load)),
      r.load.peakRssBytes < 256e6 ? "met" : "missed",
    ]),
  );
  return budget;
}

function soakTable(results: SoakResult[]): string {
  const mb = (b: number) => fmt.mb(b);
  const rows = table(
    ["runtime", "seconds", "max msgs/s", "target / achieved msgs/s", "RSS first sample MB", "at 1/4 MB", "at end MB", "peak MB", "growth, 2nd half MB/min", "goal: no growth", "p99 ms per batch"],
    results.map((s) => [
      s.runtime,
      s.seconds,
      fmt.int(s.maxRate),
      `${fmt.int(s.rate)} / ${fmt.int(s.achievedRate)}`,
      mb(s.firstRssBytes),
      mb(s.quarterRssBytes),
      mb(s.endRssBytes),
      mb(s.peakRssBytes),
      s.growthMBPerMin.toFixed(2),
      // Growth within the noise of the collector's sawtooth: under 0.5 MB/min (5 MB over 10
      // minutes). A negative slope is the heap shrinking back, not growth.
      s.growthMBPerMin < 0.5 ? "met" : "missed",
      ms(s.p99),
    ]),
  );
  // The RSS series, one sample a minute, so a reader can see the shape, not only the slope.
  const perMinute = Math.max(1, Math.round(60 / Number(process.env.BENCH_SOAK_SAMPLE_S ?? 10)));
  const series = results.map((s) => `${s.runtime}: ${s.samples.filter((_, i) => i % perMinute === perMinute - 1).map((p) => mb(p.rssBytes)).join(", ") || "(under a minute)"} MB`).join("; ");
  return `gRPC ProduceStream, 1 KiB records, batches of 100, 16 in flight, at half the maximum rate measured over ${SOAK_MAX_RATE_S} s; RSS every ${process.env.BENCH_SOAK_SAMPLE_S ?? 10} s, growth = slope of a least-squares line over the second half:\n\n${rows}\n\nRSS each minute: ${series}`;
}

function version(cmd: string, args: string[], pick: RegExp): string {
  try {
    const out = execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
    return out.match(pick)?.[1] ?? out.trim().split("\n")[0]!;
  } catch (e) {
    // mosquitto -h exits 3 after printing its version.
    const out = String((e as { stdout?: Buffer }).stdout ?? "");
    return out.match(pick)?.[1] ?? "unknown";
  }
}
const mosquittoVersion = () => version(mosquittoBinary(), ["-h"], /mosquitto version (\S+)/);

function versions(): string {
  const bun = version(npmBin("bun"), ["--version"], /(\S+)/);
  const deno = version(npmBin("deno"), ["--version"], /deno (\S+)/);
  return `Bun ${bun}, Deno ${deno}, nats-server ${natsServerVersion() ?? "missing"} (${natsServerBinary()}), Mosquitto ${mosquittoVersion()}`;
}

async function main(): Promise<void> {
  const asked = process.argv.slice(2) as ScenarioName[];
  const chosen = asked.length > 0 ? asked : [...ALL];
  for (const a of chosen) if (!(KNOWN as readonly string[]).includes(a)) throw new Error(`unknown scenario ${a}; one of ${KNOWN.join(", ")}`);
  const load0 = loadavg()[0]!;
  const started = Date.now();
  const details: string[] = [];
  const summary: SummaryRow[] = [];
  let memory = "";
  for (const s of PRODUCE.filter((p) => chosen.includes(p.id))) {
    const r = await produceScenario(s);
    details.push(r.detail);
    summary.push(...r.summary);
  }
  if (chosen.includes("mqtt")) {
    const r = await mqttScenario();
    details.push(r.detail);
    summary.push(...r.summary);
  }
  if (chosen.includes("floor")) details.push((await floorScenario()).detail);
  if (chosen.includes("catchup")) {
    const r = await catchupScenario();
    details.push(r.detail);
    summary.push(...r.summary);
  }
  if (chosen.includes("memory")) memory = memoryTables(await memoryBudget(["bun", "deno"], SECONDS));
  const soak = chosen.includes("soak") ? soakTable(await soakRuns(SOAK_RUNTIMES, SOAK_MAX_RATE_S, SOAK_S)) : "";
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  const header = [
    `### ${new Date().toISOString().slice(0, 10)}: ${chosen.join(", ")}`,
    "",
    `${machine()}; ${versions()}; Tributary broker on ${RUNTIME}; ${SECONDS} s per run; ${minutes} min in all; load average ${load0.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end (a shared machine: read the ratios, measured back to back, not the absolute numbers).`,
  ].join("\n");
  const summaryTable =
    summary.length === 0
      ? ""
      : table(["scenario", "message", "shape", "msgs/s Tributary / JetStream", "throughput ratio", "ack p99 ms T / J", "p99 ratio", "e2e p99 ms T / J", "goal"], summary.map((r) => r.cells));
  const parts = [header, ...(summaryTable ? ["Summary (ratios Tributary / JetStream; (d) bridge / plain subscriber):", summaryTable] : []), ...details, ...(memory ? ["#### Memory budget", memory] : []), ...(soak ? [`#### Soak (${SOAK_S} s)`, soak] : [])];
  const text = parts.join("\n\n") + "\n";
  console.log(text);
  if (process.env.BENCH_NO_RESULTS !== "1") {
    await appendFile(join(REPO, "bench/RESULTS.md"), `\n${text}`);
    console.error("appended to bench/RESULTS.md");
  }
}

await main();
