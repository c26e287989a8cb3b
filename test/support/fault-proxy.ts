/**
 * A TCP fault proxy for tests: it listens on loopback, and every connection a client (side "a")
 * opens to it gets its own connection to the target (side "b"). Bytes are piped both ways, and
 * the test turns faults on and off while connections live: cut, stall (both ways or one way),
 * one-way blackhole, throttle, delay, reset. `heal()` turns every fault off.
 *
 * A one-way stall is the one-way partition a TCP connection can have: what is sent is held (the
 * sender's TCP would retransmit it) and arrives, in order, after the heal, unless the connection
 * is closed first. A blackhole drops bytes from the middle of a stream, which no TCP link does: a
 * protocol on top that counts on every byte (HTTP/2 framing, acknowledged frames) may be left
 * wedged after the heal, so model a partition with a stall and keep the blackhole for what it is.
 *
 * How it works: each direction of each connection is a `Pipe` (fault-pipe.ts), a FIFO of chunks from
 * its source socket. `pump()` moves chunks to the destination socket as far as the faults allow
 * (stalled: none; blackholed: dropped and counted; delayed: once `delayMs` after arrival;
 * throttled: as the token bucket of that direction grants). Memory is bounded: a pipe holding
 * `maxQueuedBytes` pauses its source socket, so the sender's own writes back up through TCP; it
 * stops writing while the destination's buffer is full ('drain'); and at most `maxConnections`
 * connections are open (more are accepted and reset at once).
 *
 * A FIN is forwarded after the bytes before it (half-close is kept: both sockets allow half
 * open), and held like bytes while the direction is stalled or blackholed. An error on either
 * side (a reset, a refused connection to the target) resets the other side too. Resets are real
 * TCP RSTs (`socket.resetAndDestroy()`), so peers see ECONNRESET, not an orderly close.
 *
 * The throttle is one token bucket per direction shared by all connections: it models a slow
 * link, not a per-connection quota. Its burst is `THROTTLE_BURST_MS` (fault-pipe.ts) of the rate.
 *
 * @example
 *   const proxy = await startFaultProxy({ target: `127.0.0.1:${peerPort}` });
 *   connect(proxy.port);                // instead of peerPort
 *   proxy.blackhole("a->b");            // the target stops hearing the client; replies still flow
 *   proxy.heal();
 *   await proxy.close();
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { once } from "node:events";
import { noFaults, nowMs, Pipe, TokenBucket, type Direction, type Faults, type PipeSink } from "./fault-pipe.ts";

export type { Direction } from "./fault-pipe.ts";

export interface FaultProxyOptions {
  /** host:port the proxy forwards to. */
  target: string;
  /** Default 127.0.0.1. */
  listenHost?: string;
  /** Default 0: a free port, read it from `proxy.port`. */
  listenPort?: number;
  /** Open connections at most; more are accepted and reset at once. Default 64. */
  maxConnections?: number;
  /** Bytes one direction of one connection holds before it pauses its source. Default 256 KiB. */
  maxQueuedBytes?: number;
}

export interface FaultProxyStats {
  /** Connections accepted and piped to the target, since start. */
  connections: number;
  /** Connections open now. */
  open: number;
  /** Bytes delivered to the target, and to clients. */
  bytesAtoB: number;
  bytesBtoA: number;
  /** Bytes received and never delivered: blackholed, or held when a connection was cut or reset. */
  dropped: number;
  /** Connections reset at accept: while cut, or past `maxConnections`. */
  refused: number;
  /** Bytes held in the proxy now, all connections and directions. */
  queuedBytes: number;
  /** The most one direction of one connection ever held (the memory bound, seen from outside). */
  queuedBytesPeak: number;
}

export interface FaultProxy {
  readonly port: number;
  /** host:port to connect to instead of the target. */
  readonly address: string;
  /** Reset every open connection now, and reset new ones at accept until `heal()`. */
  cut(): void;
  /** Stop forwarding bytes on every connection, both ways or in `direction` only (held up to the bound, then backpressure). */
  stall(direction?: Direction): void;
  /** Drop bytes of one direction silently (counted in `dropped`); the other direction flows. */
  blackhole(direction: Direction): void;
  /** Limit each direction to `bytesPerSec` (shared by all connections); 0 or Infinity removes it. */
  throttle(bytesPerSec: number): void;
  /** Deliver each chunk `ms` after it arrived, in order; 0 removes it. */
  delay(ms: number): void;
  /** Reset every open connection now, and keep accepting. */
  reset(): void;
  /** Every fault off: a plain pipe for new connections and for those still open. */
  heal(): void;
  stats(): FaultProxyStats;
  /** Stop listening and reset every open connection. */
  close(): Promise<void>;
}

/** The faults of a proxy, without where it listens: also what a group of proxies offers. */
export type FaultControls = Omit<FaultProxy, "port" | "address" | "close">;

const MAX_CONNECTIONS_DEFAULT = 64;
const MAX_QUEUED_BYTES_DEFAULT = 256 * 1024;
/** A TCP RST where the socket has a handle to reset; a plain destroy otherwise. */
function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** One client connection and its connection to the target. */
class Connection {
  readonly pipes: readonly [Pipe, Pipe];
  private closedSides = 0;

  constructor(
    private readonly a: Socket,
    private readonly b: Socket,
    faults: () => Faults,
    sink: PipeSink,
    maxQueuedBytes: number,
    private readonly onClosed: (c: Connection) => void,
  ) {
    const ab = new Pipe("a->b", a, b, faults, sink, maxQueuedBytes);
    const ba = new Pipe("b->a", b, a, faults, sink, maxQueuedBytes);
    this.pipes = [ab, ba];
    this.wire(a, ab);
    this.wire(b, ba);
  }

  private wire(socket: Socket, out: Pipe): void {
    socket.setNoDelay(true); // the proxy adds no latency of its own (Nagle) to small writes
    socket.on("data", (bytes: Buffer) => out.push(bytes));
    socket.on("end", () => out.pushEnd());
    // Any error (a peer's RST, the target refusing) resets the other side too, as a dead link would.
    socket.on("error", () => this.reset());
    socket.on("close", () => {
      if (++this.closedSides === 2) {
        for (const p of this.pipes) p.close();
        this.onClosed(this);
      }
    });
  }

  reset(): void {
    for (const p of this.pipes) p.close();
    resetSocket(this.a);
    resetSocket(this.b);
  }

  kick(): void {
    for (const p of this.pipes) p.kick();
  }

  queuedBytes(): number {
    return this.pipes[0].queuedBytes + this.pipes[1].queuedBytes;
  }
}

function parseTarget(target: string): { host: string; port: number } {
  const colon = target.lastIndexOf(":");
  const host = target.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  const port = Number(target.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`fault proxy: target must be host:port, got ${target}`);
  return { host, port };
}

function checkNonNegative(name: string, value: number): void {
  if (!(value >= 0)) throw new Error(`fault proxy: ${name} must be >= 0, got ${value}`);
}

class FaultProxyServer implements FaultProxy {
  private faults = noFaults();
  private readonly connections = new Set<Connection>();
  private readonly counts = { connections: 0, bytesAtoB: 0, bytesBtoA: 0, dropped: 0, refused: 0, queuedBytesPeak: 0 };
  private readonly sink: PipeSink = {
    delivered: (direction, bytes) => {
      if (direction === "a->b") this.counts.bytesAtoB += bytes;
      else this.counts.bytesBtoA += bytes;
    },
    dropped: (bytes) => (this.counts.dropped += bytes),
    queued: (bytes) => (this.counts.queuedBytesPeak = Math.max(this.counts.queuedBytesPeak, bytes)),
  };
  port = 0;
  private readonly server: Server;
  private readonly target: { host: string; port: number };
  private readonly maxConnections: number;
  private readonly maxQueuedBytes: number;

  constructor(private readonly options: FaultProxyOptions) {
    this.target = parseTarget(options.target);
    this.maxConnections = options.maxConnections ?? MAX_CONNECTIONS_DEFAULT;
    this.maxQueuedBytes = options.maxQueuedBytes ?? MAX_QUEUED_BYTES_DEFAULT;
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  get address(): string {
    return `${this.options.listenHost ?? "127.0.0.1"}:${this.port}`;
  }

  async listen(): Promise<void> {
    this.server.listen(this.options.listenPort ?? 0, this.options.listenHost ?? "127.0.0.1");
    await once(this.server, "listening");
    const addr = this.server.address();
    this.port = typeof addr === "object" && addr ? addr.port : 0;
  }

  private accept(a: Socket): void {
    if (this.faults.cut || this.connections.size >= this.maxConnections) {
      this.counts.refused++;
      a.on("error", () => {});
      resetSocket(a);
      return;
    }
    this.counts.connections++;
    const b = connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    const conn = new Connection(a, b, () => this.faults, this.sink, this.maxQueuedBytes, (c) => this.connections.delete(c));
    this.connections.add(conn);
  }

  cut(): void {
    this.faults.cut = true;
    this.reset();
  }

  stall(direction?: Direction): void {
    for (const d of direction ? [direction] : (["a->b", "b->a"] as const)) this.faults.stalled.add(d);
  }

  blackhole(direction: Direction): void {
    this.faults.blackholed.add(direction);
    this.kickAll();
  }

  throttle(bytesPerSec: number): void {
    checkNonNegative("bytesPerSec", bytesPerSec);
    const now = nowMs();
    const on = bytesPerSec > 0 && Number.isFinite(bytesPerSec);
    this.faults.buckets = { "a->b": on ? new TokenBucket(bytesPerSec, now) : null, "b->a": on ? new TokenBucket(bytesPerSec, now) : null };
    this.kickAll();
  }

  delay(ms: number): void {
    checkNonNegative("delay ms", ms);
    if (!Number.isFinite(ms)) throw new Error(`fault proxy: delay must be finite, got ${ms}`);
    this.faults.delayMs = ms;
    this.kickAll();
  }

  reset(): void {
    for (const c of this.connections) c.reset();
  }

  heal(): void {
    this.faults = noFaults();
    this.kickAll();
  }

  stats(): FaultProxyStats {
    let queuedBytes = 0;
    for (const c of this.connections) queuedBytes += c.queuedBytes();
    return { ...this.counts, open: this.connections.size, queuedBytes };
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.reset();
    await closed;
  }

  private kickAll(): void {
    for (const c of this.connections) c.kick();
  }
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const proxy = new FaultProxyServer(options);
  await proxy.listen();
  return proxy;
}

/**
 * Several proxies driven as one (every link into one peer, say): each call goes to all of them;
 * stats are summed, `queuedBytesPeak` is the largest.
 */
export function faultGroup(proxies: readonly FaultProxy[]): FaultControls {
  const each = (f: (p: FaultProxy) => void) => proxies.forEach(f);
  return {
    cut: () => each((p) => p.cut()),
    stall: (direction) => each((p) => p.stall(direction)),
    blackhole: (direction) => each((p) => p.blackhole(direction)),
    throttle: (bytesPerSec) => each((p) => p.throttle(bytesPerSec)),
    delay: (ms) => each((p) => p.delay(ms)),
    reset: () => each((p) => p.reset()),
    heal: () => each((p) => p.heal()),
    stats: () => {
      const total: FaultProxyStats = { connections: 0, open: 0, bytesAtoB: 0, bytesBtoA: 0, dropped: 0, refused: 0, queuedBytes: 0, queuedBytesPeak: 0 };
      for (const p of proxies) {
        const s = p.stats();
        for (const k of Object.keys(total) as (keyof FaultProxyStats)[]) total[k] = k === "queuedBytesPeak" ? Math.max(total[k], s[k]) : total[k] + s[k];
      }
      return total;
    },
  };
}
