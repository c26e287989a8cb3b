/**
 * The systems the side-by-side benchmarks (bench/vs.ts) start from scratch and drive, behind one
 * shape: Tributary (one broker through `startBrokerProcess`, or a 3-peer cluster through
 * `startClusterProcess`) and NATS JetStream (bench/nats-server.ts, one server or an R3 cluster).
 * Each gets one partition / one stream (`bench` / `BENCH` on subject `bench`), and its load runs
 * in a separate Bun process with the system's own client: bench/vs-grpc-load.ts (gRPC ProduceStream,
 * a Subscribe tail for end-to-end latency) or bench/nats-load.ts (js.publish, an ordered consumer).
 * Broker CPU and peak RSS come from /proc over the run (bench/proc-stats.ts): CPU summed over a
 * cluster's processes, peak RSS of its largest one.
 *
 * @example
 *   const sys = await startSystem({ system: "jetstream", sync: "always", replicas: 1 }, dir);
 *   const run = await sys.produce({ recordBytes: 1024, batch: 1, inflight: 1, durationMs: 3000 });
 *   await sys.stop();
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { npmBin, REPO, runLoadProcess, type LoadResult } from "./lib.ts";
import { startJetStream } from "./nats-server.ts";
import { sample } from "./proc-stats.ts";
import { startBrokerProcess, type BrokerProcess, type Runtime } from "../test/support/broker-process.ts";
import { startClusterProcess } from "../test/support/cluster-process.ts";
import { waitFor } from "../test/support/wait.ts";

export type SystemSpec =
  | { system: "tributary"; runtime: Runtime; flush: "batch" | "none"; peers: 1 | 3 }
  | { system: "jetstream"; sync: "always" | "default"; replicas: 1 | 3 }
  /** Not a broker: the transport (and one fsync per message) alone, bench/floor-server.ts. */
  | { system: "floor"; server: "grpc-js" | "h2"; fsync: boolean };

export interface ProduceParams {
  recordBytes: number;
  /** Records per request: JetStream publishes one message per call, so 1 there. */
  batch: number;
  inflight: number;
  durationMs: number;
  /** Records/s to hold (0: as fast as acks allow). */
  rate?: number;
  /** Stop after this many records (0: run for durationMs). */
  count?: number;
  /** Run a consumer alongside for end-to-end latency; default true. */
  e2e?: boolean;
}

export interface Measured extends LoadResult {
  /** Broker CPU seconds over the load process's whole run, and that run's wall time. */
  cpuS: number;
  wallS: number;
  peakRssBytes: number;
}

export interface RunningSystem {
  spec: SystemSpec;
  pids: number[];
  produce(p: ProduceParams): Promise<Measured>;
  /** Read `count` records from the start of the partition / stream. */
  catchup(count: number, deadlineMs: number): Promise<Measured>;
  /** Stop and start again on the same data (the catch-up reads from a broker that just started). */
  restart(): Promise<RunningSystem>;
  stop(): Promise<void>;
}

export const TOPIC = "bench";
export const STREAM = "BENCH";

/** ProduceStream's window (grpc.stream.max.inflight) is opened to the largest in-flight count the benchmarks use. */
export const STREAM_INFLIGHT_MAX = 256;

export function systemName(spec: SystemSpec): string {
  if (spec.system === "floor") return `floor: ${spec.server === "h2" ? "gRPC on node:http2" : "grpc-js server"}${spec.fsync ? " + write + fdatasync" : ", answer at once"} (Bun)`;
  if (spec.system === "jetstream") return `JetStream${spec.replicas === 3 ? " R3" : ""} (sync ${spec.sync === "always" ? "always" : "default: 2 min"})`;
  const flush = spec.flush === "batch" ? "flush batch" : "flush none";
  return spec.peers === 3 ? `Tributary 3 peers acks=all (${spec.runtime}, ${flush})` : `Tributary acks=1 (${spec.runtime}, ${flush})`;
}

async function measure(pids: number[], run: () => Promise<LoadResult>): Promise<Measured> {
  const before = sample(pids);
  const t0 = performance.now();
  const r = await run();
  const wallS = (performance.now() - t0) / 1000;
  const after = sample(pids);
  return { ...r, cpuS: after.cpuS - before.cpuS, wallS, peakRssBytes: after.peakRssBytes };
}

function loadEnv(p: ProduceParams, extra: Record<string, string> = {}): Record<string, string> {
  return { LOAD_E2E: p.e2e === false ? "0" : "1", LOAD_RATE: String(p.rate ?? 0), LOAD_COUNT: String(p.count ?? 0), ...extra };
}

async function httpJson(url: string, init?: RequestInit): Promise<unknown> {
  const res = await fetch(url, init);
  const body = await res.text();
  if (!res.ok) throw new Error(`${init?.method ?? "GET"} ${url}: ${res.status} ${body}`);
  return body ? JSON.parse(body) : null;
}

export async function createTopic(broker: BrokerProcess, partitions = 1, config: Record<string, string | number> = {}): Promise<void> {
  await httpJson(`${broker.url}/v1/topics`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: TOPIC, partitions, config }),
  });
}

function tributaryRunning(spec: SystemSpec & { system: "tributary" }, target: BrokerProcess, pids: number[], stop: () => Promise<void>, restart: () => Promise<RunningSystem>): RunningSystem {
  const acks: Record<string, string> = spec.peers === 3 ? { LOAD_ACKS: "all" } : {};
  return {
    spec,
    pids,
    stop,
    restart,
    produce: (p) =>
      measure(pids, () =>
        runLoadProcess(["bench/vs-grpc-load.ts", "stream", target.grpcAddress, TOPIC, String(p.recordBytes), String(p.batch), String(p.inflight), String(p.durationMs)], loadEnv(p, acks)),
      ),
    catchup: (count, deadlineMs) => measure(pids, () => runLoadProcess(["bench/vs-grpc-load.ts", "catchup", target.grpcAddress, TOPIC, String(count), String(deadlineMs)])),
  };
}

function tributaryArgs(spec: SystemSpec & { system: "tributary" }): string[] {
  return ["--flush-mode", spec.flush, "--grpc-stream-max-inflight", String(STREAM_INFLIGHT_MAX)];
}

async function startTributarySingle(spec: SystemSpec & { system: "tributary" }, dir: string, fresh: boolean): Promise<RunningSystem> {
  const broker = await startBrokerProcess({ runtime: spec.runtime, dataDir: dir, args: tributaryArgs(spec) });
  try {
    if (fresh) await createTopic(broker);
  } catch (e) {
    await broker.stop();
    throw e;
  }
  const stop = () => broker.stop();
  return tributaryRunning(spec, broker, [broker.pid], stop, async () => {
    await stop();
    return startTributarySingle(spec, dir, false);
  });
}

interface ClusterView {
  partitions: { topic: string; partition: number; leader: number }[];
}

async function startTributaryCluster(spec: SystemSpec & { system: "tributary" }, dir: string): Promise<RunningSystem> {
  const cluster = await startClusterProcess({ runtime: spec.runtime, dir, args: tributaryArgs(spec) });
  const stop = () => cluster.stop();
  try {
    const first = cluster.nodes[0]!;
    await waitFor("the controller to take the topic", async () => {
      try {
        await createTopic(first);
        return true;
      } catch (e) {
        return String(e).includes("ALREADY_EXISTS") || String(e).includes("409") ? true : undefined;
      }
    }, 60_000);
    const leader = await waitFor("partition 0 to have a leader", async () => {
      const view = (await httpJson(`${first.url}/v1/cluster`).catch(() => null)) as ClusterView | null;
      const p = view?.partitions.find((q) => q.topic === TOPIC && q.partition === 0);
      return p && p.leader > 0 ? p.leader : undefined;
    }, 60_000);
    const target = cluster.nodes[leader - 1]!;
    // One acknowledged record proves the leader's group takes writes before the clock starts.
    await waitFor("a first acks=all produce", () =>
      httpJson(`${target.url}/v1/topics/${TOPIC}/records?acks=all`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ records: [{ value: "probe" }] }) }).then(() => true, () => undefined),
    60_000);
    return tributaryRunning(spec, target, cluster.nodes.map((n) => n.pid), stop, () => Promise.reject(new Error("no restart for a cluster")));
  } catch (e) {
    await stop();
    throw e;
  }
}

async function startJetStreamSystem(spec: SystemSpec & { system: "jetstream" }, dir: string): Promise<RunningSystem> {
  const servers = await startJetStream({ dir, sync: spec.sync, size: spec.replicas });
  let url: string;
  try {
    url = await servers.createStream({ name: STREAM, subject: TOPIC, replicas: spec.replicas });
  } catch (e) {
    await servers.stop();
    throw e;
  }
  const pids = servers.pids;
  return {
    spec,
    pids,
    stop: () => servers.stop(),
    async restart() {
      await servers.stop();
      return startJetStreamSystem(spec, dir);
    },
    produce: (p) =>
      measure(pids, () => runLoadProcess(["bench/nats-load.ts", "publish", url, STREAM, TOPIC, String(p.recordBytes), String(p.inflight), String(p.durationMs)], loadEnv(p))),
    catchup: (count, deadlineMs) => measure(pids, () => runLoadProcess(["bench/nats-load.ts", "catchup", url, STREAM, TOPIC, String(count), String(deadlineMs)])),
  };
}

export interface FloorServer {
  /** host:port of its gRPC listener. */
  grpcAddress: string;
  pid: number;
  stop(): Promise<void>;
}

/** bench/floor-server.ts in its own Bun process; with `file`, one write + fdatasync to it per message. */
export async function startFloorServer(server: "grpc-js" | "h2", file?: string): Promise<FloorServer> {
  const child = spawn(npmBin("bun"), ["bench/floor-server.ts", server, ...(file ? [file] : [])], { cwd: REPO, stdio: ["ignore", "pipe", "inherit"] });
  const exited = once(child, "exit");
  const stop = async () => {
    child.kill("SIGTERM");
    await exited;
  };
  const [line] = (await Promise.race([once(createInterface({ input: child.stdout! }), "line"), exited.then(() => [null])])) as [string | null];
  if (line === null) throw new Error(`bench/floor-server.ts ${server} exited before listening`);
  return { grpcAddress: `127.0.0.1:${(JSON.parse(line) as { port: number }).port}`, pid: child.pid!, stop };
}

/** A floor server driven by the same gRPC load generator as Tributary. */
async function startFloor(spec: SystemSpec & { system: "floor" }, dir: string): Promise<RunningSystem> {
  const floor = await startFloorServer(spec.server, spec.fsync ? join(dir, "floor.log") : undefined);
  const { grpcAddress: address, stop } = floor;
  const pids = [floor.pid];
  return {
    spec,
    pids,
    stop,
    restart: () => Promise.reject(new Error("a floor server has no data to restart on")),
    produce: (p) =>
      measure(pids, () => runLoadProcess(["bench/vs-grpc-load.ts", "stream", address, TOPIC, String(p.recordBytes), String(p.batch), String(p.inflight), String(p.durationMs)], loadEnv({ ...p, e2e: false }))),
    catchup: () => Promise.reject(new Error("a floor server keeps nothing to read")),
  };
}

export function startSystem(spec: SystemSpec, dir: string): Promise<RunningSystem> {
  if (spec.system === "floor") return startFloor(spec, dir);
  if (spec.system === "jetstream") return startJetStreamSystem(spec, dir);
  return spec.peers === 3 ? startTributaryCluster(spec, dir) : startTributarySingle(spec, dir, true);
}
