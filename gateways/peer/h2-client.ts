/**
 * One HTTP/2 connection to one peer's listener (h2-server.ts), the client side of the gRPC wire
 * (grpc-wire.ts) without grpc-js: `stream(path)` opens a bidi stream, `unary(path, …)` makes one
 * call. The session is made lazily and made again after it breaks:
 *
 * - Connecting: a TCP socket (through the HTTP CONNECT proxy in `grpc_proxy` unless the host is
 *   listed in `no_grpc_proxy`, as grpc-js reads them), then TLS when the link has credentials
 *   (credentials.ts; the material of the moment, so a reload reaches new connections), then the
 *   HTTP/2 session on that socket.
 * - A failed connect is not retried at once: for a backoff (100 ms doubling to 2 s, drawn in
 *   [b/2, b)) `session()` fails fast, so calls to a peer that is down answer at once and a flood
 *   of sends does not become a flood of connects. A session that comes up resets it.
 * - Keepalive: an idle-or-not session is pinged every KEEPALIVE_MS; no answer within
 *   KEEPALIVE_TIMEOUT_MS destroys it, so a peer that vanished without a FIN is noticed.
 *
 * @example
 *   const conn = new PeerConnection("10.0.0.2:9093", env);
 *   const s = await conn.session();
 */
import * as http2 from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import { TributaryError } from "../../src/errors.ts";
import type { Clock } from "../../src/runtime/clock.ts";
import type { PeerCredentials } from "./credentials.ts";
import { widenWindow, WINDOW_BYTES } from "./h2-server.ts";

export const INITIAL_BACKOFF_MS = 100;
export const MAX_BACKOFF_MS = 2_000;
export const CONNECT_TIMEOUT_MS = 5_000;
const KEEPALIVE_MS = 10_000;
const KEEPALIVE_TIMEOUT_MS = 5_000;

export interface ConnectionEnv {
  readonly credentials: PeerCredentials | null;
  readonly clock: Clock;
  readonly random: () => number;
  /** HTTP/2 session memory cap, bytes. */
  readonly maxSessionBytes: number;
  /** Hears every failed connect (the link logs them, rate-limited) and the first success after failures. */
  readonly onConnectResult?: (error: Error | null) => void;
}

/** `host:port` or `[v6]:port` → its parts; null when it is neither. */
export function splitHostPort(address: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(address);
  if (!m) return null;
  const port = Number(m[3]);
  return port > 0 && port < 65536 ? { host: (m[1] ?? m[2])!, port } : null;
}

export class PeerConnection {
  private current: http2.ClientHttp2Session | null = null;
  private pending: Promise<http2.ClientHttp2Session> | null = null;
  private backoffMs = INITIAL_BACKOFF_MS;
  private retryAtMs = 0;
  private lastError = "";
  private closed = false;
  private readonly target: { host: string; port: number };

  constructor(
    readonly address: string,
    private readonly env: ConnectionEnv,
  ) {
    const target = splitHostPort(address);
    if (!target) throw new TributaryError("INVALID_CONFIG", `peer address ${address} is not host:port`);
    this.target = target;
  }

  /** True when a session is up now (a call on it may reach the peer). */
  get connected(): boolean {
    return this.current !== null && !this.current.destroyed && !this.current.closed;
  }

  /** The live session, or one being made; PEER_UNAVAILABLE inside the backoff after a failed connect. */
  session(): Promise<http2.ClientHttp2Session> {
    if (this.closed) return Promise.reject(new TributaryError("NOT_READY", "the peer transport is closed"));
    if (this.connected) return Promise.resolve(this.current!);
    if (this.pending) return this.pending;
    if (this.env.clock.now() < this.retryAtMs) {
      return Promise.reject(new TributaryError("PEER_UNAVAILABLE", `peer ${this.address} is unreachable (${this.lastError}); retrying in ${Math.ceil(this.retryAtMs - this.env.clock.now())} ms`));
    }
    this.pending = this.connect().then(
      (s) => {
        this.pending = null;
        this.backoffMs = INITIAL_BACKOFF_MS;
        this.env.onConnectResult?.(null);
        return s;
      },
      (e: unknown) => {
        this.pending = null;
        const error = e instanceof Error ? e : new Error(String(e));
        this.env.onConnectResult?.(error);
        this.lastError = (e as Error)?.message ?? String(e);
        this.retryAtMs = this.env.clock.now() + this.backoffMs / 2 + (this.env.random() * this.backoffMs) / 2;
        this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
        throw new TributaryError("PEER_UNAVAILABLE", `could not connect to peer ${this.address}: ${this.lastError}`, { cause: e });
      },
    );
    return this.pending;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.current?.close();
    this.current = null;
  }

  private async connect(): Promise<http2.ClientHttp2Session> {
    const cancelTimeout: { fn: () => void } = { fn: () => {} };
    const timeout = new Promise<never>((_, reject) => {
      cancelTimeout.fn = this.env.clock.setTimer(CONNECT_TIMEOUT_MS, () => reject(new Error(`no connection within ${CONNECT_TIMEOUT_MS} ms`)));
    });
    const socket = this.socket();
    try {
      const ready = await Promise.race([socket, timeout]);
      const session = await Promise.race([this.http2(ready), timeout]);
      if (this.closed) {
        session.destroy();
        throw new TributaryError("NOT_READY", "the peer transport is closed");
      }
      this.adopt(session);
      return session;
    } catch (e) {
      void socket.then((s) => s.destroy(), () => {});
      throw e;
    } finally {
      cancelTimeout.fn();
    }
  }

  /** The connected (and, with credentials, TLS-established) socket. */
  private async socket(): Promise<Duplex> {
    const { host, port } = this.target;
    const proxy = proxyFor(host);
    const raw = proxy ? await tunnel(proxy, host, port) : await tcp(host, port);
    const creds = this.env.credentials;
    if (!creds) return raw;
    return new Promise<Duplex>((resolve, reject) => {
      const secure = tlsConnect({ socket: raw, ...creds.client(host) }, () => {
        if (!secure.authorized) {
          secure.destroy();
          return reject(secure.authorizationError ?? new Error("the peer's certificate was not verified"));
        }
        secure.on("error", () => {});
        resolve(secure);
      });
      secure.once("error", reject);
    });
  }

  private http2(socket: Duplex): Promise<http2.ClientHttp2Session> {
    const scheme = this.env.credentials ? "https" : "http";
    const authority = `${scheme}://${this.address}`;
    return new Promise((resolve, reject) => {
      const session = http2.connect(authority, {
        createConnection: () => socket,
        maxSessionMemory: Math.max(10, Math.ceil(this.env.maxSessionBytes / (1024 * 1024))),
        settings: { initialWindowSize: WINDOW_BYTES, enablePush: false },
      });
      const failed = (e: unknown) => {
        session.destroy();
        reject(e instanceof Error ? e : new Error(String(e)));
      };
      session.once("error", failed);
      session.once("close", () => failed(new Error("the connection closed before HTTP/2 came up")));
      session.once("remoteSettings", () => {
        session.off("error", failed);
        session.removeAllListeners("close");
        resolve(session);
      });
    });
  }

  private adopt(session: http2.ClientHttp2Session): void {
    this.current = session;
    widenWindow(session);
    session.on("error", () => {});
    const cancelPing = this.keepalive(session);
    const gone = () => {
      cancelPing();
      if (this.current === session) this.current = null;
    };
    session.once("close", gone);
    session.once("goaway", gone);
    // The session does not hold the process open (the transport's close ends it; a broker exits on its own terms).
    session.unref();
  }

  private keepalive(session: http2.ClientHttp2Session): () => void {
    let cancel: () => void = () => {};
    const tick = () => {
      if (session.destroyed || session.closed) return;
      const dead = this.env.clock.setTimer(KEEPALIVE_TIMEOUT_MS, () => session.destroy(new Error("keepalive: no answer to a ping")));
      try {
        session.ping(() => dead());
      } catch {
        dead();
      }
      cancel = this.env.clock.setTimer(KEEPALIVE_MS, tick);
    };
    cancel = this.env.clock.setTimer(KEEPALIVE_MS, tick);
    return () => cancel();
  }
}

function tcp(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host, port });
    s.once("connect", () => {
      s.off("error", reject);
      s.on("error", () => {}); // the session hears of it as a close; never an unhandled 'error'
      s.setNoDelay(true);
      resolve(s);
    });
    s.once("error", reject);
  });
}

/** The HTTP CONNECT proxy for `host`: `grpc_proxy` unless `no_grpc_proxy` lists the host (comma-separated names, or `*`). */
function proxyFor(host: string): { host: string; port: number } | null {
  const proxy = process.env.grpc_proxy;
  if (!proxy) return null;
  const skip = (process.env.no_grpc_proxy ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  if (skip.includes("*") || skip.includes(host)) return null;
  try {
    const url = new URL(proxy);
    return { host: url.hostname.replace(/^\[(.*)\]$/, "$1"), port: Number(url.port || 80) };
  } catch {
    throw new TributaryError("INVALID_CONFIG", `grpc_proxy ${proxy} is not a URL`);
  }
}

/** A socket to `host:port` through the proxy's HTTP CONNECT tunnel. */
async function tunnel(proxy: { host: string; port: number }, host: string, port: number): Promise<Duplex> {
  const s = await tcp(proxy.host, proxy.port);
  const target = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise((resolve, reject) => {
    let head = "";
    const onData = (chunk: Buffer) => {
      head += chunk.toString("latin1");
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) {
        if (head.length > 8192) fail(new Error("the proxy's reply is too long"));
        return;
      }
      s.off("data", onData);
      s.off("error", fail);
      s.off("end", ended);
      s.pause(); // nothing may flow before the HTTP/2 session reads the socket
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1];
      if (status !== "200") return fail(new Error(`the proxy refused CONNECT ${target}: ${head.split("\r\n")[0]}`));
      const rest = chunk.subarray(chunk.length - (head.length - end - 4));
      resolve(rest.length > 0 ? prefixed(s, rest) : s);
    };
    const fail = (e: Error) => {
      s.destroy();
      reject(e);
    };
    const ended = () => fail(new Error("the proxy closed the connection"));
    s.on("data", onData);
    s.once("error", fail);
    s.once("end", ended);
    s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  });
}

/**
 * `socket` with `head` read first: the bytes that came in the same read as the proxy's reply (a
 * proxy may read the peer's first bytes, its HTTP/2 SETTINGS, before it answers, and send both in
 * one write). `socket.unshift(head)` would do on Node and Deno, but Bun's HTTP/2 client reads a
 * net.Socket below its stream buffer and never sees unshifted bytes: the session waited for SETTINGS
 * that had already come, and the connect timed out. Only a tunnel with such bytes goes through this
 * stream; the others hand the socket itself to HTTP/2.
 */
function prefixed(socket: Socket, head: Buffer): Duplex {
  const stream = new Duplex({
    read: () => void socket.resume(),
    write: (chunk: Buffer, _encoding, done) => void socket.write(chunk, done),
    final: (done) => void socket.end(done),
    destroy: (error, done) => {
      socket.destroy(error ?? undefined);
      done(error);
    },
  });
  // What an HTTP/2 session calls on its socket besides the stream (Deno's `session.unref()` does).
  Object.assign(stream, { ref: () => socket.ref(), unref: () => socket.unref(), setNoDelay: (on?: boolean) => socket.setNoDelay(on) });
  stream.push(head);
  socket.on("data", (chunk: Buffer) => {
    if (!stream.push(chunk)) socket.pause();
  });
  socket.once("end", () => stream.push(null));
  socket.once("close", () => stream.destroy());
  socket.on("error", (e) => stream.destroy(e));
  return stream;
}
