/**
 * Topic administration:
 *   POST   /v1/topics            {"name", "partitions"?, "config"?} -> 201 TopicDescription
 *   GET    /v1/topics            -> {"topics": [TopicDescription...]}
 *   GET    /v1/topics/:topic     -> TopicDescription
 *   DELETE /v1/topics/:topic     -> 204
 */
import type { Hono } from "hono";
import type { TopicConfigInput } from "../../src/broker.ts";
import { TributaryError } from "../../src/errors.ts";
import type { GatewayDeps } from "./deps.ts";
import { decodeBody, negotiate, readBody, reply, requestFormat } from "./media.ts";

const CREATE_FIELDS = new Set(["name", "partitions", "config"]);

interface CreateTopic {
  name: string;
  partitions: number | undefined;
  config: TopicConfigInput;
}

function parseCreateTopic(body: unknown): CreateTopic {
  const bad = (m: string) => new TributaryError("INVALID_REQUEST", m);
  if (typeof body !== "object" || body === null || Array.isArray(body) || body instanceof Uint8Array) {
    throw bad(`the body must be an object {"name": ..., "partitions": ..., "config": {...}}`);
  }
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!CREATE_FIELDS.has(k)) throw bad(`unknown field ${JSON.stringify(k)} (known: name, partitions, config)`);
  if (typeof b.name !== "string") throw bad("name must be a string");
  let partitions: number | undefined;
  if (b.partitions !== undefined && b.partitions !== null) {
    if (typeof b.partitions !== "number" || !Number.isSafeInteger(b.partitions)) {
      throw new TributaryError("INVALID_PARTITIONS", "partitions must be an integer");
    }
    partitions = b.partitions;
  }
  const config: TopicConfigInput = {};
  if (b.config !== undefined && b.config !== null) {
    if (typeof b.config !== "object" || Array.isArray(b.config) || b.config instanceof Uint8Array) {
      throw new TributaryError("INVALID_CONFIG", "config must be an object of setting names to values");
    }
    for (const [k, v] of Object.entries(b.config as Record<string, unknown>)) {
      if (typeof v !== "string" && typeof v !== "number") throw new TributaryError("INVALID_CONFIG", `config ${k} must be a string or a number`);
      Object.defineProperty(config, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
  }
  return { name: b.name, partitions, config };
}

export function topicRoutes(app: Hono, { broker, options }: GatewayDeps): void {
  app.post("/v1/topics", async (c) => {
    const format = requestFormat(c.req.raw);
    const out = negotiate(c.req.raw, format);
    const req = parseCreateTopic(decodeBody(await readBody(c.req.raw, options.maxRequestBytes), format));
    const description = await broker.createTopic(req.name, req.partitions, req.config);
    return reply(out, 201, description, { location: `/v1/topics/${encodeURIComponent(description.name)}` });
  });

  app.get("/v1/topics", (c) => reply(negotiate(c.req.raw), 200, { topics: broker.listTopics() }));

  app.get("/v1/topics/:topic", (c) => reply(negotiate(c.req.raw), 200, broker.describeTopic(c.req.param("topic"))));

  app.delete("/v1/topics/:topic", async (c) => {
    await broker.deleteTopic(c.req.param("topic"));
    return new Response(null, { status: 204 });
  });
}
