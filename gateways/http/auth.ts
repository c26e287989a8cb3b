/**
 * The HTTP gateway's one place for security: a middleware that, when authentication is on,
 * authenticates `Authorization: Bearer <token>` (under mutual TLS, without one: the client
 * certificate's CN, which the server passes in `c.env`) and checks the ACL for what the request
 * does, before any route runs. Without a guard (authentication off) it is not installed at all.
 *
 * What each route needs (resources: topic:<name>, group:<id>, cluster):
 *
 *   GET /healthz, /readyz                          open (probes)
 *   GET /metrics                                   describe cluster
 *   POST /v1/topics                                create topic:<body.name>
 *   GET /v1/topics, GET /v1/groups, GET /v1/cluster describe cluster
 *   POST, DELETE /v1/cluster/peers                 admin cluster
 *   POST /v1/cluster/reassign                      admin cluster
 *   GET /v1/mirror                                 describe cluster
 *   POST /v1/mirror/links/{name}/pause|resume      admin cluster
 *   GET /v1/topics/{t}                             describe topic:t
 *   DELETE /v1/topics/{t}                          delete topic:t
 *   POST /v1/topics/{t}/records                    produce topic:t
 *   GET /v1/topics/{t}/partitions/{p}/records|stream   consume topic:t
 *   POST /v1/producers                             any authenticated principal
 *   /v1/consumers/{g}/...                          group group:g; the subscription also consume on each topic
 *   GET /v1/groups/{g}                             describe group:g
 *   POST /v1/groups/{g}/offsets/reset              group group:g and consume topic:<body.topic>
 *   DELETE /v1/groups/{g}                          delete group:g
 *   anything else                                  any authenticated principal (then 404)
 *
 * Authorized, a request on a connection not yet counted counts it for its principal; past the
 * principal's maxConnections it is refused with 503 OVERLOADED (src/security/connections.ts).
 *
 * Routes whose resource is in the body read a copy of it (bounded by http.max.request.bytes, as
 * the route's own read is).
 */
import type { MiddlewareHandler } from "hono";
import type { RequestEnv } from "../../src/runtime/http-server.ts";
import { CLUSTER, group, topic, type Check, type SecurityGuard } from "../../src/security/guard.ts";
import { decodeBody, readBody, requestFormat } from "./media.ts";
import { withQuota } from "./quota.ts";

const OPEN = new Set(["/healthz", "/readyz"]);

function param(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

async function bodyField(req: Request, maxBytes: number, field: string): Promise<unknown> {
  const body = decodeBody(await readBody(req.clone(), maxBytes), requestFormat(req));
  return typeof body === "object" && body !== null ? (body as Record<string, unknown>)[field] : undefined;
}

/** The checks a request needs; [] for "authenticated is enough". */
export async function requiredChecks(req: Request, path: string, maxBytes: number): Promise<Check[]> {
  const method = req.method;
  const parts = path.split("/").slice(1).map(param);
  if (path === "/metrics") return [{ operation: "describe", resource: CLUSTER }];
  if (parts[0] !== "v1") return [];
  const [, kind, name, sub, ...rest] = parts;
  if (kind === "topics") {
    if (name === undefined || name === "") {
      if (method === "POST") {
        const n = await bodyField(req, maxBytes, "name");
        return [{ operation: "create", resource: typeof n === "string" ? topic(n) : CLUSTER }];
      }
      return [{ operation: "describe", resource: CLUSTER }];
    }
    if (sub === undefined) return [{ operation: method === "DELETE" ? "delete" : "describe", resource: topic(name) }];
    if (sub === "records") return [{ operation: "produce", resource: topic(name) }];
    if (sub === "partitions") return [{ operation: "consume", resource: topic(name) }];
    return [{ operation: "describe", resource: topic(name) }];
  }
  if (kind === "cluster" || kind === "mirror") return [{ operation: method === "GET" ? "describe" : "admin", resource: CLUSTER }];
  if (kind === "consumers" && name !== undefined) {
    const checks: Check[] = [{ operation: "group", resource: group(name) }];
    if (method === "POST" && rest[1] === "subscription") {
      const topics = await bodyField(req, maxBytes, "topics");
      if (Array.isArray(topics)) for (const t of topics) if (typeof t === "string") checks.push({ operation: "consume", resource: topic(t) });
    }
    return checks;
  }
  if (kind === "groups") {
    if (name === undefined || name === "") return [{ operation: "describe", resource: CLUSTER }];
    if (method === "DELETE" && sub === undefined) return [{ operation: "delete", resource: group(name) }];
    if (method === "GET") return [{ operation: "describe", resource: group(name) }];
    const checks: Check[] = [{ operation: "group", resource: group(name) }];
    if (sub === "offsets") {
      const t = await bodyField(req, maxBytes, "topic");
      if (typeof t === "string") checks.push({ operation: "consume", resource: topic(t) });
    }
    return checks;
  }
  return [];
}

export function authMiddleware(guard: SecurityGuard, maxRequestBytes: number): MiddlewareHandler {
  return async (c, next) => {
    if (OPEN.has(c.req.path)) return next();
    const env = c.env as RequestEnv | undefined;
    // Under mutual TLS the verified client certificate's CN, when the request sends no token.
    const principal = await guard.authenticate("http", c.req.header("authorization"), env?.certificatePrincipal);
    guard.authorize("http", principal, await requiredChecks(c.req.raw, c.req.path, maxRequestBytes));
    // The connection counts for the first principal authorized on it (maxConnections, connections.ts).
    await guard.quotas.admitConnection("http", env?.connection, principal);
    // Authorized, then charged against the principal's quotas (quota.ts), which runs the route.
    await withQuota(c, next, guard.quotas, principal, maxRequestBytes);
  };
}
