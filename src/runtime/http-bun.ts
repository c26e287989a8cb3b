/**
 * The HTTP server on Bun (Bun.serve). Only http-server.ts imports this file, and only on Bun.
 */
import { STOP_GRACE_MS, graceTimer, type FetchHandler, type HttpServer, type HttpServerOptions } from "./http-server.ts";

/**
 * Bun closes a connection that sends nothing for `idleTimeout` seconds, and that includes a
 * request still waiting for its response. Long polls are capped by http.max.wait.ms (30 s by
 * default) and SSE streams send a comment at least every 15 s, so the largest value Bun accepts
 * keeps both alive while still shedding dead connections.
 */
const IDLE_TIMEOUT_S = 255;

export function startBunServer(fetch: FetchHandler, opts: HttpServerOptions): Promise<HttpServer> {
  const server = Bun.serve({
    hostname: opts.hostname,
    port: opts.port,
    idleTimeout: IDLE_TIMEOUT_S,
    // A backstop only: the gateway refuses oversize bodies itself with a typed 413.
    maxRequestBodySize: opts.maxRequestBodyBytes * 2 + 64 * 1024,
    fetch: (req) => fetch(req),
  });
  const port = server.port;
  if (port === undefined) throw new Error("Bun.serve did not report a port");
  return Promise.resolve({
    port,
    async stop() {
      const graceful = server.stop(false);
      await Promise.race([graceful, graceTimer(STOP_GRACE_MS)]);
      await server.stop(true);
    },
  });
}
