/**
 * A cluster of real broker processes for process-level tests: `size` peers (ids 1..size) started
 * with `startBrokerProcess`, each with its own data dir (`<dir>/node-<id>`) and its settings
 * `cluster.node.id`, `cluster.peers` and, when given, `cluster.tick.ms`. Indexes are 0-based:
 * `nodes[i]` is the peer with id i + 1.
 *
 * Ports: every peer's peer listener gets a fixed free port (the others must know it). The HTTP
 * and gRPC ports are picked by the broker at first start (0) and kept for restarts, so a test's
 * clients can reconnect to a restarted peer at the same address.
 *
 * With `viaProxy`, every directed link goes through its own fault proxy: `link(i, j)` carries
 * the connections peer i opens to peer j. A peer listens on the port of its own entry in
 * `cluster.peers`, so each peer gets its own peers string: its own entry names its real peer
 * port, the entry of each other peer j names the port of `link(i, j)`. The proxies outlive
 * restarts (a link to a peer that is down resets its connections, as a dead host would).
 *
 * One proxy per directed link rather than one per target peer: it costs n(n-1) proxies (6 for 3
 * peers) and lets a test cut one link, or isolate one peer, without touching the others.
 *
 * @example
 *   const cluster = await startClusterProcess({ runtime: "bun", viaProxy: true, tickMs: 50 });
 *   cluster.isolate(0);                       // peer 1 is cut off from peers 2 and 3
 *   cluster.healAll();
 *   await cluster.restart(1, "SIGKILL");      // peer 2 crashes and comes back on the same ports
 *   await cluster.stop();
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBrokerProcess, type BrokerProcess, type Runtime } from "./broker-process.ts";
import { faultGroup, startFaultProxy, type FaultControls, type FaultProxy } from "./fault-proxy.ts";
import { freePorts } from "./ports.ts";

export interface ClusterProcessOptions {
  runtime: Runtime;
  /** Number of peers; default 3. */
  size?: number;
  /** Put a fault proxy on every directed link between peers. */
  viaProxy?: boolean;
  /** `cluster.tick.ms` of every peer; unset: the broker's default. */
  tickMs?: number;
  /** Parent of the peers' data dirs; default a new temp dir, which `stop()` removes. */
  dir?: string;
  /** Extra `serve` flags for every peer (after the cluster flags, so they win). */
  args?: string[];
  env?: Record<string, string>;
  startTimeoutMs?: number;
}

export interface ClusterProcess {
  /** `nodes[i]` is the peer with id i + 1; `start` and `restart` replace the entry. */
  readonly nodes: BrokerProcess[];
  readonly dir: string;
  readonly dataDirs: readonly string[];
  /** The port each peer's peer listener binds. */
  readonly peerPorts: readonly number[];
  /** The `cluster.peers` value peer i is started with. */
  peersSetting(i: number): string;
  /** Signal peer i (default SIGKILL) and wait for its exit; `start(i)` brings it back. */
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Start peer i again: same data dir, same HTTP, gRPC and peer ports. */
  start(i: number): Promise<BrokerProcess>;
  /** Stop peer i (SIGTERM, the graceful stop; or kill with `signal`) and start it again. */
  restart(i: number, signal?: NodeJS.Signals): Promise<BrokerProcess>;
  /** viaProxy only: the proxy carrying the connections peer i opens to peer j. */
  link(i: number, j: number): FaultProxy;
  /** viaProxy only: the faults of every link into peer j (the connections the others open to it). */
  proxyTo(j: number): FaultControls;
  /** viaProxy only: cut every link into and out of peer j. */
  isolate(j: number): void;
  /**
   * viaProxy only: peer `to` stops hearing from peer `from`, on both kinds of connection: what
   * `from` sends on the connections it opens to `to`, and its replies on those `to` opens to it.
   */
  oneWay(from: number, to: number): void;
  /** viaProxy only: every link back to a plain pipe. */
  healAll(): void;
  /** Stop every peer and proxy; remove the data dirs if the launcher made them. */
  stop(): Promise<void>;
}

const SIZE_DEFAULT = 3;

interface PeerPorts {
  peer: number;
  /** Learnt at first start; null until then (the broker picks them). */
  http: number | null;
  grpc: number | null;
}

class ClusterOfProcesses implements ClusterProcess {
  readonly nodes: BrokerProcess[] = [];
  readonly dataDirs: readonly string[];
  readonly peerPorts: readonly number[];
  private readonly ports: PeerPorts[];
  /** links[i][j]: peer i to peer j; null on the diagonal and without viaProxy. */
  private readonly links: (FaultProxy | null)[][];

  constructor(
    private readonly options: ClusterProcessOptions,
    readonly dir: string,
    private readonly ownsDir: boolean,
    peerPorts: number[],
    links: (FaultProxy | null)[][],
  ) {
    this.peerPorts = peerPorts;
    this.ports = peerPorts.map((peer) => ({ peer, http: null, grpc: null }));
    this.dataDirs = peerPorts.map((_, i) => join(dir, `node-${i + 1}`));
    this.links = links;
  }

  get size(): number {
    return this.peerPorts.length;
  }

  peersSetting(i: number): string {
    this.checkIndex(i);
    return this.peerPorts.map((port, j) => `${j + 1}@127.0.0.1:${j === i ? port : (this.links[i]![j]?.port ?? port)}`).join(",");
  }

  async start(i: number): Promise<BrokerProcess> {
    this.checkIndex(i);
    const ports = this.ports[i]!;
    const node = await startBrokerProcess({
      runtime: this.options.runtime,
      dataDir: this.dataDirs[i]!,
      env: this.options.env,
      startTimeoutMs: this.options.startTimeoutMs,
      args: [
        "--cluster-node-id",
        String(i + 1),
        "--cluster-peers",
        this.peersSetting(i),
        ...(this.options.tickMs === undefined ? [] : ["--cluster-tick-ms", String(this.options.tickMs)]),
        // After startBrokerProcess's own "--http-port 0 --grpc-port 0": the last flag wins.
        ...(ports.http === null ? [] : ["--http-port", String(ports.http)]),
        ...(ports.grpc === null ? [] : ["--grpc-port", String(ports.grpc)]),
        ...(this.options.args ?? []),
      ],
    });
    ports.http = node.port;
    ports.grpc = node.grpcPort;
    this.nodes[i] = node;
    return node;
  }

  async kill(i: number, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    this.checkIndex(i);
    await this.nodes[i]?.kill(signal);
  }

  async restart(i: number, signal: NodeJS.Signals = "SIGTERM"): Promise<BrokerProcess> {
    this.checkIndex(i);
    if (signal === "SIGTERM") await this.nodes[i]?.stop();
    else await this.kill(i, signal);
    return this.start(i);
  }

  link(i: number, j: number): FaultProxy {
    this.checkIndex(i);
    this.checkIndex(j);
    const proxy = this.links[i]![j];
    if (!proxy) throw new Error(i === j ? `no link from peer ${i + 1} to itself` : "the cluster was started without viaProxy");
    return proxy;
  }

  proxyTo(j: number): FaultControls {
    return faultGroup(this.others(j).map((i) => this.link(i, j)));
  }

  isolate(j: number): void {
    for (const i of this.others(j)) {
      this.link(i, j).cut();
      this.link(j, i).cut();
    }
  }

  oneWay(from: number, to: number): void {
    this.link(from, to).blackhole("a->b");
    this.link(to, from).blackhole("b->a");
  }

  healAll(): void {
    for (const p of this.allLinks()) p.heal();
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    await Promise.all(this.allLinks().map((p) => p.close()));
    if (this.ownsDir) await rm(this.dir, { recursive: true, force: true });
  }

  private others(j: number): number[] {
    this.checkIndex(j);
    return this.peerPorts.map((_, i) => i).filter((i) => i !== j);
  }

  private allLinks(): FaultProxy[] {
    return this.links.flat().filter((p): p is FaultProxy => p !== null);
  }

  private checkIndex(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.size) throw new Error(`peer index ${i} out of 0..${this.size - 1} (nodes[i] is peer id i + 1)`);
  }
}

/** A proxy per directed link i -> j (i != j), in front of peer j's peer listener. */
async function startLinks(peerPorts: number[], viaProxy: boolean): Promise<(FaultProxy | null)[][]> {
  const links: (FaultProxy | null)[][] = [];
  try {
    for (let i = 0; i < peerPorts.length; i++) {
      links.push([]);
      for (let j = 0; j < peerPorts.length; j++) {
        links[i]!.push(viaProxy && i !== j ? await startFaultProxy({ target: `127.0.0.1:${peerPorts[j]}` }) : null);
      }
    }
    return links;
  } catch (e) {
    await Promise.all(links.flat().map((p) => p?.close()));
    throw e;
  }
}

export async function startClusterProcess(options: ClusterProcessOptions): Promise<ClusterProcess> {
  const size = options.size ?? SIZE_DEFAULT;
  if (!Number.isInteger(size) || size < 1) throw new Error(`cluster size must be a positive integer, got ${size}`);
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "tributary-cluster-")));
  const peerPorts = await freePorts(size);
  for (let i = 0; i < size; i++) await mkdir(join(dir, `node-${i + 1}`), { recursive: true });
  const cluster = new ClusterOfProcesses(options, dir, options.dir === undefined, peerPorts, await startLinks(peerPorts, options.viaProxy ?? false));
  const started = await Promise.allSettled(peerPorts.map((_, i) => cluster.start(i)));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await cluster.stop();
    throw failed.reason;
  }
  return cluster;
}
