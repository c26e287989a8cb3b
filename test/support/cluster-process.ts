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
 * Every peer gets the same `cluster.peers`, naming each peer's real peer port, as the README asks
 * of a deployment: the cluster metadata records those addresses and every peer's transport
 * follows the metadata, so an address that differs per peer would not stay in use.
 *
 * With `viaProxy`, every directed link goes through its own fault proxy all the same: `link(i,
 * j)` carries the connections peer i opens to peer j. Peer i runs with `grpc_proxy` naming its
 * own HTTP CONNECT proxy (connect-proxy.ts), its egress: grpc-js tunnels each peer channel
 * through it, and it sends a tunnel to peer j's port on through `link(i, j)`. The proxies
 * outlive restarts (a link to a peer that is down resets its connections, as a dead host would).
 *
 * One proxy per directed link rather than one per target peer: it costs n(n-1) proxies (6 for 3
 * peers) and lets a test cut one link, or isolate one peer, without touching the others.
 *
 * @example
 *   const cluster = await startClusterProcess({ runtime: "bun", viaProxy: true, tickMs: 50 });
 *   cluster.isolate(0);                       // peer 1 is cut off from peers 2 and 3
 *   cluster.oneWay(1, 0);                     // peer 1 stops hearing peer 2 (peer 2 still hears peer 1)
 *   cluster.healAll();
 *   await cluster.restart(1, "SIGKILL");      // peer 2 crashes and comes back on the same ports
 *   await cluster.stop();
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBrokerProcess, type BrokerProcess, type Runtime } from "./broker-process.ts";
import { startConnectProxy, type ConnectProxy } from "./connect-proxy.ts";
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
  /** The `cluster.peers` value every peer is started with. */
  readonly peersSetting: string;
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
   * Held, not dropped (a one-way stall, see fault-proxy.ts): bytes lost from the middle of a TCP
   * stream would leave the peers' acknowledged frame streams wedged after the heal, a fault no
   * real network makes; a connection a peer closes meanwhile (keepalive) loses what it held.
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
  /** egress[i]: the CONNECT proxy peer i tunnels its peer channels through; empty without viaProxy. */
  private readonly egress: ConnectProxy[];

  constructor(
    private readonly options: ClusterProcessOptions,
    readonly dir: string,
    private readonly ownsDir: boolean,
    peerPorts: number[],
    proxies: Proxies,
  ) {
    this.peerPorts = peerPorts;
    this.ports = peerPorts.map((peer) => ({ peer, http: null, grpc: null }));
    this.dataDirs = peerPorts.map((_, i) => join(dir, `node-${i + 1}`));
    this.links = proxies.links;
    this.egress = proxies.egress;
  }

  get size(): number {
    return this.peerPorts.length;
  }

  get peersSetting(): string {
    return this.peerPorts.map((port, j) => `${j + 1}@127.0.0.1:${port}`).join(",");
  }

  /** Peer i's environment: with viaProxy, its egress proxy for grpc-js (and no exceptions to it). */
  private envOf(i: number): Record<string, string> | undefined {
    const egress = this.egress[i];
    if (!egress) return this.options.env;
    return { ...this.options.env, grpc_proxy: `http://127.0.0.1:${egress.port}`, no_grpc_proxy: "no-such-host.invalid" };
  }

  async start(i: number): Promise<BrokerProcess> {
    this.checkIndex(i);
    const ports = this.ports[i]!;
    const node = await startBrokerProcess({
      runtime: this.options.runtime,
      dataDir: this.dataDirs[i]!,
      env: this.envOf(i),
      startTimeoutMs: this.options.startTimeoutMs,
      args: [
        "--cluster-node-id",
        String(i + 1),
        "--cluster-peers",
        this.peersSetting,
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
    this.link(from, to).stall("a->b");
    this.link(to, from).stall("b->a");
  }

  healAll(): void {
    for (const p of this.allLinks()) p.heal();
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    await closeProxies({ links: this.links, egress: this.egress });
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

interface Proxies {
  links: (FaultProxy | null)[][];
  egress: ConnectProxy[];
}

async function closeProxies(p: Proxies): Promise<void> {
  await Promise.all([...p.links.flat().map((l) => l?.close()), ...p.egress.map((e) => e.close())]);
}

/**
 * A fault proxy per directed link i -> j (i != j), in front of peer j's peer listener, and per
 * peer i a CONNECT proxy that sends a tunnel to peer j's port through link(i, j).
 */
async function startProxies(peerPorts: number[], viaProxy: boolean): Promise<Proxies> {
  const proxies: Proxies = { links: [], egress: [] };
  if (!viaProxy) {
    proxies.links = peerPorts.map(() => peerPorts.map(() => null));
    return proxies;
  }
  try {
    for (let i = 0; i < peerPorts.length; i++) {
      const row: (FaultProxy | null)[] = [];
      proxies.links.push(row);
      for (let j = 0; j < peerPorts.length; j++) row.push(i !== j ? await startFaultProxy({ target: `127.0.0.1:${peerPorts[j]}` }) : null);
      const route = (_host: string, port: number) => {
        const link = row[peerPorts.indexOf(port)];
        return link ? link.address : null;
      };
      proxies.egress.push(await startConnectProxy({ route }));
    }
    return proxies;
  } catch (e) {
    await closeProxies(proxies);
    throw e;
  }
}

export async function startClusterProcess(options: ClusterProcessOptions): Promise<ClusterProcess> {
  const size = options.size ?? SIZE_DEFAULT;
  if (!Number.isInteger(size) || size < 1) throw new Error(`cluster size must be a positive integer, got ${size}`);
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "tributary-cluster-")));
  const peerPorts = await freePorts(size);
  for (let i = 0; i < size; i++) await mkdir(join(dir, `node-${i + 1}`), { recursive: true });
  const cluster = new ClusterOfProcesses(options, dir, options.dir === undefined, peerPorts, await startProxies(peerPorts, options.viaProxy ?? false));
  const started = await Promise.allSettled(peerPorts.map((_, i) => cluster.start(i)));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await cluster.stop();
    throw failed.reason;
  }
  return cluster;
}
