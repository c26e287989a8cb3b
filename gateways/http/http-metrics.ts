/**
 * Request counters by route and status, and a latency histogram by route, in the broker's
 * registry so GET /metrics shows them with everything else. Labels use the route pattern
 * ("/v1/topics/:topic"), never the raw path, so their number stays bounded.
 */
import type { MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import { LATENCY_BUCKETS_S, type Metrics } from "../../src/metrics.ts";

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);

export function httpMetrics(metrics: Metrics): MiddlewareHandler {
  const requests = metrics.counter("tributary_http_requests_total", "HTTP requests by method, route and status", ["method", "route", "status"]);
  const latency = metrics.histogram(
    "tributary_http_request_duration_seconds",
    "Time from request to response headers (for SSE, to the stream's start), by method and route",
    LATENCY_BUCKETS_S,
    ["method", "route"],
  );
  return async (c, next) => {
    const started = performance.now();
    await next();
    const pattern = routePath(c, -1);
    const route = pattern === "" || pattern.includes("*") ? "unmatched" : pattern;
    const method = METHODS.has(c.req.method) ? c.req.method : "OTHER";
    requests.inc({ method, route, status: String(c.res.status) });
    latency.observe({ method, route }, (performance.now() - started) / 1000);
  };
}
