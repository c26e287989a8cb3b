/**
 * Mirroring with real broker processes, for the process-level mirror tests and bench/mirror.ts:
 * a central (`--mirror-central true`) and an edge whose one link (`to-dc`) dials the central's
 * gRPC listener through a fault proxy (fault-proxy.ts), so a test cuts, stalls, resets or slows
 * the uplink and reads the bytes that crossed it (`proxy.stats().bytesAtoB`: edge to central).
 *
 * The edge is one broker (`startMirrorPair`) or a 3-peer cluster (`startEdgeCluster`, every
 * peer with the same links file: the link runs on the leader of `__mirror_checkpoints`). The
 * central keeps its HTTP and gRPC ports across restarts, so the proxy's target stays valid.
 * Everything is read back through the public HTTP API: records (`readRecords`, key, value and
 * headers as text) and `GET /v1/mirror` (`mirrorStatus`).
 *
 * @example
 *   const pair = await startMirrorPair({ link: { uplink: { bytesPerSecond: 1e6 } } });
 *   await createTopic(pair.edge.url, "telemetry", 3);
 *   await produce(pair.edge.url, "telemetry", [{ key: "d1", value: "v", headers: { h: "x" } }]);
 *   pair.proxy.cut();
 *   await pair.stop();
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MirrorStatus } from "../../src/mirror/edge.ts";
import { startBrokerProcess, type BrokerProcess, type Runtime } from "./broker-process.ts";
import { startClusterProcess, type ClusterProcess } from "./cluster-process.ts";
import { startFaultProxy, type FaultProxy } from "./fault-proxy.ts";
import { waitFor } from "./wait.ts";

export const CLUSTER_ID = "site7";
const JSON_HEADERS = { "content-type": "application/json" };

export interface MirrorPairOptions {
  runtime?: Runtime;
  /** Fields of the link (uplink, topics, stallAfterMs, ...) over the defaults. */
  link?: Record<string, unknown>;
  edgeArgs?: string[];
  centralArgs?: string[];
  /** The link dials the central itself, not the proxy (a benchmark: no proxy in the data path). */
  direct?: boolean;
}

export interface MirrorPair {
  central: BrokerProcess;
  edge: BrokerProcess;
  proxy: FaultProxy;
  readonly dir: string;
  /** Kill the edge with `signal` (it is not stopped gracefully) and start it again on its data dir. */
  restartEdge(signal: NodeJS.Signals): Promise<BrokerProcess>;
  /** Kill the central with `signal` and start it again on its data dir and ports. */
  restartCentral(signal: NodeJS.Signals): Promise<BrokerProcess>;
  stop(): Promise<void>;
}

export interface EdgeRecord {
  offset: number;
  key: string | null;
  value: string | null;
  headers: Record<string, string | null>;
}

/** The links file of the edge: one link to the proxy's address. */
export function linksFile(address: string, link: Record<string, unknown> = {}): string {
  return JSON.stringify({
    links: [{ name: "to-dc", central: { address }, topics: { include: ["*"] }, uplink: { bytesPerSecond: 50_000_000 }, ...link }],
  });
}

const EDGE_ARGS = ["--mirror-cluster-id", CLUSTER_ID, "--mirror-checkpoint-interval-ms", "100"];

async function startCentral(runtime: Runtime, dataDir: string, ports: { http: number; grpc: number } | null, args: string[]): Promise<BrokerProcess> {
  const fixed = ports ? ["--http-port", String(ports.http), "--grpc-port", String(ports.grpc)] : [];
  return startBrokerProcess({ runtime, dataDir, args: ["--mirror-central", "true", ...fixed, ...args] });
}

export async function startMirrorPair(options: MirrorPairOptions = {}): Promise<MirrorPair> {
  const runtime = options.runtime ?? "bun";
  const dir = await mkdtemp(join(tmpdir(), "tributary-mirror-process-"));
  const centralDir = join(dir, "central");
  const edgeDir = join(dir, "edge");
  const configPath = join(dir, "mirror.json");
  let central = await startCentral(runtime, centralDir, null, options.centralArgs ?? []);
  const proxy = await startFaultProxy({ target: central.grpcAddress });
  await writeFile(configPath, linksFile(options.direct ? central.grpcAddress : proxy.address, options.link));
  const edgeArgs = [...EDGE_ARGS, "--mirror-config", configPath, ...(options.edgeArgs ?? [])];
  let edge = await startBrokerProcess({ runtime, dataDir: edgeDir, args: edgeArgs });
  const pair: MirrorPair = {
    central,
    edge,
    proxy,
    dir,
    async restartEdge(signal) {
      await pair.edge.kill(signal);
      edge = await startBrokerProcess({ runtime, dataDir: edgeDir, args: edgeArgs });
      pair.edge = edge;
      return edge;
    },
    async restartCentral(signal) {
      const ports = { http: central.port, grpc: central.grpcPort };
      await pair.central.kill(signal);
      central = await startCentral(runtime, centralDir, ports, options.centralArgs ?? []);
      pair.central = central;
      return central;
    },
    async stop() {
      await Promise.all([pair.edge.stop(), pair.central.stop()]);
      await proxy.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return pair;
}

export interface EdgeCluster {
  central: BrokerProcess;
  cluster: ClusterProcess;
  proxy: FaultProxy;
  stop(): Promise<void>;
}

/** A 3-peer edge cluster, every peer with the same link to the central through one proxy. */
export async function startEdgeCluster(options: MirrorPairOptions & { tickMs?: number } = {}): Promise<EdgeCluster> {
  const runtime = options.runtime ?? "bun";
  const dir = await mkdtemp(join(tmpdir(), "tributary-mirror-cluster-"));
  const central = await startCentral(runtime, join(dir, "central"), null, options.centralArgs ?? []);
  const proxy = await startFaultProxy({ target: central.grpcAddress });
  const configPath = join(dir, "mirror.json");
  await writeFile(configPath, linksFile(proxy.address, options.link));
  const cluster = await startClusterProcess({
    runtime,
    dir: join(dir, "edge"),
    ...(options.tickMs !== undefined ? { tickMs: options.tickMs } : {}),
    args: [...EDGE_ARGS, "--mirror-config", configPath, ...(options.edgeArgs ?? [])],
  });
  return {
    central,
    cluster,
    proxy,
    async stop() {
      await Promise.all([cluster.stop(), central.stop()]);
      await proxy.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Create a topic; a 503 (a cluster still electing) is retried, TOPIC_EXISTS after a retry is success. */
export async function createTopic(url: string, name: string, partitions: number): Promise<void> {
  let tries = 0;
  await waitFor(`topic ${name} created`, async () => {
    const r = await fetch(`${url}/v1/topics`, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ name, partitions }) });
    const text = await r.text();
    tries++;
    if (r.status === 201 || (r.status === 409 && tries > 1)) return true;
    if (r.status !== 503) throw new Error(`creating ${name}: ${r.status} ${text}`);
    return false;
  });
}

export interface ProduceRecord {
  key: string;
  value: string;
  headers?: Record<string, string>;
}

/** One produce request; true once acknowledged, false on any refusal or broken connection. */
export async function produce(url: string, topic: string, records: readonly ProduceRecord[], acks: "1" | "all" = "1"): Promise<boolean> {
  try {
    const r = await fetch(`${url}/v1/topics/${topic}/records?acks=${acks}`, {
      method: "POST",
      headers: JSON_HEADERS,
      body: JSON.stringify({ records }),
      signal: AbortSignal.timeout(15_000),
    });
    await r.text();
    return r.status === 200;
  } catch {
    return false;
  }
}

/** Every record of a partition below the high watermark, through `GET .../records`. */
export async function readRecords(url: string, topic: string, partition: number, from = 0): Promise<EdgeRecord[]> {
  const out: EdgeRecord[] = [];
  let offset = from;
  for (;;) {
    const r = await fetch(`${url}/v1/topics/${topic}/partitions/${partition}/records?offset=${offset}&maxRecords=5000&maxBytes=8388608`, { signal: AbortSignal.timeout(15_000) });
    if (r.status !== 200) throw new Error(`reading ${topic}/${partition} at ${offset} from ${url}: ${r.status} ${await r.text()}`);
    const page = (await r.json()) as { records: EdgeRecord[]; nextOffset: number; highWatermark: number };
    for (const rec of page.records) out.push({ offset: rec.offset, key: rec.key, value: rec.value, headers: rec.headers ?? {} });
    if (page.nextOffset >= page.highWatermark || page.nextOffset === offset) return out;
    offset = page.nextOffset;
  }
}

/** A partition's high watermark, or null while the topic does not exist there. */
export async function highWatermark(url: string, topic: string, partition: number): Promise<number | null> {
  const r = await fetch(`${url}/v1/topics/${topic}/partitions/${partition}/records?offset=0&maxRecords=1&maxBytes=1`, { signal: AbortSignal.timeout(15_000) });
  const text = await r.text();
  if (r.status === 404) return null;
  if (r.status !== 200) throw new Error(`reading ${topic}/${partition} from ${url}: ${r.status} ${text}`);
  return (JSON.parse(text) as { highWatermark: number }).highWatermark;
}

export async function mirrorStatus(url: string): Promise<MirrorStatus> {
  const r = await fetch(`${url}/v1/mirror`, { signal: AbortSignal.timeout(15_000) });
  if (r.status !== 200) throw new Error(`GET /v1/mirror: ${r.status} ${await r.text()}`);
  return (await r.json()) as MirrorStatus;
}

/** The records as the central keeps them and as the edge logged them, without offsets (the central's differ). */
export const content = (rs: readonly EdgeRecord[]) => rs.map((r) => ({ key: r.key, value: r.value, headers: r.headers }));

/** True once every partition of the link shows no lag and the link is connected. */
export function caughtUp(s: MirrorStatus, topics: readonly string[]): boolean {
  const link = s.links[0];
  if (!link || link.state !== "connected") return false;
  const parts = link.partitions.filter((p) => topics.includes(p.topic));
  return parts.length > 0 && parts.every((p) => p.state === "sending" && p.lag !== null && p.lag.lagRecords === 0);
}
