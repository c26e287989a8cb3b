/**
 * The HTTP server on Bun (Bun.serve). Only http-server.ts imports this file, and only on Bun.
 *
 * HTTPS: Bun.serve's `tls` option. Bun.serve gives a request no view of the client certificate,
 * so under mutual TLS (a client CA) HTTP is served by node:http2 instead (http-node-tls.ts), which
 * shows it: the certificate's CN is then a request's principal.
 *
 * Bun's `server.reload()` changes handlers, not TLS. reloadTls therefore opens a second listener
 * on the same port (both with SO_REUSEPORT, Linux), then stops the old one gracefully: new
 * connections get the new certificate, requests in flight on the old listener finish (cut after
 * the usual grace), and the port never stops accepting.
 */
import type { TlsMaterial } from "../security/tls.ts";
import { STOP_GRACE_MS, graceTimer, type FetchHandler, type HttpServer, type HttpServerOptions } from "./http-server.ts";

/**
 * Bun closes a connection that sends nothing for `idleTimeout` seconds, and that includes a
 * request still waiting for its response. Long polls are capped by http.max.wait.ms (30 s by
 * default) and SSE streams send a comment at least every 15 s, so the largest value Bun accepts
 * keeps both alive while still shedding dead connections.
 */
const IDLE_TIMEOUT_S = 255;

type BunServer = ReturnType<typeof Bun.serve>;

function bunTls(material: TlsMaterial | undefined): Bun.TLSOptions | undefined {
  return material ? { cert: material.cert, key: material.key } : undefined;
}

async function stopGracefully(server: BunServer): Promise<void> {
  const graceful = server.stop(false);
  await Promise.race([graceful, graceTimer(STOP_GRACE_MS)]);
  await server.stop(true);
}

export async function startBunServer(fetch: FetchHandler, opts: HttpServerOptions): Promise<HttpServer> {
  if (opts.tls?.ca) {
    const { startNodeTlsServer } = await import("./http-node-tls.ts");
    return startNodeTlsServer(fetch, { ...opts, tls: opts.tls });
  }
  const serve = (port: number, material: TlsMaterial | undefined): BunServer =>
    Bun.serve({
      hostname: opts.hostname,
      port,
      idleTimeout: IDLE_TIMEOUT_S,
      // A backstop only: the gateway refuses oversize bodies itself with a typed 413.
      maxRequestBodySize: opts.maxRequestBodyBytes * 2 + 64 * 1024,
      // With TLS, a reload binds a second listener to the port before the first one stops.
      reusePort: material !== undefined,
      tls: bunTls(material),
      fetch: (req, srv) => {
        const ip = srv.requestIP(req);
        return fetch(req, ip && srv.port !== undefined ? { connection: { localPort: srv.port, remoteAddress: ip.address, remotePort: ip.port } } : {});
      },
    });
  let server = serve(opts.port, opts.tls);
  const port = server.port;
  if (port === undefined) throw new Error("Bun.serve did not report a port");
  const draining = new Set<Promise<void>>();
  return {
    port,
    async stop() {
      await Promise.all([stopGracefully(server), ...draining]);
    },
    reloadTls(material: TlsMaterial) {
      if (!opts.tls) return Promise.reject(new Error("the HTTP listener was started without TLS"));
      const old = server;
      server = serve(port, material);
      const done = stopGracefully(old).finally(() => draining.delete(done));
      draining.add(done);
      return Promise.resolve();
    },
  };
}
