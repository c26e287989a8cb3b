/**
 * Quotas at the HTTP gateway (src/security/quotas.ts holds the buckets), applied by the auth
 * middleware right after a request is authorized, so a request is authenticated, authorized,
 * then charged:
 *
 * - every request: one request against `requestsPerSec`;
 * - produce (`POST /v1/topics/{t}/records`): its Content-Length (without one: the bytes read,
 *   bounded by http.max.request.bytes) against `produceBytesPerSec`;
 * - the delay is awaited before the route runs and the reply carries `X-Throttle-Ms: <ms>`;
 * - fetch replies (`GET .../partitions/{p}/records`, `GET /v1/consumers/.../records`): their body
 *   bytes are charged against `fetchBytesPerSec` after the reply is built, so they delay the
 *   principal's next request (as Kafka does); an SSE stream is charged as its bytes go out, and
 *   waits its delay before the next chunk;
 * - SSE streams and long polls (`waitMs` > 0) count against `maxStreams` while open: past it,
 *   503 OVERLOADED;
 * - connections count against `maxConnections` (auth.ts, src/security/connections.ts): a request
 *   on one connection too many is 503 OVERLOADED.
 */
import type { Context, Next } from "hono";
import type { QuotaEnforcer, QuotaKind } from "../../src/security/quotas.ts";
import { readBody } from "./media.ts";

export const THROTTLE_HEADER = "x-throttle-ms";

const PRODUCE = /^\/v1\/topics\/[^/]+\/records$/;
const FETCH = /^\/v1\/(topics\/[^/]+\/partitions\/[^/]+\/records|consumers\/[^/]+\/instances\/[^/]+\/records)$/;
const STREAM = /^\/v1\/topics\/[^/]+\/partitions\/[^/]+\/stream$/;

async function produceBytes(req: Request, maxBytes: number): Promise<number> {
  const declared = req.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared.trim())) return Number(declared);
  // No (usable) length: measure a copy; a body too large is refused here as the route would.
  return (await readBody(req.clone(), maxBytes)).byteLength;
}

/** Count and throttle an SSE body: charged as chunks go out; released when it ends or is cancelled. */
function meteredStream(body: ReadableStream<Uint8Array>, quotas: QuotaEnforcer, principal: string, release: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let waitMs = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
      try {
        const step = await reader.read();
        if (step.done) {
          release();
          controller.close();
          return;
        }
        waitMs = quotas.charge(principal, "fetch", step.value.byteLength);
        controller.enqueue(step.value);
      } catch (e) {
        release();
        controller.error(e);
      }
    },
    async cancel(reason) {
      release();
      await reader.cancel(reason);
    },
  });
}

/** Charge, wait, run the route, then charge what it sent. */
export async function withQuota(c: Context, next: Next, quotas: QuotaEnforcer, principal: string, maxRequestBytes: number): Promise<void> {
  const { method, path } = c.req;
  const req = c.req.raw;
  const charges: [QuotaKind, number][] = [["request", 1]];
  if (method === "POST" && PRODUCE.test(path)) charges.push(["produce", await produceBytes(req, maxRequestBytes)]);
  const isStream = method === "GET" && STREAM.test(path);
  const isFetch = method === "GET" && FETCH.test(path);
  const waitMs = Number(new URL(req.url).searchParams.get("waitMs") ?? 0);
  const release = isStream || (isFetch && waitMs > 0) ? quotas.openStream(principal) : null;
  let streaming = false;
  try {
    const delay = await quotas.throttle("http", principal, charges, req.signal);
    await next();
    if (delay > 0) setHeader(c, THROTTLE_HEADER, String(delay));
    if (isStream && release && c.res.body && c.res.ok) {
      c.res = new Response(meteredStream(c.res.body, quotas, principal, release), c.res);
      streaming = true;
    } else if (isFetch && c.res.ok) {
      quotas.charge(principal, "fetch", (await c.res.clone().arrayBuffer()).byteLength);
    }
  } finally {
    if (!streaming) release?.();
  }
}

function setHeader(c: Context, name: string, value: string): void {
  try {
    c.res.headers.set(name, value);
  } catch {
    // Immutable headers (a Response passed through as is): copy it.
    const res = new Response(c.res.body, c.res);
    res.headers.set(name, value);
    c.res = res;
  }
}
