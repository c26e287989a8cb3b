/**
 * The HTTP server under mutual TLS, on both runtimes: node:http2's secure server with HTTP/1.1
 * allowed (`allowHTTP1`), so HTTP/1.1 and HTTP/2 clients are both served. Bun.serve does not show
 * a request's client certificate and Deno.serve cannot request one; node:http2 on Bun and on Deno
 * does both (`requestCert`, `rejectUnauthorized`, and `socket.getPeerCertificate()`), so a request
 * here carries its verified certificate's subject CN (`RequestEnv.certificatePrincipal`) to the
 * guard, which runs a request without a bearer token as it. http-bun.ts and http-deno.ts hand
 * over to this file when tls.ca.file is set.
 *
 * The bridge between node's (req, res) and the fetch handler: the request body is streamed in, the
 * response body streamed out with the socket's backpressure (a slow SSE reader slows the stream),
 * and the request's signal aborts when the client goes away. No body limit here: the gateway
 * reads bodies with its own (a typed 413). TLS reload is setSecureContext: new connections get
 * the new material, open ones keep theirs.
 */
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { Socket } from "node:net";
import { Readable } from "node:stream";
import type { TLSSocket } from "node:tls";
import { certificatePrincipal, type TlsMaterial } from "../security/tls.ts";
import { STOP_GRACE_MS, graceTimer, type FetchHandler, type HttpServer, type HttpServerOptions, type RequestEnv } from "./http-server.ts";

/** Connection-level headers: node frames the body itself, and HTTP/2 refuses a stream carrying them. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"]);

const secureContext = (m: TlsMaterial) => ({ cert: m.cert, key: m.key, ...(m.ca === null ? {} : { ca: m.ca }) });

function toRequest(req: Http2ServerRequest, signal: AbortSignal): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith(":") || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  const host = req.headers[":authority"] ?? req.headers.host ?? "localhost";
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  const init: RequestInit & { duplex?: "half" } = { method: req.method, headers, signal };
  if (hasBody) {
    init.body = Readable.toWeb(req as unknown as Readable) as unknown as ReadableStream<Uint8Array>;
    init.duplex = "half";
  }
  return new Request(`https://${host}${req.url}`, init);
}

function envOf(socket: Socket | TLSSocket): RequestEnv {
  const env: RequestEnv = {};
  if (socket.remoteAddress !== undefined && socket.remotePort !== undefined && socket.localPort !== undefined) {
    env.connection = { localPort: socket.localPort, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort };
  }
  const peer = "getPeerCertificate" in socket ? socket.getPeerCertificate() : null;
  env.certificatePrincipal = certificatePrincipal(peer?.subject as Record<string, unknown> | undefined);
  return env;
}

async function sendBody(body: ReadableStream<Uint8Array>, res: Http2ServerResponse, closed: AbortSignal): Promise<void> {
  const reader = body.getReader();
  closed.addEventListener("abort", () => void reader.cancel().catch(() => {}), { once: true });
  try {
    for (;;) {
      const step = await reader.read();
      if (step.done || closed.aborted) break;
      if (!res.write(step.value)) await new Promise<void>((r) => (res.once("drain", r), closed.addEventListener("abort", () => r(), { once: true })));
    }
  } finally {
    res.end();
  }
}

async function serveOne(fetch: FetchHandler, req: Http2ServerRequest, res: Http2ServerResponse): Promise<void> {
  const gone = new AbortController();
  res.once("close", () => gone.abort());
  let response: Response;
  try {
    response = await fetch(toRequest(req, gone.signal), envOf(req.socket));
  } catch {
    response = new Response(JSON.stringify({ error: { code: "INTERNAL", message: "internal error" } }), { status: 500, headers: { "content-type": "application/json" } });
  }
  const headers: Record<string, string> = {};
  response.headers.forEach((v, k) => {
    if (!HOP_BY_HOP.has(k)) headers[k] = v;
  });
  res.writeHead(response.status, headers);
  if (response.body && req.method !== "HEAD") await sendBody(response.body, res, gone.signal);
  else res.end();
}

export function startNodeTlsServer(fetch: FetchHandler, opts: HttpServerOptions & { tls: TlsMaterial }): Promise<HttpServer> {
  const server = createSecureServer({ ...secureContext(opts.tls), allowHTTP1: true, requestCert: opts.tls.ca !== null, rejectUnauthorized: true });
  const sockets = new Set<Socket>();
  server.on("secureConnection", (s: TLSSocket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
    s.on("error", () => {}); // a client that vanishes mid-handshake or mid-response
  });
  server.on("request", (req: Http2ServerRequest, res: Http2ServerResponse) => void serveOne(fetch, req, res).catch(() => res.destroy()));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.hostname, () => {
      server.off("error", reject);
      resolve({
        port: (server.address() as { port: number }).port,
        async stop() {
          const closed = new Promise<void>((r) => server.close(() => r()));
          await Promise.race([closed, graceTimer(STOP_GRACE_MS)]);
          for (const s of sockets) s.destroy();
        },
        reloadTls(material) {
          server.setSecureContext(secureContext(material));
          return Promise.resolve();
        },
      });
    });
  });
}
