/**
 * Operations:
 *   GET /healthz  200 {"status":"ok"} while the process serves requests (liveness)
 *   GET /readyz   200 {"status":"ready"} once every partition is recovered, else 503 NOT_READY
 *   GET /metrics  the broker's registry in Prometheus text format 0.0.4
 *   POST /v1/cluster/peers {"id", "address"}  add a peer; DELETE /v1/cluster/peers/{id}  remove one
 *   GET /v1/cluster  peers, the controller's leader, and per partition its replicas, leader, term,
 *                    commit index and each replica's lag (from every peer's view; 404 on a single node)
 *   GET /v1/mirror   the edge's mirror links: state, per partition lag (records, bytes, seconds),
 *                    last advance, drain estimate, stalled, dropped ranges (404 without mirror.config)
 *   POST /v1/mirror/links/{name}/pause, .../resume   stop sending on a link, or start again (204)
 */
import type { Hono } from "hono";
import { TributaryError } from "../../src/errors.ts";
import type { GatewayDeps } from "./deps.ts";
import { errorResponse } from "./app.ts";
import { decodeBody, readBody, requestFormat } from "./media.ts";

const JSON_TYPE = { "content-type": "application/json" };
const MEMBERSHIP_BODY_BYTES = 4096;

export function opsRoutes(app: Hono, { broker, options }: GatewayDeps): void {
  app.get("/healthz", () => new Response(JSON.stringify({ status: "ok" }), { headers: JSON_TYPE }));

  app.get("/readyz", () => {
    if (!broker.ready) throw new TributaryError("NOT_READY", "the broker is not ready: starting up or shutting down");
    return new Response(JSON.stringify({ status: "ready" }), { headers: JSON_TYPE });
  });

  app.get("/v1/cluster", async (c) => {
    const status = await broker.clusterStatus();
    if (!status) return errorResponse(c, "NOT_FOUND", "this broker is a single node: no cluster.peers");
    return new Response(JSON.stringify(status), { headers: JSON_TYPE });
  });

  // Membership: add a peer (started with the full cluster.peers), remove one (its replicas move off it first).
  app.post("/v1/cluster/peers", async (c) => {
    const body = decodeBody(await readBody(c.req.raw, MEMBERSHIP_BODY_BYTES), requestFormat(c.req.raw)) as { id?: unknown; address?: unknown } | null;
    await broker.addPeer(Number(body?.id), String(body?.address ?? ""));
    return c.body(null, 204);
  });

  app.delete("/v1/cluster/peers/:id", async (c) => {
    const id = Number(c.req.param("id"));
    if (!Number.isSafeInteger(id)) throw new TributaryError("INVALID_REQUEST", "a peer id is an integer");
    await broker.removePeer(id);
    return c.body(null, 204);
  });

  // Move a partition's replicas: {"topic": "t", "partition": 0, "replicas": [1, 2, 4]}; answers once the move is recorded.
  app.post("/v1/cluster/reassign", async (c) => {
    const body = decodeBody(await readBody(c.req.raw, MEMBERSHIP_BODY_BYTES), requestFormat(c.req.raw)) as { topic?: unknown; partition?: unknown; replicas?: unknown } | null;
    if (typeof body?.topic !== "string" || !Array.isArray(body.replicas)) throw new TributaryError("INVALID_REQUEST", 'a reassignment is {"topic": name, "partition": n, "replicas": [peer ids]}');
    await broker.reassignPartition(body.topic, Number(body.partition), body.replicas.map(Number));
    return c.body(null, 202);
  });

  app.get("/v1/mirror", (c) => {
    if (!options.mirror) return errorResponse(c, "MIRROR_NOT_CONFIGURED", "this broker mirrors nothing: no mirror.config");
    return new Response(JSON.stringify(options.mirror.status()), { headers: JSON_TYPE });
  });

  app.post("/v1/mirror/links/:name/:action", (c) => {
    const mirror = options.mirror;
    if (!mirror) return errorResponse(c, "MIRROR_NOT_CONFIGURED", "this broker mirrors nothing: no mirror.config");
    const action = c.req.param("action");
    if (action !== "pause" && action !== "resume") return errorResponse(c, "NOT_FOUND", `no route for POST ${c.req.path}`);
    mirror[action](c.req.param("name"));
    return c.body(null, 204);
  });

  app.get("/metrics", () => new Response(broker.metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } }));
}
