/**
 * The HTTP gateway: a Hono app over the broker's public surface. Routes live one concern per
 * file (routes-topics, routes-records, routes-stream, routes-consumers, routes-ops); request and reply bodies in
 * media.ts; the record mapping in records.ts; the error-code -> status table in errors.ts.
 *
 * Every refusal is `{"error":{"code","message"}}` with the status from that table (in CBOR when
 * the request negotiated CBOR). Bad input of any kind is a 4xx; an exception that is not a
 * TributaryError is a bug: logged, answered 500 INTERNAL, and the process keeps serving.
 *
 * @example
 *   const app = createHttpApp(broker, { maxRequestBytes: 8 << 20, maxWaitMs: 30_000, maxLongPolls: 1000, maxStreams: 100, logger });
 *   const res = await app.request("/v1/topics");             // in process (tests on Node)
 *   await startHttpServer(app.fetch, { hostname, port, maxRequestBodyBytes }); // on Bun or Deno
 */
import { Hono, type Context } from "hono";
import type { Broker } from "../../src/broker.ts";
import { isTributaryError } from "../../src/errors.ts";
import { authMiddleware } from "./auth.ts";
import type { GatewayDeps, HttpGatewayOptions } from "./deps.ts";
import { HTTP_STATUS, RETRY_AFTER_S, errorBody, type GatewayErrorCode } from "./errors.ts";
import { ConcurrencyGate } from "../../src/concurrency-gate.ts";
import { httpMetrics } from "./http-metrics.ts";
import { negotiate, reply, requestFormat, type Format } from "./media.ts";
import { consumerRoutes } from "./routes-consumers.ts";
import { opsRoutes } from "./routes-ops.ts";
import { recordRoutes } from "./routes-records.ts";
import { streamRoutes } from "./routes-stream.ts";
import { topicRoutes } from "./routes-topics.ts";

export type { HttpGatewayOptions } from "./deps.ts";

/** Errors go back in the format the request would have got its answer in; JSON when in doubt. */
function errorFormat(req: Request): Format {
  let preferred: Format = "json";
  try {
    if (req.headers.has("content-type")) preferred = requestFormat(req);
  } catch {
    // An unsupported request type: reply by Accept alone.
  }
  try {
    return negotiate(req, preferred);
  } catch {
    return "json";
  }
}

export function errorResponse(c: Context, code: GatewayErrorCode, message: string): Response {
  const status = HTTP_STATUS[code];
  const headers: Record<string, string> = status === 503 ? { "retry-after": String(RETRY_AFTER_S) } : status === 401 ? { "www-authenticate": 'Bearer realm="tributary"' } : {};
  return reply(errorFormat(c.req.raw), status, errorBody(code, message), headers);
}

export function createHttpApp(broker: Broker, options: HttpGatewayOptions): Hono {
  const metrics = broker.metrics;
  const longPollsActive = metrics.gauge("tributary_http_long_polls_active", "Long-poll fetches waiting now");
  const streamsActive = metrics.gauge("tributary_http_streams_active", "Server-Sent Events streams open now");
  const deps: GatewayDeps = {
    broker,
    options,
    longPolls: new ConcurrencyGate(options.maxLongPolls, "long polls", (n) => longPollsActive.set(undefined, n)),
    streams: new ConcurrencyGate(options.maxStreams, "streams", (n) => streamsActive.set(undefined, n)),
  };

  const app = new Hono();
  app.use("*", httpMetrics(metrics));
  // Authentication and ACLs, before any route (see auth.ts); absent when authentication is off.
  if (options.guard) app.use("*", authMiddleware(options.guard, options.maxRequestBytes));
  topicRoutes(app, deps);
  recordRoutes(app, deps);
  streamRoutes(app, deps);
  consumerRoutes(app, deps);
  opsRoutes(app, deps);

  app.notFound((c) => errorResponse(c, "NOT_FOUND", `no route for ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    if (isTributaryError(err)) return errorResponse(c, err.code, err.message);
    options.logger.error("HTTP request failed", { method: c.req.method, path: c.req.path, error: err });
    return errorResponse(c, "INTERNAL", "internal error; the broker logged it");
  });
  return app;
}
