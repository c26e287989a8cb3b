/**
 * Consumer groups over HTTP, in the spirit of Kafka REST Proxy v2: the gateway holds consumer
 * instances, each one member of a group, and clients poll through them.
 *
 *   POST   /v1/consumers/:group                       {"name"?, "auto.offset.reset"?, "session.timeout.ms"?, "assignor"?}
 *                                                     -> 201 {"instanceId", "group"}
 *   POST   /v1/consumers/:group/instances/:id/subscription   {"topics": [...]} -> 204 (joins the group)
 *   GET    /v1/consumers/:group/instances/:id/records?maxRecords=&waitMs=&encoding=
 *                                                     -> {"records": [{"topic", "partition", "offset", ...}], "assignment", "generationId"}
 *   POST   /v1/consumers/:group/instances/:id/offsets {"offsets": [{"topic","partition","offset","metadata"?}]}
 *                                                     or no body: commit the consumed positions -> {"offsets": [...]}
 *   DELETE /v1/consumers/:group/instances/:id         -> 204 (leaves the group)
 *   GET    /v1/groups                                 -> {"groups": [GroupListing]}
 *   GET    /v1/groups/:group                          -> GroupDescription (members, assignment, committed offsets, lag)
 *   POST   /v1/groups/:group/offsets/reset            {"topic", "to": "earliest"|"latest"|"offset"|"timestamp", "offset"?, "timestamp"?, "partitions"?}
 *                                                     -> {"offsets": [...]} (only for a group without members)
 *   DELETE /v1/groups/:group                          -> 204 (only for a group without members)
 *
 * A poll heartbeats for the instance (reporting the partitions it holds), commits and lets go of
 * the partitions the group took away from it, starts new partitions at the committed offset (or
 * by auto.offset.reset), then reads every assigned partition from its position; with waitMs it
 * waits until any of them has records. Requests to one instance run one at a time.
 *
 * Bounds: at most MAX_CONSUMER_INSTANCES instances; an instance not used for longer than its
 * session timeout is removed (its member has expired in the group by then anyway), checked on
 * every request, so no timer is needed.
 */
import type { Context, Hono } from "hono";
import type { Broker } from "../../src/broker.ts";
import { TributaryError, isTributaryError } from "../../src/errors.ts";
import { ASSIGNOR_NAMES, type AssignorName, type AutoOffsetReset, type GroupHeartbeatResponse, type OffsetCommit, type OffsetResetTarget, type TopicPartition } from "../../src/groups/types.ts";
import type { DecodedRecord } from "../../src/storage/record-batch.ts";
import type { GatewayDeps } from "./deps.ts";
import { decodeBody, negotiate, readBody, reply, requestFormat } from "./media.ts";
import { parseIntParam } from "./params.ts";
import { recordFor } from "./records.ts";
import { parseEncoding, query } from "./routes-records.ts";

export const MAX_CONSUMER_INSTANCES = 1000;
/** Records one poll returns at most, and by default. */
const POLL_MAX_RECORDS = 10_000;
const POLL_DEFAULT_MAX_RECORDS = 500;
const NAME = /^[a-zA-Z0-9._-]{1,100}$/;

interface Instance {
  group: string;
  id: string;
  reset: AutoOffsetReset;
  sessionTimeoutMs: number | undefined;
  assignor: AssignorName | undefined;
  last: GroupHeartbeatResponse | null;
  /** Next offset to read per held partition, keyed "topic\0partition". */
  positions: Map<string, { tp: TopicPartition; offset: number }>;
  lastUsedMs: number;
  chain: Promise<unknown>;
}

const bad = (m: string) => new TributaryError("INVALID_REQUEST", m);
const k = (tp: TopicPartition) => `${tp.topic}\u0000${tp.partition}`;

function object(body: unknown, what: string): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body) || body instanceof Uint8Array) throw bad(`the body must be an object ${what}`);
  return body as Record<string, unknown>;
}

function onlyFields(b: Record<string, unknown>, fields: string[]): void {
  for (const f of Object.keys(b)) if (!fields.includes(f)) throw bad(`unknown field ${JSON.stringify(f)} (known: ${fields.join(", ")})`);
}

async function optionalBody(c: Context, maxBytes: number): Promise<unknown> {
  const bytes = await readBody(c.req.raw, maxBytes);
  return bytes.byteLength === 0 ? undefined : decodeBody(bytes, requestFormat(c.req.raw));
}

class ConsumerInstances {
  private readonly instances = new Map<string, Instance>();

  constructor(private readonly broker: Broker) {}

  create(group: string, body: Record<string, unknown>): Instance {
    this.sweep();
    onlyFields(body, ["name", "auto.offset.reset", "session.timeout.ms", "assignor"]);
    const name = body.name;
    if (name !== undefined && (typeof name !== "string" || !NAME.test(name))) throw bad("name must be 1 to 100 letters, digits, '.', '_' or '-'");
    const reset = body["auto.offset.reset"] ?? "latest";
    if (reset !== "earliest" && reset !== "latest") throw bad(`auto.offset.reset must be earliest or latest, got ${JSON.stringify(reset)}`);
    const timeout = body["session.timeout.ms"];
    if (timeout !== undefined && (typeof timeout !== "number" || !Number.isSafeInteger(timeout))) throw bad("session.timeout.ms must be an integer");
    // Refuse an out-of-range timeout now: the instance's idle expiry runs on it from the start.
    this.broker.groups.sessionTimeout(timeout);
    const assignor = body.assignor;
    if (assignor !== undefined && !ASSIGNOR_NAMES.includes(assignor as AssignorName)) throw bad(`assignor must be one of ${ASSIGNOR_NAMES.join(", ")}`);
    if (this.instances.size >= MAX_CONSUMER_INSTANCES) throw new TributaryError("OVERLOADED", `the gateway holds ${MAX_CONSUMER_INSTANCES} consumer instances, its limit`);
    const id = name ?? crypto.randomUUID();
    if (this.instances.has(`${group}/${id}`)) throw bad(`consumer instance ${id} already exists in group ${group}`);
    const inst: Instance = {
      group,
      id,
      reset,
      sessionTimeoutMs: timeout,
      assignor: assignor as AssignorName | undefined,
      last: null,
      positions: new Map(),
      lastUsedMs: Date.now(),
      chain: Promise.resolve(),
    };
    this.instances.set(`${group}/${id}`, inst);
    return inst;
  }

  /** Run `fn` on the instance, one request at a time; a vanished member removes the instance. */
  with<T>(group: string, id: string, fn: (inst: Instance) => Promise<T>): Promise<T> {
    this.sweep();
    const inst = this.instances.get(`${group}/${id}`);
    if (!inst) throw new TributaryError("UNKNOWN_MEMBER_ID", `consumer instance ${id} of group ${group} does not exist (deleted, or idle past its session timeout)`);
    const run = inst.chain.then(async () => {
      try {
        return await fn(inst);
      } catch (e) {
        if (isTributaryError(e) && e.code === "UNKNOWN_MEMBER_ID") this.instances.delete(`${group}/${id}`);
        throw e;
      } finally {
        inst.lastUsedMs = Date.now();
      }
    });
    inst.chain = run.catch(() => {});
    return run;
  }

  async remove(inst: Instance): Promise<void> {
    this.instances.delete(`${inst.group}/${inst.id}`);
    if (inst.last) await this.broker.groups.leave(inst.group, inst.last.memberId).catch(() => {});
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, inst] of this.instances) {
      const timeout = inst.last?.sessionTimeoutMs ?? inst.sessionTimeoutMs ?? 45_000;
      if (now - inst.lastUsedMs > timeout) {
        this.instances.delete(key);
        if (inst.last) void this.broker.groups.leave(inst.group, inst.last.memberId).catch(() => {});
      }
    }
  }

  async subscribe(inst: Instance, topics: string[]): Promise<void> {
    const g = this.broker.groups;
    inst.last = inst.last
      ? await g.heartbeat({ groupId: inst.group, memberId: inst.last.memberId, topics, ownedPartitions: this.owned(inst) })
      : await g.heartbeat({ groupId: inst.group, topics, sessionTimeoutMs: inst.sessionTimeoutMs, assignor: inst.assignor, clientId: inst.id });
    await this.reconcile(inst);
  }

  private owned(inst: Instance): TopicPartition[] {
    return [...inst.positions.values()].map((p) => p.tp);
  }

  /** Heartbeat; commit and let go of revoked partitions; start new ones. */
  async heartbeat(inst: Instance): Promise<void> {
    if (!inst.last) throw bad(`consumer instance ${inst.id} has no subscription yet`);
    inst.last = await this.broker.groups.heartbeat({ groupId: inst.group, memberId: inst.last.memberId, ownedPartitions: this.owned(inst) });
    await this.reconcile(inst);
  }

  private async reconcile(inst: Instance): Promise<void> {
    const last = inst.last!;
    const assigned = new Set(last.assignment.map(k));
    const revoked = [...inst.positions].filter(([key]) => !assigned.has(key));
    if (revoked.length > 0) {
      // Commit what was consumed before letting go, as a cooperative consumer does on revocation.
      await this.broker.groups
        .commitOffsets({ groupId: inst.group, memberId: last.memberId, generationId: last.generationId, offsets: revoked.map(([, p]) => ({ ...p.tp, offset: p.offset })) })
        .catch(() => {});
      for (const [key] of revoked) inst.positions.delete(key);
      inst.last = await this.broker.groups.heartbeat({ groupId: inst.group, memberId: last.memberId, ownedPartitions: this.owned(inst) });
    }
    for (const tp of inst.last!.assignment) {
      if (!inst.positions.has(k(tp))) inst.positions.set(k(tp), { tp, offset: await this.broker.groups.startOffset(inst.group, tp.topic, tp.partition, inst.reset) });
    }
  }

  async poll(inst: Instance, maxRecords: number, waitMs: number, signal: AbortSignal): Promise<{ tp: TopicPartition; record: DecodedRecord }[]> {
    await this.heartbeat(inst);
    const held = [...inst.positions.values()];
    const ac = new AbortController();
    const abort = () => ac.abort();
    signal.addEventListener("abort", abort, { once: true });
    try {
      const results = await Promise.all(
        held.map(async (p) => {
          try {
            const r = await this.broker.fetch(p.tp.topic, p.tp.partition, p.offset, { maxRecords, waitMs, signal: ac.signal });
            if (r.records.length > 0) ac.abort();
            return r.records;
          } catch (e) {
            if (isTributaryError(e) && e.code === "OFFSET_OUT_OF_RANGE") {
              // The position fell out of retention (or past a truncation): start again by the reset policy.
              const d = this.broker.describeTopic(p.tp.topic).partitions[p.tp.partition];
              p.offset = inst.reset === "earliest" ? (d?.logStartOffset ?? 0) : (d?.highWatermark ?? 0);
              return [];
            }
            throw e;
          }
        }),
      );
      const out: { tp: TopicPartition; record: DecodedRecord }[] = [];
      held.forEach((p, i) => {
        for (const record of results[i]!) {
          if (out.length >= maxRecords) return;
          out.push({ tp: p.tp, record });
          p.offset = record.offset + 1;
        }
      });
      return out;
    } finally {
      signal.removeEventListener("abort", abort);
    }
  }

  async commit(inst: Instance, body: unknown): Promise<OffsetCommit[]> {
    await this.heartbeat(inst);
    let offsets: OffsetCommit[];
    if (body === undefined) {
      offsets = [...inst.positions.values()].map((p) => ({ ...p.tp, offset: p.offset }));
    } else {
      const b = object(body, `{"offsets": [{"topic", "partition", "offset", "metadata"?}]}`);
      onlyFields(b, ["offsets"]);
      if (!Array.isArray(b.offsets)) throw bad("offsets must be a list");
      offsets = b.offsets.map((o: unknown, i) => {
        const x = object(o, `at offsets[${i}]`);
        onlyFields(x, ["topic", "partition", "offset", "metadata"]);
        if (typeof x.topic !== "string" || typeof x.partition !== "number" || typeof x.offset !== "number") throw bad(`offsets[${i}] needs topic, partition and offset`);
        if (x.metadata !== undefined && typeof x.metadata !== "string") throw bad(`offsets[${i}].metadata must be a string`);
        return { topic: x.topic, partition: x.partition, offset: x.offset, ...(x.metadata === undefined ? {} : { metadata: x.metadata as string }) };
      });
    }
    const last = inst.last!;
    await this.broker.groups.commitOffsets({ groupId: inst.group, memberId: last.memberId, generationId: last.generationId, offsets });
    return offsets;
  }
}

function parseResetTarget(b: Record<string, unknown>): { topic: string; target: OffsetResetTarget; partitions?: number[] } {
  onlyFields(b, ["topic", "to", "offset", "timestamp", "partitions"]);
  if (typeof b.topic !== "string") throw bad("topic must be a string");
  let target: OffsetResetTarget;
  if (b.to === "earliest" || b.to === "latest") target = { to: b.to };
  else if (b.to === "offset" && typeof b.offset === "number") target = { to: "offset", offset: b.offset };
  else if (b.to === "timestamp" && typeof b.timestamp === "number") target = { to: "timestamp", timestampMs: b.timestamp };
  else throw bad(`to must be earliest, latest, offset (with "offset") or timestamp (with "timestamp", ms since the epoch)`);
  if (b.partitions !== undefined && (!Array.isArray(b.partitions) || !b.partitions.every((p) => typeof p === "number"))) throw bad("partitions must be a list of partition indexes");
  return { topic: b.topic, target, ...(b.partitions === undefined ? {} : { partitions: b.partitions as number[] }) };
}

export function consumerRoutes(app: Hono, { broker, options, longPolls }: GatewayDeps): void {
  const instances = new ConsumerInstances(broker);

  app.post("/v1/consumers/:group", async (c) => {
    const out = negotiate(c.req.raw);
    const group = c.req.param("group");
    const body = (await optionalBody(c, options.maxRequestBytes)) ?? {};
    // Check the group id now rather than at subscribe.
    await broker.groups.fetchCommittedOffsets(group);
    const inst = instances.create(group, object(body, `{"name"?, "auto.offset.reset"?, "session.timeout.ms"?, "assignor"?}`));
    return reply(out, 201, { instanceId: inst.id, group }, { location: `/v1/consumers/${group}/instances/${inst.id}` });
  });

  app.post("/v1/consumers/:group/instances/:id/subscription", async (c) => {
    const body = object(await optionalBody(c, options.maxRequestBytes), `{"topics": [...]}`);
    onlyFields(body, ["topics"]);
    if (!Array.isArray(body.topics) || !body.topics.every((t) => typeof t === "string")) throw bad("topics must be a list of topic names");
    const topics = body.topics as string[];
    await instances.with(c.req.param("group"), c.req.param("id"), (inst) => instances.subscribe(inst, topics));
    return c.body(null, 204);
  });

  app.get("/v1/consumers/:group/instances/:id/records", async (c) => {
    const out = negotiate(c.req.raw);
    const maxRecords = Math.min(parseIntParam(query(c, "maxRecords"), "maxRecords", 1) ?? POLL_DEFAULT_MAX_RECORDS, POLL_MAX_RECORDS);
    const waitMs = Math.min(parseIntParam(query(c, "waitMs"), "waitMs") ?? 0, options.maxWaitMs);
    const toWire = recordFor(out, parseEncoding(query(c, "encoding")));
    const release = waitMs > 0 ? longPolls.acquire() : () => {};
    try {
      return await instances.with(c.req.param("group"), c.req.param("id"), async (inst) => {
        const got = await instances.poll(inst, maxRecords, waitMs, c.req.raw.signal);
        return reply(out, 200, {
          records: got.map(({ tp, record }) => ({ topic: tp.topic, partition: tp.partition, ...(toWire(record) as object) })),
          assignment: inst.last?.assignment ?? [],
          generationId: inst.last?.generationId ?? 0,
        });
      });
    } finally {
      release();
    }
  });

  app.post("/v1/consumers/:group/instances/:id/offsets", async (c) => {
    const out = negotiate(c.req.raw);
    const body = await optionalBody(c, options.maxRequestBytes);
    const offsets = await instances.with(c.req.param("group"), c.req.param("id"), (inst) => instances.commit(inst, body));
    return reply(out, 200, { offsets });
  });

  app.delete("/v1/consumers/:group/instances/:id", async (c) => {
    await instances.with(c.req.param("group"), c.req.param("id"), (inst) => instances.remove(inst));
    return c.body(null, 204);
  });

  app.get("/v1/groups", async (c) => reply(negotiate(c.req.raw), 200, { groups: await broker.groups.listGroups() }));

  app.get("/v1/groups/:group", async (c) => reply(negotiate(c.req.raw), 200, await broker.groups.describeGroup(c.req.param("group"))));

  app.post("/v1/groups/:group/offsets/reset", async (c) => {
    const out = negotiate(c.req.raw);
    const { topic, target, partitions } = parseResetTarget(object(await optionalBody(c, options.maxRequestBytes), `{"topic", "to", ...}`));
    return reply(out, 200, { offsets: await broker.groups.resetOffsets(c.req.param("group"), topic, target, partitions) });
  });

  app.delete("/v1/groups/:group", async (c) => {
    await broker.groups.deleteGroup(c.req.param("group"));
    return c.body(null, 204);
  });
}
