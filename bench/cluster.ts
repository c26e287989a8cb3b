/**
 * `npm run bench:cluster`: what replication costs. Produce throughput and latency over gRPC
 * ProduceStream, 1 KiB and 100 B records in batches of 100, one partition, against:
 *
 * - a single broker without cluster settings (the baseline every ratio is against),
 * - a 1-peer cluster (the same broker, its produce path going through Raft),
 * - a 3-peer cluster on loopback (replication factor 3): acks=1 and acks=all to the partition's
 *   leader (found through GET /v1/cluster), and acks=all to a follower, which forwards to the leader.
 *
 * Each scenario has two phases on a fresh topic: (1) as fast as 16 batches in flight allow;
 * (2) paced at half the rate (1) reached, reporting p50/p99 from when each batch was due to its
 * ack (bench/grpc-load.ts's RATE), after half a second at that rate that is not counted (its
 * WARMUP_MS: a fresh generator's first batches). Then the headline ratio (3 peers acks=all / single, 1 KiB) is
 * measured again in short back-to-back pairs (pairedRatios), and the paced phases' rates are
 * run once more against a server that does only the transport (transportFloor). Brokers and the load generator are
 * separate Bun processes (test/support/broker-process.ts and cluster-process.ts,
 * bench/grpc-load.ts), all on this machine: the three peers and the producer share its cores, so
 * the 3-peer rows include that contention. Next to each row: the CPU the brokers spent per MB
 * produced and how busy the whole machine was, and before and after the run the disk's fsync
 * latency, so a run on a shared machine can be read for what it is.
 *
 * Prints a markdown table and the issue's targets, and appends the run to bench/RESULTS.md under
 * "Replication — `npm run bench:cluster`" (BENCH_RECORD=0: print only). About 2 minutes.
 * Options (env): BENCH_SECONDS per phase (default 3); BENCH_SIZES (default 1024,100);
 * BENCH_SETUPS (default single,1 peer,3 peers); BENCH_CASES (acks/target, e.g.
 * all/leader,1/leader: only those rows); BENCH_INFLIGHT (default 16); BENCH_PAIRS (paired rounds,
 * default 3; 0: none); BENCH_PROFILE=DIR: every broker writes a Bun CPU profile (.cpuprofile and
 * .md) into DIR when it stops; BENCH_BOX_CORES=N: every broker process (the single one, and each
 * peer) runs in its own CPU cgroup of N cores (bench/cpu-box.ts, root only), so the machine is
 * measured as equal boxes, one per broker, instead of every broker sharing its cores (0.5 fits
 * three peers and the load generator in 2 cores). The brokers run with MIMALLOC_PURGE_DELAY as
 * `npm start` sets it (-1) unless the environment sets it (`MIMALLOC_PURGE_DELAY=100`: Bun's
 * default, the allocator returning freed pages after 100 ms).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { appendToSection, fmt, machine, npmBin, percentile, REPO, runLoadProcess, table, type LoadResult } from "./lib.ts";
import { brokerEnv, startBrokerProcess, type BrokerProcess } from "../test/support/broker-process.ts";
import { CpuBox } from "./cpu-box.ts";
import { startFloorServer } from "./vs-systems.ts";
import { startClusterProcess } from "../test/support/cluster-process.ts";
import { waitFor } from "../test/support/wait.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const sizes = (process.env.BENCH_SIZES ?? "1024,100").split(",").map(Number);
const record = process.env.BENCH_RECORD !== "0";
const setups = (process.env.BENCH_SETUPS ?? "single,1 peer,3 peers").split(",") as Setup[];
const profileDir = process.env.BENCH_PROFILE;
const cases = process.env.BENCH_CASES?.split(",");
const boxCores = process.env.BENCH_BOX_CORES ? Number(process.env.BENCH_BOX_CORES) : null;
const BATCH = 100;
/** Batches in flight on the stream: at most grpc.stream.max.inflight (32); 16 as in npm run bench:grpc. */
const IN_FLIGHT = Number(process.env.BENCH_INFLIGHT ?? 16);
const LEADER_WAIT_MS = 30_000;
/** Paired rounds of the headline ratio (see pairedRatios), and seconds per half. */
const pairRounds = Number(process.env.BENCH_PAIRS ?? 3);
const PAIR_SECONDS = 2;
const HEADING = "## Replication — `npm run bench:cluster`";

type Acks = "1" | "all";
type Setup = "single" | "1 peer" | "3 peers";

interface Scenario {
  setup: Setup;
  acks: Acks;
  via: "leader" | "follower";
  recordBytes: number;
}

interface Phase {
  result: LoadResult;
  /** CPU seconds all brokers of the deployment used during the phase. */
  brokerCpuS: number;
  /** Cores the whole machine kept busy meanwhile (everything running on it, not only this bench). */
  machineBusyCores: number;
}

interface Measured extends Scenario {
  max: Phase;
  /** At half the rate `max` reached. */
  paced: Phase;
}

/** Brokers of one setup; `brokers[i]` is peer i + 1 in a cluster. */
interface Deployment {
  setup: Setup;
  brokers: readonly BrokerProcess[];
  stop(): Promise<void>;
}

const label = (bytes: number) => (bytes === 1024 ? "1 KiB" : `${bytes} B`);

async function deploy(setup: Setup): Promise<Deployment> {
  const env = profileDir ? { env: { BUN_OPTIONS: `--cpu-prof --cpu-prof-md --cpu-prof-dir=${profileDir}` } } : {};
  let started: Deployment;
  if (setup === "single") {
    const dataDir = await mkdtemp(join(tmpdir(), "tributary-bench-cluster-"));
    const broker = await startBrokerProcess({ runtime: "bun", dataDir, ...env });
    const stop = async () => {
      await broker.stop();
      await rm(dataDir, { recursive: true, force: true });
    };
    started = { setup, brokers: [broker], stop };
  } else {
    const size = setup === "3 peers" ? 3 : 1;
    const cluster = await startClusterProcess({ runtime: "bun", size, args: ["--replication-factor", String(size)], ...env });
    started = { setup, brokers: cluster.nodes, stop: () => cluster.stop() };
  }
  if (boxCores === null) return started;
  // A box that cannot be made (not root, no cgroup cpu controller) must not leave the brokers running.
  return boxed(started, boxCores).catch(async (e: unknown) => {
    await started.stop();
    throw e;
  });
}

/** Each broker of `d` in its own CPU box of `cores` (BENCH_BOX_CORES); the boxes go when it stops. */
async function boxed(d: Deployment, cores: number): Promise<Deployment> {
  const boxes = await Promise.all(d.brokers.map((_, i) => CpuBox.create(`tributary-bench-${d.setup.replace(/\W/g, "")}-${i + 1}`, cores)));
  await Promise.all(d.brokers.map((b, i) => boxes[i]!.add(b.pid)));
  const stop = async () => {
    await d.stop();
    await Promise.all(boxes.map((b) => b.remove()));
  };
  return { ...d, stop };
}

async function createTopic(broker: BrokerProcess, name: string): Promise<void> {
  const res = await fetch(`${broker.url}/v1/topics`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, partitions: 1 }),
  });
  if (res.status !== 201) throw new Error(`create topic ${name}: ${res.status} ${await res.text()}`);
}

interface ClusterView {
  partitions: { topic: string; partition: number; leader: number }[];
}

/** The leader's peer id once every peer has the topic open and names the same leader. */
function leaderOf(d: Deployment, topic: string): Promise<number> {
  return waitFor(
    `every peer to name one leader of ${topic}`,
    async () => {
      const leaders = await Promise.all(
        d.brokers.map(async (b) => {
          const view = (await (await fetch(`${b.url}/v1/cluster`)).json()) as ClusterView;
          return view.partitions.find((p) => p.topic === topic && p.partition === 0)?.leader ?? 0;
        }),
      );
      return leaders[0] && leaders.every((l) => l === leaders[0]) ? leaders[0] : undefined;
    },
    LEADER_WAIT_MS,
  );
}

/** Where the load goes: the broker itself, or the partition's leader or a follower. */
async function target(d: Deployment, topic: string, via: Scenario["via"]): Promise<BrokerProcess> {
  await createTopic(d.brokers[0]!, topic);
  if (d.setup === "single") return d.brokers[0]!;
  const leader = await leaderOf(d, topic);
  const i = via === "leader" ? leader - 1 : d.brokers.findIndex((_, j) => j !== leader - 1);
  return d.brokers[i]!;
}

/** A paced phase's first half second is not counted (grpc-load.ts WARMUP_MS): the fresh generator's first batches. */
const PACED_WARMUP_MS = 500;

function load(to: { grpcAddress: string }, topic: string, recordBytes: number, acks: Acks, ms: number, ratePerS = 0): Promise<LoadResult> {
  const warmup = ratePerS > 0 ? PACED_WARMUP_MS : 0;
  return runLoadProcess(["bench/grpc-load.ts", "stream", to.grpcAddress, topic, String(recordBytes), String(BATCH), String(IN_FLIGHT), String(ms), acks, String(Math.round(ratePerS)), String(warmup)]);
}

/**
 * CPU seconds a process has used (user + system, all threads), from /proc/PID/stat; NaN where
 * there is no /proc. Fields 14 and 15 counted from 1, after the command name in parentheses, in
 * clock ticks (100 per second on Linux).
 */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** The machine's busy and total CPU seconds so far (all cores), from /proc/stat; NaN without. */
function machineSeconds(): { busy: number; total: number } {
  try {
    const ticks = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = ticks.reduce((x, y) => x + y, 0);
    return { busy: (total - ticks[3]! - ticks[4]!) / 100, total: total / 100 };
  } catch {
    return { busy: NaN, total: NaN };
  }
}

/**
 * The floor under every acks=all latency: what one 100 KiB write + fdatasync takes on the disk
 * the brokers write to (the temp dir), p50 and p99 over `ms`. A replicated batch waits for two of
 * them in a row (the leader's, then a follower's), a single broker's for one.
 */
async function syncLatency(ms: number): Promise<{ p50: number; p99: number; perS: number }> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-bench-sync-"));
  try {
    const fh = await open(join(dir, "probe"), "w");
    const chunk = new Uint8Array(100 * 1024).fill(9);
    const took: number[] = [];
    const end = performance.now() + ms;
    while (performance.now() < end) {
      const t0 = performance.now();
      await fh.write(chunk, 0, chunk.length, null);
      await fh.datasync();
      took.push(performance.now() - t0);
    }
    await fh.close();
    took.sort((a, b) => a - b);
    return { p50: percentile(took, 50), p99: percentile(took, 99), perS: took.length / (ms / 1000) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A load phase, with the CPU every broker of the deployment and the whole machine spent meanwhile. */
async function phase(d: Deployment, run: () => Promise<LoadResult>): Promise<Phase> {
  const before = d.brokers.map((b) => cpuSeconds(b.pid));
  const m0 = machineSeconds();
  const t0 = performance.now();
  const result = await run();
  const wallS = (performance.now() - t0) / 1000;
  const m1 = machineSeconds();
  const brokerCpuS = d.brokers.reduce((sum, b, i) => sum + cpuSeconds(b.pid) - before[i]!, 0);
  return { result, brokerCpuS, machineBusyCores: (m1.busy - m0.busy) / wallS };
}

let topics = 0;
async function measure(d: Deployment, s: Scenario): Promise<Measured> {
  const topic = `bench-${++topics}`;
  const to = await target(d, topic, s.via);
  const max = await phase(d, () => load(to, topic, s.recordBytes, s.acks, seconds * 1000));
  const paced = await phase(d, () => load(to, topic, s.recordBytes, s.acks, seconds * 1000, rate(max.result) / 2));
  console.error(`done: ${s.setup} acks=${s.acks} via ${s.via} ${label(s.recordBytes)}`);
  return { ...s, max, paced };
}

/** One unrecorded second against a fresh topic, so the first row does not pay for the JIT. */
async function warmUp(d: Deployment): Promise<void> {
  const topic = `warm-${++topics}`;
  const to = await target(d, topic, "leader");
  await load(to, topic, 1024, "all", 1000);
}

const SCENARIOS: Record<Setup, Omit<Scenario, "recordBytes" | "setup">[]> = {
  single: [{ acks: "1", via: "leader" }],
  "1 peer": [{ acks: "all", via: "leader" }],
  "3 peers": [
    { acks: "1", via: "leader" },
    { acks: "all", via: "leader" },
    { acks: "all", via: "follower" },
  ],
};

/**
 * The headline ratio again, in `rounds` short back-to-back pairs (3-peer acks=all to the leader
 * against the single broker, 1 KiB, as fast as they go), alternating which goes first: on a
 * shared machine one pair's two halves see about the same noise, and the median of the pairs'
 * ratios is steadier than one ratio of two scenarios a minute apart.
 */
async function pairedRatios(single: Deployment, cluster: Deployment, rounds: number): Promise<number[]> {
  const topic = `pairs-${++topics}`;
  const [a, b] = [await target(single, topic, "leader"), await target(cluster, topic, "leader")];
  const maxRate = async (to: BrokerProcess, acks: Acks) => rate(await load(to, topic, 1024, acks, PAIR_SECONDS * 1000));
  const ratios: number[] = [];
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) {
      const base = await maxRate(a, "1");
      ratios.push((await maxRate(b, "all")) / base);
    } else {
      const replicated = await maxRate(b, "all");
      ratios.push(replicated / (await maxRate(a, "1")));
    }
  }
  return ratios;
}

async function runAll(): Promise<{ rows: Measured[]; ratios: number[] }> {
  const unknown = setups.filter((s) => !(s in SCENARIOS));
  if (unknown.length > 0) throw new Error(`BENCH_SETUPS: unknown ${unknown.join(", ")} (known: ${Object.keys(SCENARIOS).join(", ")})`);
  // Every setup stays up for the whole run, and each record size goes through all of them in
  // turn: the machine's noise then falls on a row and its baseline alike, minutes apart at most.
  const deployments: Deployment[] = [];
  try {
    for (const setup of setups) deployments.push(await deploy(setup));
    for (const d of deployments) await warmUp(d);
    const rows: Measured[] = [];
    for (const recordBytes of sizes) {
      for (const d of deployments) {
        for (const s of SCENARIOS[d.setup]) {
          if (cases && !cases.includes(`${s.acks}/${s.via}`)) continue;
          rows.push(await measure(d, { ...s, setup: d.setup, recordBytes }));
        }
      }
    }
    const single = deployments.find((d) => d.setup === "single");
    const cluster = deployments.find((d) => d.setup === "3 peers");
    const ratios = single && cluster ? await pairedRatios(single, cluster, pairRounds) : [];
    return { rows, ratios };
  } finally {
    await Promise.all(deployments.map((d) => d.stop()));
  }
}

const rate = (r: LoadResult) => r.records / (r.elapsedMs / 1000);
const latency = (r: LoadResult) => `${fmt.ms(r.p50)} / ${fmt.ms(r.p99)}`;

function baselineOf(rows: Measured[], recordBytes: number): Measured | undefined {
  return rows.find((r) => r.setup === "single" && r.recordBytes === recordBytes);
}

function resultsTable(rows: Measured[]): string {
  const ordered = sizes.flatMap((b) => rows.filter((r) => r.recordBytes === b));
  return table(
    ["setup", "acks", "produce to", "record", "max records/s", "MB/s", "vs single", "p50 / p99 ms at max", "broker CPU ms per MB", "machine busy, cores", "paced records/s", "p50 / p99 ms at half max", "errors"],
    ordered.map((r) => {
      const base = baselineOf(rows, r.recordBytes);
      const max = r.max.result;
      const mb = max.bytes / 1e6;
      return [
        r.setup,
        r.setup === "single" ? "1 (= all)" : r.acks,
        r.setup === "single" ? "the broker" : r.via === "leader" ? "leader" : "follower (forwarded)",
        label(r.recordBytes),
        fmt.int(rate(max)),
        fmt.mb(max.bytes / (max.elapsedMs / 1000)),
        base ? fmt.ratio(rate(max) / rate(base.max.result)) : "-",
        latency(max),
        Number.isNaN(r.max.brokerCpuS) || mb === 0 ? "-" : fmt.int((r.max.brokerCpuS * 1000) / mb),
        Number.isNaN(r.max.machineBusyCores) ? "-" : `${r.max.machineBusyCores.toFixed(2)} of ${cpus().length}`,
        fmt.int(rate(r.paced.result)),
        latency(r.paced.result),
        max.errors + r.paced.result.errors,
      ];
    }),
  );
}

/**
 * The same paced load against a server that does nothing but the transport (bench/floor-server.ts,
 * grpc-js answering at once): what this machine's generator and gRPC alone give at that rate.
 */
async function transportFloor(ratePerS: number): Promise<LoadResult> {
  const floor = await startFloorServer("grpc-js");
  try {
    await load(floor, TOPIC_FLOOR, 1024, "1", 1000, ratePerS);
    return await load(floor, TOPIC_FLOOR, 1024, "1", seconds * 1000, ratePerS);
  } finally {
    await floor.stop();
  }
}
const TOPIC_FLOOR = "floor";

function targetsTable(rows: Measured[], ratios: number[], floors: { single: LoadResult; replicated: LoadResult } | null): string {
  const all3 = rows.find((r) => r.setup === "3 peers" && r.acks === "all" && r.via === "leader" && r.recordBytes === 1024);
  const base = baselineOf(rows, 1024);
  if (!all3 || !base) return "";
  const ratio = rate(all3.max.result) / rate(base.max.result);
  const sorted = [...ratios].sort((x, y) => x - y);
  const median = percentile(sorted, 50);
  const pairs = sorted.length > 0 ? `; in ${sorted.length} paired rounds of ${PAIR_SECONDS} s: median ${fmt.ratio(median)} (${sorted.map(fmt.ratio).join(", ")})` : "";
  const p99 = all3.paced.result.p99;
  return table(
    ["target (issue: replication)", "measured", "met"],
    [
      [
        "3 replicas, acks=all, 1 KiB: at least 0.5x the single replica's throughput",
        `${fmt.int(rate(all3.max.result))} / ${fmt.int(rate(base.max.result))} records/s = ${fmt.ratio(ratio)}${pairs}`,
        (sorted.length > 0 ? median : ratio) >= 0.5 ? "yes" : "no",
      ],
      [
        "3 replicas, acks=all, 1 KiB: p99 under 20 ms at half the maximum load",
        `${fmt.ms(p99)} ms at ${fmt.int(rate(all3.paced.result))} records/s (single broker at half its max: ${fmt.ms(base.paced.result.p99)} ms)` +
          (floors ? `; the transport alone (floor server, same generator) at those two rates: p50 / p99 ${latency(floors.replicated)} ms and ${latency(floors.single)} ms` : ""),
        p99 < 20 ? "yes" : "no",
      ],
    ],
  );
}

const bunVersion = execFileSync(npmBin("bun"), ["--version"], { encoding: "utf8" }).trim();
const date = new Date().toISOString().slice(0, 10);
const SYNC_PROBE_MS = 1000;
const syncText = (r: Awaited<ReturnType<typeof syncLatency>>) => `p50 ${fmt.ms(r.p50)} ms, p99 ${fmt.ms(r.p99)} ms (${fmt.int(r.perS)}/s)`;
const loadBefore = loadavg()[0]!;
const syncBefore = await syncLatency(SYNC_PROBE_MS);
const { rows, ratios } = await runAll();
const pacedAt = (setup: Setup, acks: Acks) => rows.find((r) => r.setup === setup && r.acks === acks && r.via === "leader" && r.recordBytes === 1024)?.paced.result;
const [pacedSingle, pacedReplicated] = [pacedAt("single", "1"), pacedAt("3 peers", "all")];
const floors = pacedSingle && pacedReplicated ? { replicated: await transportFloor(rate(pacedReplicated)), single: await transportFloor(rate(pacedSingle)) } : null;
const syncAfter = await syncLatency(SYNC_PROBE_MS);
const run = [
  `### ${date}`,
  "",
  `${machine()}; brokers and load generator on Bun ${bunVersion}, brokers with MIMALLOC_PURGE_DELAY=${brokerEnv("bun").MIMALLOC_PURGE_DELAY ?? "(unset)"}; ${boxCores === null ? "all sharing the machine's cores" : `each broker process in its own CPU cgroup of ${boxCores} cores (BENCH_BOX_CORES: one equal box per broker; latency under a quota carries its 10 ms periods), the load generator outside them`}; ${seconds} s per phase; gRPC ProduceStream, ${IN_FLIGHT} batches of ${BATCH} in flight (paced phase: at half the max rate, its first ${PACED_WARMUP_MS} ms not counted, latency from when a batch was due), one partition, flush.mode=batch; 3 peers: replication factor 3 on loopback.`,
  "",
  `The machine meanwhile: load average ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after; a 100 KiB write + fdatasync took ${syncText(syncBefore)} before the run and ${syncText(syncAfter)} after.`,
  "",
  resultsTable(rows),
  "",
  targetsTable(rows, ratios, floors),
].join("\n");
console.log(run);
if (record) {
  const path = join(REPO, "bench", "RESULTS.md");
  await writeFile(path, appendToSection(await readFile(path, "utf8"), HEADING, run));
}
