/**
 * Consumer instances, group administration and idempotent produce over HTTP, in process
 * (app.request) against a real broker on a temp dir.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hono } from "hono";
import { Broker } from "../src/broker.ts";
import { defaultConfig } from "../src/config.ts";
import { silentLogger } from "../src/logger.ts";
import { createHttpApp } from "../gateways/http/app.ts";

let dir: string;
let broker: Broker;
let app: Hono;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tributary-http-consumers-"));
  broker = await Broker.open(defaultConfig({ "data.dir": dir, "group.initial.rebalance.delay.ms": "0" }), { logger: silentLogger });
  app = createHttpApp(broker, { maxRequestBytes: 1 << 20, maxWaitMs: 5000, maxLongPolls: 10, maxStreams: 2, logger: silentLogger });
});
afterEach(async () => {
  await broker.close();
  await rm(dir, { recursive: true, force: true });
});

type Body = Record<string, unknown> & { error?: { code: string } };

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Body }> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "content-type": "application/json" };
  }
  const res = await app.request(path, init);
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as Body };
}

async function produce(topic: string, partition: number, values: unknown[]): Promise<void> {
  const r = await call("POST", `/v1/topics/${topic}/records`, { records: values.map((value) => ({ value, partition })) });
  expect(r.status).toBe(200);
}

interface Polled {
  records: { topic: string; partition: number; offset: number; value: unknown }[];
  assignment: { topic: string; partition: number }[];
}

async function poll(group: string, id: string, query = ""): Promise<Polled> {
  const r = await call("GET", `/v1/consumers/${group}/instances/${id}/records${query}`);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body as unknown as Polled;
}

describe("HTTP consumer instances", () => {
  it("create, subscribe, poll, commit, share partitions with a second instance, delete; describe shows lag", async () => {
    await broker.createTopic("t", 2);
    await produce("t", 0, [1, 2, 3]);
    await produce("t", 1, [4, 5]);
    const created = await call("POST", "/v1/consumers/g", { name: "one", "auto.offset.reset": "earliest", "session.timeout.ms": 10000 });
    expect(created.status).toBe(201);
    expect(created.body.instanceId).toBe("one");
    expect((await call("POST", "/v1/consumers/g/instances/one/subscription", { topics: ["t"] })).status).toBe(204);

    const first = await poll("g", "one");
    expect(first.assignment.length).toBe(2);
    expect(first.records.map((r) => r.value).sort()).toEqual([1, 2, 3, 4, 5]);
    expect(first.records[0]).toMatchObject({ topic: "t", offset: 0, headers: {} });
    const committed = await call("POST", "/v1/consumers/g/instances/one/offsets");
    expect(committed.status).toBe(200);
    expect(committed.body.offsets).toEqual([{ topic: "t", partition: 0, offset: 3 }, { topic: "t", partition: 1, offset: 2 }]);

    // A second instance joins: one partition moves to it after the first lets go on its next poll.
    await call("POST", "/v1/consumers/g", { name: "two", "auto.offset.reset": "latest" });
    await call("POST", "/v1/consumers/g/instances/two/subscription", { topics: ["t"] });
    await poll("g", "one");
    const two = await poll("g", "two");
    expect(two.assignment.length).toBe(1);
    const movedPartition = two.assignment[0]!.partition;
    await produce("t", movedPartition, ["new"]);
    // It resumes from the committed offset, not from "latest".
    const got = await poll("g", "two", "?waitMs=2000");
    expect(got.records.map((r) => r.value)).toEqual(["new"]);

    let d = await call("GET", "/v1/groups/g");
    expect(d.status).toBe(200);
    expect((d.body.members as unknown[]).length).toBe(2);
    expect(d.body.totalLag).toBe(1);
    await call("POST", "/v1/consumers/g/instances/two/offsets", { offsets: [{ topic: "t", partition: movedPartition, offset: got.records[0]!.offset + 1 }] });
    d = await call("GET", "/v1/groups/g");
    expect(d.body.totalLag).toBe(0);
    expect((await call("GET", "/v1/groups")).body.groups).toEqual([{ groupId: "g", state: "stable", members: 2, assignor: "cooperative-sticky" }]);

    // Reset needs an empty group.
    expect((await call("POST", "/v1/groups/g/offsets/reset", { topic: "t", to: "earliest" })).body.error?.code).toBe("GROUP_NOT_EMPTY");
    expect((await call("DELETE", "/v1/consumers/g/instances/one")).status).toBe(204);
    expect((await call("DELETE", "/v1/consumers/g/instances/two")).status).toBe(204);
    const gone = await call("GET", "/v1/consumers/g/instances/one/records");
    expect([gone.status, gone.body.error?.code]).toEqual([404, "UNKNOWN_MEMBER_ID"]);
    const reset = await call("POST", "/v1/groups/g/offsets/reset", { topic: "t", to: "offset", offset: 1 });
    expect(reset.body.offsets).toMatchObject([{ partition: 0, offset: 1 }, { partition: 1, offset: 1 }]);
    expect((await call("DELETE", "/v1/groups/g")).status).toBe(204);
    expect((await call("GET", "/v1/groups/g")).status).toBe(404);
  });

  it("refuses bad requests with clear codes", async () => {
    expect((await call("POST", "/v1/consumers/bad%2Fid", {})).body.error?.code).toBe("INVALID_GROUP_ID");
    expect((await call("POST", "/v1/consumers/g", { "auto.offset.reset": "middle" })).status).toBe(400);
    expect((await call("POST", "/v1/consumers/g", { nmae: "x" })).status).toBe(400);
    const tooShort = await call("POST", "/v1/consumers/g", { name: "x", "session.timeout.ms": 1 });
    expect([tooShort.status, tooShort.body.error?.code]).toEqual([400, "INVALID_SESSION_TIMEOUT"]);
    expect((await call("POST", "/v1/consumers/g/instances/x/subscription", { topics: ["t"] })).status).toBe(404);
    expect((await call("POST", "/v1/groups/none/offsets/reset", { topic: "t", to: "sideways" })).status).toBe(400);
  });
});

describe("idempotent produce over HTTP", () => {
  it("a retried request gets the original offsets and stores nothing twice; gaps are 409", async () => {
    await broker.createTopic("t", 1);
    const id = await call("POST", "/v1/producers");
    expect(id.body).toEqual({ producerId: 0, producerEpoch: 0 });
    const body = { records: [{ value: "a" }, { value: "b" }], producerId: 0, producerEpoch: 0, baseSequence: 0 };
    const first = await call("POST", "/v1/topics/t/records", body);
    const again = await call("POST", "/v1/topics/t/records", body);
    expect(again.body).toEqual(first.body);
    const gap = await call("POST", "/v1/topics/t/records", { ...body, baseSequence: 5 });
    expect([gap.status, gap.body.error?.code]).toEqual([409, "OUT_OF_ORDER_SEQUENCE"]);
    expect((await call("POST", "/v1/topics/t/records", { records: [], producerId: 0 })).status).toBe(400);
    const r = await call("GET", "/v1/topics/t/partitions/0/records?offset=0");
    expect((r.body.records as unknown[]).length).toBe(2);
  });
});
