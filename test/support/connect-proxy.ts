/**
 * An HTTP CONNECT proxy for tests: the egress of one process. grpc-js tunnels every channel
 * through the proxy named in `grpc_proxy` (an HTTP CONNECT, then the channel's bytes), so a test
 * that gives each broker its own CONNECT proxy knows which process opened a connection (the
 * proxy's port) and where it goes (the CONNECT target), and can send it on through a fault proxy
 * for that directed link. `route(host, port)` names the host:port to connect to instead of the
 * target, or null to refuse (502).
 *
 * After the 200 reply it only pipes bytes: half-closes are forwarded, and an error or reset on
 * either side destroys the other, so a fault proxy's reset reaches the client as a dead link.
 * Bounded: at most `maxConnections` tunnels (more are refused with 503).
 *
 * @example
 *   const egress = await startConnectProxy({ route: (_host, port) => (port === peerPort ? `127.0.0.1:${linkPort}` : null) });
 *   spawn(cmd, args, { env: { ...process.env, grpc_proxy: `http://127.0.0.1:${egress.port}` } });
 *   await egress.close();
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import { connect, type Socket } from "node:net";
import { once } from "node:events";

export interface ConnectProxyOptions {
  /** host:port to open for a CONNECT to `host:port`, or null to refuse it. */
  route: (host: string, port: number) => string | null;
  /** Default 64. */
  maxConnections?: number;
  /**
   * Wait for the target's first bytes and send them in the same write as the 200 reply, as a
   * proxy that reads before it answers may: the client then reads both in one chunk.
   */
  replyWithFirstBytes?: boolean;
}

export interface ConnectProxy {
  readonly port: number;
  /** Tunnels open now. */
  open(): number;
  /** Stop listening and destroy every tunnel. */
  close(): Promise<void>;
}

const MAX_CONNECTIONS_DEFAULT = 64;

function splitHostPort(target: string): { host: string; port: number } | null {
  const colon = target.lastIndexOf(":");
  const port = Number(target.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) return null;
  return { host: target.slice(0, colon).replace(/^\[(.*)\]$/, "$1"), port };
}

function refuse(client: Socket, status: string): void {
  client.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
}

class ConnectProxyServer implements ConnectProxy {
  port = 0;
  private readonly server: Server;
  private readonly tunnels = new Set<Socket>();

  constructor(private readonly options: ConnectProxyOptions) {
    this.server = createServer((_req, res) => res.writeHead(405).end());
    this.server.on("connect", (req: IncomingMessage, client: Socket, head: Buffer) => this.tunnel(req, client, head));
  }

  async listen(): Promise<void> {
    this.server.listen(0, "127.0.0.1");
    await once(this.server, "listening");
    const addr = this.server.address();
    this.port = typeof addr === "object" && addr ? addr.port : 0;
  }

  open(): number {
    return this.tunnels.size / 2;
  }

  private tunnel(req: IncomingMessage, client: Socket, head: Buffer): void {
    client.on("error", () => {});
    const target = splitHostPort(req.url ?? "");
    const to = target ? this.options.route(target.host, target.port) : null;
    const upstream = to ? splitHostPort(to) : null;
    if (!upstream) return refuse(client, "502 Bad Gateway");
    if (this.open() >= (this.options.maxConnections ?? MAX_CONNECTIONS_DEFAULT)) return refuse(client, "503 Service Unavailable");
    const server = connect({ host: upstream.host, port: upstream.port, allowHalfOpen: true });
    server.on("error", () => {});
    for (const s of [client, server]) {
      this.tunnels.add(s);
      s.once("close", () => this.tunnels.delete(s));
    }
    // A reset on one side is a reset on the other (a dead link, not an orderly close).
    const reset = (s: Socket) => () => {
      if (s.destroyed) return;
      try {
        s.resetAndDestroy();
      } catch {
        s.destroy();
      }
    };
    client.once("error", reset(server)).once("close", () => server.destroy());
    server.once("error", reset(client)).once("close", () => client.destroy());
    const reply = Buffer.from("HTTP/1.1 200 Connection Established\r\n\r\n");
    server.once("connect", () => {
      if (head.length > 0) server.write(head);
      client.pipe(server);
      if (!this.options.replyWithFirstBytes) {
        client.write(reply);
        server.pipe(client);
        return;
      }
      server.once("data", (first: Buffer) => {
        client.write(Buffer.concat([reply, first]));
        server.pipe(client);
      });
    });
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.tunnels) s.destroy();
    this.server.closeAllConnections();
    await closed;
  }
}

export async function startConnectProxy(options: ConnectProxyOptions): Promise<ConnectProxy> {
  const proxy = new ConnectProxyServer(options);
  await proxy.listen();
  return proxy;
}
