/**
 * Per-principal connection limits (`maxConnections` in a quota rule, quotas.ts).
 *
 * An HTTP or gRPC connection has no principal of its own: it is counted for the principal of the
 * first authenticated request on it (later requests on it, of any principal, pass). A connection
 * is named by its listener's local port and the client's address and port (`Connection`). A
 * request on a connection not counted yet, of a principal that already holds `maxConnections`,
 * is refused with OVERLOADED (naming the limit) and counted in
 * `tributary_quota_connection_refusals_total{listener}`.
 *
 * Knowing when a connection closes: neither Bun.serve, Deno.serve nor grpc-js tells a handler, so
 * the table is pruned lazily, and exactly, by asking the operating system which connections are
 * still open (`ConnectionProbe`, src/runtime/tcp-connections.ts: /proc/net/tcp on Linux), only
 * when a principal at its limit asks for one more. A connection counts until it has closed. Where
 * the probe cannot answer (not Linux), a connection counts until it has carried no request for
 * `idleMs` (an approximation, documented in the README).
 *
 * Memory is bounded: principals without a `maxConnections` are not tracked at all, and at most
 * `maxTracked` connections are (past that, after a prune, new connections of limited principals
 * are refused).
 *
 * Pure: time is the clock's, the operating system's view comes through the probe.
 */
import { TributaryError } from "../errors.ts";
import type { Counter, Metrics } from "../metrics.ts";
import type { Clock } from "../runtime/clock.ts";
import type { QuotaRule } from "./quotas.ts";
import { ruleFor } from "./quotas.ts";

export interface Connection {
  /** The listener's port on this host. */
  localPort: number;
  /** The client's address (IPv4 dotted, or IPv6) and port. */
  remoteAddress: string;
  remotePort: number;
}

/**
 * The connections open now on `localPort`, as connectionKey(...) strings; null when the
 * operating system cannot say (then idle time decides).
 */
export type ConnectionProbe = (localPort: number) => Promise<Set<string> | null>;

/** One spelling per address: IPv4-mapped IPv6 as IPv4, IPv6 in its RFC 5952 form. */
export function canonicalAddress(address: string): string {
  if (!address.includes(":")) return address;
  let host: string;
  try {
    host = new URL(`http://[${address.replace(/%.*$/, "")}]/`).hostname.slice(1, -1);
  } catch {
    return address.toLowerCase();
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (!mapped) return host;
  const [hi, lo] = [parseInt(mapped[1]!, 16), parseInt(mapped[2]!, 16)];
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

export function connectionKey(localPort: number, remoteAddress: string, remotePort: number): string {
  return `${localPort}|${canonicalAddress(remoteAddress)}|${remotePort}`;
}

/** A grpc-js peer string (`call.getPeer()`: "127.0.0.1:5000", "::1:5000") on `localPort`; null when unusable. */
export function connectionOfPeer(localPort: number, peer: string): Connection | null {
  const i = peer.lastIndexOf(":");
  const port = Number(peer.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0) return null;
  return { localPort, remoteAddress: peer.slice(0, i).replace(/^\[|\]$/g, ""), remotePort: port };
}

interface Entry {
  principal: string;
  localPort: number;
  lastSeenMs: number;
  /** Admission order: a probe prunes only what was admitted before it started. */
  seq: number;
}

interface Snapshot {
  before: number;
  open: Promise<Set<string> | null>;
}

export interface ConnectionLimitOptions {
  /** Where the probe cannot answer: a connection without a request for this long stops counting. */
  idleMs?: number;
  /** Connections tracked at most (over all principals). */
  maxTracked?: number;
}

export class ConnectionLimiter {
  private readonly entries = new Map<string, Entry>();
  private readonly counts = new Map<string, number>();
  private readonly reading = new Map<number, Snapshot>();
  private readonly refusals: Counter;
  private seq = 0;
  readonly idleMs: number;
  readonly maxTracked: number;

  constructor(
    private readonly rules: () => readonly QuotaRule[],
    metrics: Metrics,
    private readonly clock: Clock,
    private readonly probe: ConnectionProbe,
    options: ConnectionLimitOptions = {},
  ) {
    this.idleMs = options.idleMs ?? 300_000;
    this.maxTracked = options.maxTracked ?? 10_000;
    this.refusals = metrics.counter("tributary_quota_connection_refusals_total", "Requests on a new connection refused because the principal held maxConnections connections, by listener", ["listener"]);
  }

  /** Connections counted for `principal` now. */
  held(principal: string): number {
    return this.counts.get(principal) ?? 0;
  }

  /** Connections tracked now (bounded by maxTracked). */
  get size(): number {
    return this.entries.size;
  }

  /** Admit a request on `conn` for `principal`; OVERLOADED when it opens one connection too many. */
  async admit(listener: string, conn: Connection, principal: string): Promise<void> {
    const key = connectionKey(conn.localPort, conn.remoteAddress, conn.remotePort);
    if (this.touch(key)) return;
    const max = ruleFor(this.rules(), principal)?.maxConnections;
    if (max === undefined) return;
    if (this.held(principal) >= max || this.entries.size >= this.maxTracked) {
      await this.prune(this.entries.size >= this.maxTracked ? null : principal);
      if (this.touch(key)) return; // a concurrent request on the same connection got it counted
    }
    const held = this.held(principal);
    if (held >= max || this.entries.size >= this.maxTracked) {
      this.refusals.inc({ listener });
      const why = held >= max ? `holds ${held} connections, its quota (maxConnections ${max})` : `cannot be given a connection: ${this.maxTracked} connections are tracked`;
      throw new TributaryError("OVERLOADED", `principal ${principal} ${why}; close one or retry later`);
    }
    this.entries.set(key, { principal, localPort: conn.localPort, lastSeenMs: this.clock.now(), seq: this.seq++ });
    this.counts.set(principal, held + 1);
  }

  private touch(key: string): boolean {
    const e = this.entries.get(key);
    if (e) e.lastSeenMs = this.clock.now();
    return e !== undefined;
  }

  /**
   * The kernel's view of `port`, shared by concurrent prunes (a flood of refused connections costs
   * one read at a time); `before`: only entries admitted before the read started may be pruned by it.
   */
  private snapshot(port: number): Snapshot {
    let snap = this.reading.get(port);
    if (!snap) {
      const made: Snapshot = { before: this.seq, open: this.probe(port).catch(() => null) };
      void made.open.finally(() => this.reading.delete(port));
      this.reading.set(port, made);
      snap = made;
    }
    return snap;
  }

  /** Forget connections (of `principal`, or everyone's) that have closed: the probe's view, else idle time. */
  private async prune(principal: string | null): Promise<void> {
    const ports = new Set<number>();
    for (const e of this.entries.values()) if (principal === null || e.principal === principal) ports.add(e.localPort);
    const views = new Map<number, { before: number; open: Set<string> | null }>();
    await Promise.all([...ports].map(async (p) => {
      const snap = this.snapshot(p);
      views.set(p, { before: snap.before, open: await snap.open });
    }));
    const idleBefore = this.clock.now() - this.idleMs;
    for (const [key, e] of this.entries) {
      const view = views.get(e.localPort);
      if (!view || e.seq >= view.before || (principal !== null && e.principal !== principal)) continue;
      if (view.open === null ? e.lastSeenMs >= idleBefore : view.open.has(key)) continue;
      this.entries.delete(key);
      const n = (this.counts.get(e.principal) ?? 1) - 1;
      if (n <= 0) this.counts.delete(e.principal);
      else this.counts.set(e.principal, n);
    }
  }
}
