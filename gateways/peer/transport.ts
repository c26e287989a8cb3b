/**
 * `GrpcTransport`: the cluster's `Transport` (src/cluster/types.ts) over gRPC, on the peer
 * protocol of proto/tributary/peer/v1/peer.proto, spoken on node:http2 directly rather than
 * through grpc-js (grpc-wire.ts says why). One listener (h2-server.ts) serves PeerService
 * (receiver.ts); one `PeerLink` per other peer (link.ts) holds the connection and the Frames
 * stream to it. codec.ts maps Raft messages to protobuf.
 *
 * Bounds: a frame is encoded once, in `send`, and dropped there when it is over `maxFrameBytes`
 * (the receiver's limit too, so a peer with a smaller limit refuses it); at most
 * `maxInflightFrames` unacknowledged frames per peer; Call bodies are bounded by the same size
 * both ways. Every drop is counted in `tributary_peer_frames_dropped_total{peer,reason}`
 * (`size`, `inflight`, `disconnected` at the sender; `unknown`, `not_listening` at the
 * receiver) and, at the sender, reported through `handlers.unreachable` at most once per 100 ms
 * per peer, as is a broken stream.
 *
 * TLS: with `tls`, the listener serves TLS and requires a client certificate issued by `ca`
 * (mutual TLS), and the links present the same certificate, verifying each peer's against `ca`
 * (so the certificate must name every peer's host, or each peer uses its own from that CA; a
 * peer listed by IP address must be an IP SAN: credentials.ts, which makes that work on Bun and Deno).
 * `reloadTls` swaps the material (credentials.ts): new handshakes both ways use it, open
 * connections keep theirs.
 *
 * @example
 *   const t = await GrpcTransport.start({ self: 1, host: "0.0.0.0", port: 9093, peers, metrics });
 *   t.listen({ frame: (from, f) => host.receive(from, f), call: (from, m, b) => forwarded(m, b), unreachable: (p) => host.unreachable(p) });
 *   t.send(2, [{ group: META_GROUP, message }]);
 */
import { TributaryError } from "../../src/errors.ts";
import { DEFAULT_TRANSPORT_LIMITS, type GroupMessage, type NodeId, type PeerInfo, type Transport, type TransportHandlers, type TransportLimits } from "../../src/cluster/types.ts";
import { UnreachableNotices } from "../../src/cluster/unreachable.ts";
import type { Logger } from "../../src/logger.ts";
import { Metrics, type Counter } from "../../src/metrics.ts";
import { systemClock, type Clock } from "../../src/runtime/clock.ts";
import { encodeFrame } from "./codec.ts";
import { PREFIX_BYTES } from "./grpc-wire.ts";
import { PeerCredentials, type PeerTls } from "./credentials.ts";
import { PeerServer } from "./h2-server.ts";
import { PeerLink, type DropReason, type LinkEnv } from "./link.ts";
import { Receiver, type ReceiveDropReason } from "./receiver.ts";

export type { PeerTls } from "./credentials.ts";

export interface GrpcTransportOptions {
  readonly self: NodeId;
  readonly host: string;
  /** 0 picks a free port (see `.port`). */
  readonly port: number;
  /** Every peer of the cluster; this peer's own entry, if listed, is skipped. */
  readonly peers: readonly PeerInfo[];
  readonly limits?: TransportLimits;
  readonly tls?: PeerTls;
  readonly metrics?: Metrics;
  readonly logger?: Logger;
  /** Backoff and the unreachable rate limit run on it; default the system clock. */
  readonly clock?: Clock;
  /** Backoff jitter; default Math.random. */
  readonly random?: () => number;
}

/** close() waits this long for calls in progress before cutting them off. */
const SHUTDOWN_GRACE_MS = 2_000;

interface PeerMetrics {
  sent: Counter;
  dropped: Counter;
  calls: Counter;
}

function peerMetrics(m: Metrics): PeerMetrics {
  return {
    sent: m.counter("tributary_peer_frames_sent_total", "Frames of Raft messages written to a peer's stream", ["peer"]),
    dropped: m.counter("tributary_peer_frames_dropped_total", "Frames dropped: at the sender (inflight, size, disconnected) or the receiver (unknown, not_listening)", ["peer", "reason"]),
    calls: m.counter("tributary_peer_calls_total", "Calls forwarded to a peer", ["peer", "method"]),
  };
}

export class GrpcTransport implements Transport {
  private handlers: TransportHandlers | undefined;
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly env: LinkEnv;
  private readonly notices: UnreachableNotices;
  private readonly metrics: PeerMetrics;
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly options: GrpcTransportOptions,
    private readonly limits: TransportLimits,
    private readonly server: PeerServer,
    private readonly receiver: Receiver,
    private readonly boundPort: number,
    /** Peer ids the receiver takes frames from (shared with it). */
    private readonly known: Set<NodeId>,
    private readonly tlsCredentials: PeerCredentials | null,
  ) {
    const clock = options.clock ?? systemClock;
    this.notices = new UnreachableNotices(clock);
    // Without a registry the counters still run (on a private one), which keeps the code one path.
    this.metrics = peerMetrics(options.metrics ?? new Metrics());
    this.env = { self: options.self, limits, credentials: tlsCredentials, clock, random: options.random ?? Math.random, onBroken: (p: NodeId) => this.unreachable(p), ...(options.logger ? { logger: options.logger } : {}) };
    for (const peer of options.peers) if (peer.id !== options.self) this.links.set(peer.id, new PeerLink(peer, this.env));
  }

  setPeers(peers: readonly PeerInfo[]): void {
    if (this.closing) return;
    this.known.clear();
    for (const p of peers) this.known.add(p.id);
    for (const [id, link] of [...this.links]) {
      const now = peers.find((p) => p.id === id);
      if (now && now.address === link.peer.address) continue;
      link.close();
      this.links.delete(id);
    }
    for (const p of peers) if (p.id !== this.options.self && !this.links.has(p.id)) this.links.set(p.id, new PeerLink(p, this.env));
  }

  /** Binds the listener and returns the transport; frames are dropped until `listen`. */
  static async start(options: GrpcTransportOptions): Promise<GrpcTransport> {
    const limits = options.limits ?? DEFAULT_TRANSPORT_LIMITS;
    if (!(limits.maxInflightFrames >= 1 && limits.maxFrameBytes >= 1)) throw new TributaryError("INVALID_CONFIG", "peer transport limits must be at least 1");
    let transport: GrpcTransport | undefined;
    const known = new Set(options.peers.map((p) => p.id));
    const clock = options.clock ?? systemClock;
    const receiver = new Receiver({
      known: (id) => known.has(id),
      setTimer: (ms, fn) => clock.setTimer(ms, fn),
      handlers: () => transport?.handlers,
      dropped: (from, reason) => transport?.countDrop(from, reason),
    });
    const tlsCredentials = options.tls ? new PeerCredentials(options.tls) : null;
    const handlers = receiver.handlers();
    const call = handlers.call;
    handlers.call = (bytes) =>
      call(bytes).catch((e: unknown) => {
        options.logger?.error("peer call failed", { error: e });
        throw e;
      });
    const server = await PeerServer.listen({
      host: options.host,
      port: options.port,
      maxMessageBytes: limits.maxFrameBytes,
      maxSessionBytes: 2 * (limits.maxInflightBytes ?? limits.maxFrameBytes * limits.maxInflightFrames),
      credentials: tlsCredentials,
      handlers,
    });
    const port = server.port;
    transport = new GrpcTransport(options, limits, server, receiver, port, known, tlsCredentials);
    return transport;
  }

  get port(): number {
    return this.boundPort;
  }

  /** New handshakes, listener and links alike, use `tls`; throws INVALID_CONFIG (keeping the old) when it does not make a TLS context. */
  reloadTls(tls: PeerTls): void {
    if (!this.tlsCredentials) throw new Error("the peer transport was started without TLS");
    this.tlsCredentials.update(tls);
  }

  listen(handlers: TransportHandlers): void {
    if (this.handlers) throw new Error("invariant broken: listen is called once");
    this.handlers = handlers;
  }

  send(to: NodeId, frame: readonly GroupMessage[]): void {
    const link = this.links.get(to);
    if (!link || this.closing) return this.drop(to, "disconnected");
    const bytes = encodeFrame(this.options.self, frame, PREFIX_BYTES);
    if (bytes.byteLength - PREFIX_BYTES > this.limits.maxFrameBytes) return this.drop(to, "size");
    const refused = link.send(bytes);
    if (refused) return this.drop(to, refused);
    this.metrics.sent.inc({ peer: String(to) });
  }

  call(to: NodeId, method: string, body: Uint8Array, deadlineMs: number): Promise<Uint8Array> {
    const link = this.links.get(to);
    if (!link) return Promise.reject(new TributaryError("PEER_UNAVAILABLE", `peer ${to} is not in cluster.peers`));
    if (body.byteLength > this.limits.maxFrameBytes) return Promise.reject(new TributaryError("RECORD_TOO_LARGE", `a ${body.byteLength}-byte call body is over the peer limit of ${this.limits.maxFrameBytes}`));
    this.metrics.calls.inc({ peer: String(to), method });
    return link.call(method, body, deadlineMs);
  }

  /** Ends the streams both ways and the listener; idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    for (const link of this.links.values()) link.close();
    this.receiver.endAll();
    await this.server.close(SHUTDOWN_GRACE_MS);
  }

  private drop(to: NodeId, reason: DropReason | "size"): void {
    this.countDrop(to, reason);
    this.unreachable(to);
  }

  private countDrop(peer: NodeId, reason: DropReason | ReceiveDropReason | "size"): void {
    this.metrics.dropped.inc({ peer: String(peer), reason });
  }

  private unreachable(peer: NodeId): void {
    if (!this.closing) this.notices.report(peer, this.handlers);
  }
}
