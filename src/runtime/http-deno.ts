/**
 * The HTTP server on Deno (Deno.serve). Only http-server.ts imports this file, and only on Deno.
 * Deno's types are not installed for the Node-side typecheck, so the few members used are
 * declared here.
 *
 * HTTPS: Deno.serve takes a certificate and key (`cert`, `key`) but has no option to request or
 * verify client certificates, so under mutual TLS (tls.ca.file) HTTP is served by node:http2
 * instead (http-node-tls.ts), which verifies them and shows the CN, and whose certificate reloads.
 * Deno.serve cannot change its certificate: with TLS but no client CA, reloadTls rejects and the
 * old certificate stays until the broker is restarted.
 */
import { STOP_GRACE_MS, graceTimer, type FetchHandler, type HttpServer, type HttpServerOptions } from "./http-server.ts";

interface DenoNetAddr {
  hostname: string;
  port: number;
}

interface DenoHttpServer {
  readonly finished: Promise<void>;
  shutdown(): Promise<void>;
}

interface DenoServeOptions {
  hostname: string;
  port: number;
  onListen: (addr: DenoNetAddr) => void;
  onError: (error: unknown) => Response;
  cert?: string;
  key?: string;
}

interface DenoServeInfo {
  remoteAddr: { hostname: string; port: number };
}

interface DenoRuntime {
  serve(options: DenoServeOptions, handler: (req: Request, info: DenoServeInfo) => Response | Promise<Response>): DenoHttpServer;
}

export async function startDenoServer(fetch: FetchHandler, opts: HttpServerOptions): Promise<HttpServer> {
  const deno = (globalThis as unknown as { Deno: DenoRuntime }).Deno;
  if (opts.tls?.ca) {
    const { startNodeTlsServer } = await import("./http-node-tls.ts");
    return startNodeTlsServer(fetch, { ...opts, tls: opts.tls });
  }
  // Deno.serve has no body limit of its own; the gateway reads bodies with its limit.
  return await new Promise((resolve, reject) => {
    // onListen may run before serve() returns, so the server is read only when stop() is called.
    let server: DenoHttpServer | undefined;
    let localPort = opts.port;
    try {
      server = deno.serve(
        {
          hostname: opts.hostname,
          port: opts.port,
          ...(opts.tls ? { cert: opts.tls.cert, key: opts.tls.key } : {}),
          // Replaces Deno's default "Listening on ..." line on stdout: the caller logs its own.
          onListen: (addr) => {
            localPort = addr.port;
            resolve({
              port: addr.port,
              async stop() {
                if (server) await Promise.race([server.shutdown(), graceTimer(STOP_GRACE_MS)]);
              },
              reloadTls: () => Promise.reject(new Error("Deno.serve cannot change its certificate in place; the old one stays until the broker restarts")),
            });
          },
          onError: () => new Response(JSON.stringify({ error: { code: "INTERNAL", message: "internal error" } }), {
            status: 500,
            headers: { "content-type": "application/json" },
          }),
        },
        (req, info) => fetch(req, { connection: { localPort, remoteAddress: info.remoteAddr.hostname, remotePort: info.remoteAddr.port } }),
      );
    } catch (e) {
      reject(e);
    }
  });
}
