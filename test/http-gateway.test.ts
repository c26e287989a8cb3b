/**
 * The HTTP gateway in process on Node: app.request(...) against a real Broker on a temp dir.
 * Every endpoint, every error status, the JSON and CBOR record mappings both ways, body limits,
 * long polls and SSE streams. The same scenarios run against real Bun and Deno processes in
 * http-e2e.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Decoder, Encoder, encode as cborDefaultEncode } from "cbor-x";
import type { Hono } from "hono";
import { Broker } from "../src/broker.ts";
import { defaultConfig, type SettingKey } from "../src/config.ts";
import { ERROR_CODES, TributaryError } from "../src/errors.ts";
import { createLogger } from "../src/logger.ts";
import { createHttpApp } from "../gateways/http/app.ts";
import { HTTP_STATUS } from "../gateways/http/errors.ts";
import { startHttpServer } from "../src/runtime/http-server.ts";

const cborOut = new Encoder({ useRecords: false, tagUint8Array: false });
const cborIn = new Decoder({ mapsAsObjects: true, useRecords: false });
const enc = new TextEncoder();
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
const NOT_UTF8 = new Uint8Array([0xff, 0xfe, 0x00, 0x80, 0x41]);

let dir: string;
let broker: Broker;
let app: Hono;
let logLines: string[];

interface Limits {
  maxRequestBytes: number;
  maxWaitMs: number;
  maxLongPolls: number;
  maxStreams: number;
}
const LIMITS: Limits = { maxRequestBytes: 64 * 1024, maxWaitMs: 5000, maxLongPolls: 2, maxStreams: 2 };

async function open(overrides: Partial<Record<SettingKey, string>> = {}, limits: Partial<Limits> = {}): Promise<void> {
  logLines = [];
  const logger = createLogger("info", (l) => logLines.push(l));
  broker = await Broker.open(defaultConfig({ "data.dir": dir, ...overrides }), { logger });
  app = createHttpApp(broker, { ...LIMITS, ...limits, logger });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tributary-http-"));
  await open();
});
afterEach(async () => {
  await broker.close();
  await rm(dir, { recursive: true, force: true });
});

interface Reply<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

async function call<T = Record<string, unknown>>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" || body instanceof Uint8Array ? (body as BodyInit) : JSON.stringify(body);
    if (!("content-type" in headers)) (init.headers as Record<string, string>)["content-type"] = "application/json";
  }
  const res = await app.request(path, init);
  const type = res.headers.get("content-type") ?? "";
  const raw = new Uint8Array(await res.arrayBuffer());
  let parsed: unknown = null;
  if (type.startsWith("application/cbor")) parsed = cborIn.decode(raw);
  else if (type.startsWith("application/json")) parsed = JSON.parse(new TextDecoder().decode(raw));
  else if (raw.length > 0) parsed = new TextDecoder().decode(raw);
  return { status: res.status, body: parsed as T, headers: res.headers };
}

async function expectError(p: Promise<Reply>, status: number, code: string): Promise<Reply> {
  const r = await p;
  expect({ status: r.status, code: (r.body as { error?: { code?: string } }).error?.code }).toEqual({ status, code });
  expect(typeof (r.body as { error: { message: unknown } }).error.message).toBe("string");
  return r;
}

async function createTopic(name: string, partitions = 1, config: Record<string, string | number> = {}): Promise<void> {
  const r = await call("POST", "/v1/topics", { name, partitions, config });
  expect(r.status).toBe(201);
}

async function produceJson(topic: string, records: unknown[], query = ""): Promise<{ partition: number; offset: number }[]> {
  const r = await call<{ offsets: { partition: number; offset: number }[] }>("POST", `/v1/topics/${topic}/records${query}`, { records });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.offsets;
}

interface JsonRecord {
  offset: number;
  timestamp: number;
  key?: string | null;
  keyBase64?: string;
  value?: unknown;
  valueBase64?: string;
  headers: Record<string, string | null>;
  headersBase64?: Record<string, string>;
}
interface FetchReply {
  records: JsonRecord[];
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
}

async function fetchJson(topic: string, partition: number, query = ""): Promise<FetchReply> {
  const r = await call<FetchReply>("GET", `/v1/topics/${topic}/partitions/${partition}/records${query}`);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

/** Poll a condition (no fixed sleeps): resolves as soon as it holds, fails after `timeoutMs`. */
async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function gauge(name: string): number {
  const line = broker.metrics.render().split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : NaN;
}

describe("topics", () => {
  it("creates, lists, describes and deletes", async () => {
    const created = await call<{ name: string; partitions: { partition: number; logStartOffset: number; highWatermark: number }[]; config: Record<string, string> }>(
      "POST",
      "/v1/topics",
      { name: "telemetry", partitions: 3, config: { "retention.ms": 60000, "cleanup.policy": "delete" } },
    );
    expect(created.status).toBe(201);
    expect(created.headers.get("location")).toBe("/v1/topics/telemetry");
    expect(created.body.name).toBe("telemetry");
    expect(created.body.partitions.map((p) => [p.partition, p.logStartOffset, p.highWatermark])).toEqual([[0, 0, 0], [1, 0, 0], [2, 0, 0]]);
    expect(created.body.config["retention.ms"]).toBe("60000");

    await expectError(call("POST", "/v1/topics", { name: "telemetry", partitions: 1 }), 409, "TOPIC_EXISTS");
    await createTopic("alerts");
    const list = await call<{ topics: { name: string }[] }>("GET", "/v1/topics");
    expect(list.status).toBe(200);
    expect(list.body.topics.map((t) => t.name)).toEqual(["alerts", "telemetry"]);

    await produceJson("telemetry", [{ value: 1, partition: 2 }, { value: 2, partition: 2 }]);
    const described = await call<{ partitions: { partition: number; logStartOffset: number; highWatermark: number }[] }>("GET", "/v1/topics/telemetry");
    expect(described.status).toBe(200);
    expect(described.body.partitions[2]).toMatchObject({ partition: 2, logStartOffset: 0, highWatermark: 2 });

    const del = await app.request("/v1/topics/alerts", { method: "DELETE" });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe("");
    await expectError(call("GET", "/v1/topics/alerts"), 404, "TOPIC_NOT_FOUND");
    await expectError(call("DELETE", "/v1/topics/alerts"), 404, "TOPIC_NOT_FOUND");
  });

  it("creates with the broker's default partition count when none is given, also from CBOR", async () => {
    const r = await call<{ partitions: unknown[] }>("POST", "/v1/topics", cborOut.encode({ name: "c" }), { "content-type": "application/cbor" });
    expect(r.status).toBe(201);
    expect(r.headers.get("content-type")).toBe("application/cbor");
    expect(r.body.partitions).toHaveLength(1);
  });

  it("refuses bad create requests with typed 4xx", async () => {
    await expectError(call("POST", "/v1/topics", { name: "has space", partitions: 1 }), 400, "INVALID_TOPIC_NAME");
    await expectError(call("POST", "/v1/topics", { name: "z", partitions: 0 }), 400, "INVALID_PARTITIONS");
    await expectError(call("POST", "/v1/topics", { name: "z", partitions: 1.5 }), 400, "INVALID_PARTITIONS");
    await expectError(call("POST", "/v1/topics", { name: "z", partitions: "3" }), 400, "INVALID_PARTITIONS");
    await expectError(call("POST", "/v1/topics", { name: "z", config: { "retention.mss": 1 } }), 400, "INVALID_CONFIG");
    await expectError(call("POST", "/v1/topics", { name: "z", config: { "retention.ms": "soon" } }), 400, "INVALID_CONFIG");
    await expectError(call("POST", "/v1/topics", { name: "z", config: ["retention.ms"] }), 400, "INVALID_CONFIG");
    await expectError(call("POST", "/v1/topics", { name: "z", config: { "retention.ms": [1] } }), 400, "INVALID_CONFIG");
    await expectError(call("POST", "/v1/topics", { partitions: 1 }), 400, "INVALID_REQUEST");
    await expectError(call("POST", "/v1/topics", { name: 7 }), 400, "INVALID_REQUEST");
    await expectError(call("POST", "/v1/topics", { name: "z", replicas: 3 }), 400, "INVALID_REQUEST");
    await expectError(call("POST", "/v1/topics", [1, 2]), 400, "INVALID_REQUEST");
    await expectError(call("POST", "/v1/topics", "{nope"), 400, "INVALID_REQUEST");
    await expectError(call("POST", "/v1/topics", "name=z", { "content-type": "application/x-www-form-urlencoded" }), 415, "UNSUPPORTED_MEDIA_TYPE");
    expect((await call<{ topics: unknown[] }>("GET", "/v1/topics")).body.topics).toEqual([]);
  });
});

describe("produce and fetch, JSON", () => {
  it("round-trips JSON values, raw bytes, null keys and values, and headers", async () => {
    await createTopic("t");
    const records = [
      { key: "dev-1", value: { temp: 21.5, tags: ["a", "b"], ok: true, none: null }, headers: { "content-type": "application/json", trace: null } },
      { value: [1, "two", { three: 3 }] },
      { key: null, value: "just a string" },
      { key: "n", value: 42 },
      { key: "b", value: false },
      { key: "tombstone", value: null },
      { keyBase64: b64(NOT_UTF8), valueBase64: b64(NOT_UTF8) },
      { key: "text-bytes", valueBase64: b64(enc.encode("not json at all")) },
      { key: "h", value: 1, headersBase64: { bin: b64(NOT_UTF8) }, headers: { txt: "héllo" } },
      { key: "ts", value: 1, timestamp: 1_700_000_000_123 },
    ];
    const offsets = await produceJson("t", records);
    expect(offsets).toEqual(records.map((_, i) => ({ partition: 0, offset: i })));

    const got = await fetchJson("t", 0, "?offset=0");
    expect(got.nextOffset).toBe(records.length);
    expect(got.highWatermark).toBe(records.length);
    expect(got.logStartOffset).toBe(0);
    const r = got.records;
    expect(r.map((x) => x.offset)).toEqual(records.map((_, i) => i));
    expect(r[0]).toMatchObject({ key: "dev-1", value: records[0]!.value, headers: { "content-type": "application/json", trace: null } });
    expect(typeof r[0]!.timestamp).toBe("number");
    expect(r[1]).toMatchObject({ key: null, value: [1, "two", { three: 3 }], headers: {} });
    expect(r[2]).toMatchObject({ key: null, value: "just a string" });
    expect(r[3]!.value).toBe(42);
    expect(r[4]!.value).toBe(false);
    expect(r[5]).toMatchObject({ key: "tombstone", value: null });
    expect(r[6]).toEqual(expect.objectContaining({ keyBase64: b64(NOT_UTF8), valueBase64: b64(NOT_UTF8) }));
    expect(r[6]!.key).toBeUndefined();
    expect(r[6]!.value).toBeUndefined();
    expect(r[7]).toMatchObject({ key: "text-bytes", valueBase64: b64(enc.encode("not json at all")) });
    expect(r[8]).toMatchObject({ headers: { txt: "héllo" }, headersBase64: { bin: b64(NOT_UTF8) } });
    expect(r[9]!.timestamp).toBe(1_700_000_000_123);
  });

  it("stores a JSON value as its JSON text, and encoding=base64 shows the exact stored bytes", async () => {
    await createTopic("t");
    await produceJson("t", [{ key: "k", value: { a: 1, b: [true] } }, { valueBase64: b64(enc.encode(' {"a": 1} ')) }]);
    const got = await fetchJson("t", 0, "?encoding=base64");
    expect(got.records[0]).toMatchObject({ keyBase64: b64(enc.encode("k")), valueBase64: b64(enc.encode('{"a":1,"b":[true]}')) });
    // Raw bytes that happen to be JSON read back as JSON by default, and byte-exact with base64.
    expect(got.records[1]!.valueBase64).toBe(b64(enc.encode(' {"a": 1} ')));
    expect((await fetchJson("t", 0, "?offset=1")).records[0]!.value).toEqual({ a: 1 });
  });

  it("answers with offsets in record order across partitions, and honours acks", async () => {
    await createTopic("p3", 3);
    const offsets = await produceJson("p3", [
      { value: "a", partition: 2 },
      { value: "b", partition: 0 },
      { value: "c", partition: 2 },
      { value: "d", partition: 1 },
    ]);
    expect(offsets).toEqual([
      { partition: 2, offset: 0 },
      { partition: 0, offset: 0 },
      { partition: 2, offset: 1 },
      { partition: 1, offset: 0 },
    ]);
    expect(await produceJson("p3", [{ value: 1, partition: 0 }], "?acks=all")).toEqual([{ partition: 0, offset: 1 }]);
    expect(await produceJson("p3", [{ value: 1, partition: 0 }], "?acks=-1")).toEqual([{ partition: 0, offset: 2 }]);
    expect(await produceJson("p3", [{ value: 1, partition: 0 }], "?acks=0")).toEqual([{ partition: 0, offset: -1 }]);
    await waitFor("the acks=0 record to be readable", async () => (await fetchJson("p3", 0, "?offset=0")).highWatermark === 4);
    expect(await produceJson("p3", [])).toEqual([]);
  });

  it("pages with maxRecords and nextOffset, and starts at the log start without an offset", async () => {
    await createTopic("t");
    await produceJson("t", Array.from({ length: 10 }, (_, i) => ({ value: i })));
    const a = await fetchJson("t", 0, "?maxRecords=4");
    expect(a.records.map((r) => r.value)).toEqual([0, 1, 2, 3]);
    expect(a.nextOffset).toBe(4);
    const b = await fetchJson("t", 0, `?offset=${a.nextOffset}&maxRecords=100&maxBytes=1048576`);
    expect(b.records.map((r) => r.value)).toEqual([4, 5, 6, 7, 8, 9]);
    const end = await fetchJson("t", 0, "?offset=10&offset=");
    expect(end.records).toEqual([]);
    expect(end.nextOffset).toBe(10);
  });

  it("refuses malformed produce bodies with 400, never 500", async () => {
    await createTopic("t");
    const bad = async (body: unknown, code = "INVALID_REQUEST", status = 400) => expectError(call("POST", "/v1/topics/t/records", body), status, code);
    await bad("{");
    await bad("");
    await bad("null");
    await bad('"records"');
    await bad({ record: [] });
    await bad({ records: {} });
    await bad({ records: [1] });
    await bad({ records: [{ key: 5, value: 1 }] });
    await bad({ records: [{ key: "k", keyBase64: "aw==" }] });
    await bad({ records: [{ value: 1, valueBase64: "aw==" }] });
    await bad({ records: [{ valueBase64: "not base64!" }] });
    await bad({ records: [{ valueBase64: 12 }] });
    await bad({ records: [{ keyBase64: "a===" }] });
    await bad({ records: [{ value: 1, headers: { h: 1 } }] });
    await bad({ records: [{ value: 1, headers: ["h"] }] });
    await bad({ records: [{ value: 1, headersBase64: { h: "%%" } }] });
    await bad({ records: [{ value: 1, partition: -1 }] });
    await bad({ records: [{ value: 1, partition: "0" }] });
    await bad({ records: [{ value: 1, partition: 0.5 }] });
    await bad({ records: [{ value: 1, timestamp: "now" }] });
    await bad({ records: [{ vaule: 1 }] });
    await bad({ records: [{ value: 1, partition: 7 }] }, "PARTITION_NOT_FOUND", 404);
    const invalidUtf8 = new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]);
    await expectError(call("POST", "/v1/topics/t/records", invalidUtf8, { "content-type": "application/json" }), 400, "INVALID_REQUEST");
    expect((await fetchJson("t", 0)).highWatermark).toBe(0);
  });

  it("refuses unknown media types, unacceptable replies and bad acks", async () => {
    await createTopic("t");
    const body = JSON.stringify({ records: [{ value: 1 }] });
    await expectError(call("POST", "/v1/topics/t/records", body, { "content-type": "text/plain" }), 415, "UNSUPPORTED_MEDIA_TYPE");
    const noType = await app.request("/v1/topics/t/records", { method: "POST", body: enc.encode(body) });
    expect(noType.status).toBe(415);
    expect(((await noType.json()) as { error: { code: string } }).error.code).toBe("UNSUPPORTED_MEDIA_TYPE");
    await expectError(call("POST", "/v1/topics/t/records", body, { "content-type": "application/json", accept: "text/html" }), 406, "NOT_ACCEPTABLE");
    await expectError(call("GET", "/v1/topics/t/partitions/0/records", undefined, { accept: "application/xml" }), 406, "NOT_ACCEPTABLE");
    await expectError(call("POST", "/v1/topics/t/records?acks=2", body), 400, "INVALID_REQUEST");
    await expectError(call("POST", "/v1/topics/none/records", body), 404, "TOPIC_NOT_FOUND");
    const charset = await call("POST", "/v1/topics/t/records", body, { "content-type": "Application/JSON; charset=utf-8" });
    expect(charset.status).toBe(200);
  });

  it("refuses bad fetch parameters with typed 4xx", async () => {
    await createTopic("t");
    await produceJson("t", [{ value: 1 }]);
    const f = (q: string) => call("GET", `/v1/topics/t/partitions/${q}`);
    await expectError(f("x/records"), 400, "INVALID_REQUEST");
    await expectError(f("-1/records"), 400, "INVALID_REQUEST");
    await expectError(f("1e0/records"), 400, "INVALID_REQUEST");
    await expectError(f("5/records"), 404, "PARTITION_NOT_FOUND");
    await expectError(f("0/records?offset=-1"), 400, "INVALID_REQUEST");
    await expectError(f("0/records?offset=abc"), 400, "INVALID_REQUEST");
    await expectError(f("0/records?offset=99999999999999999999"), 400, "INVALID_REQUEST");
    await expectError(f("0/records?offset=2"), 416, "OFFSET_OUT_OF_RANGE");
    await expectError(f("0/records?maxRecords=0"), 400, "INVALID_REQUEST");
    await expectError(f("0/records?maxBytes=1.5"), 400, "INVALID_REQUEST");
    await expectError(f("0/records?waitMs=soon"), 400, "INVALID_REQUEST");
    await expectError(f("0/records?encoding=hex"), 400, "INVALID_REQUEST");
    await expectError(call("GET", "/v1/topics/none/partitions/0/records"), 404, "TOPIC_NOT_FOUND");
  });

  it("refuses a record over the topic's max.message.bytes with 413", async () => {
    await createTopic("small", 1, { "max.message.bytes": 256 });
    await expectError(call("POST", "/v1/topics/small/records", { records: [{ value: "x".repeat(1000) }] }), 413, "RECORD_TOO_LARGE");
  });
});

describe("request size limit", () => {
  it("refuses a body over maxRequestBytes by Content-Length", async () => {
    await createTopic("t");
    const big = JSON.stringify({ records: [{ value: "x".repeat(LIMITS.maxRequestBytes) }] });
    await expectError(call("POST", "/v1/topics/t/records", big, { "content-length": String(enc.encode(big).length) }), 413, "RECORD_TOO_LARGE");
  });

  it("refuses a streamed body once the bytes read pass the limit, whatever it declared", async () => {
    await createTopic("t");
    const chunk = enc.encode("x".repeat(8192));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent > LIMITS.maxRequestBytes * 4) controller.close();
        else {
          sent += chunk.length;
          controller.enqueue(chunk);
        }
      },
    });
    const res = await app.request("/v1/topics/t/records", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("RECORD_TOO_LARGE");
    expect(sent).toBeLessThan(LIMITS.maxRequestBytes * 2);
  });

  it("refuses a malformed Content-Length", async () => {
    await createTopic("t");
    await expectError(call("POST", "/v1/topics/t/records", "{}", { "content-type": "application/json", "content-length": "abc" }), 400, "INVALID_REQUEST");
  });
});

describe("produce and fetch, CBOR", () => {
  it("stores byte strings raw and other values as JSON text, and reads them back both ways", async () => {
    await createTopic("t");
    const body = cborOut.encode({
      records: [
        { key: "dev-1", value: { temp: 21.5, seq: 7, tags: ["x"] }, headers: { "content-type": "application/json", raw: NOT_UTF8 } },
        { key: NOT_UTF8, value: NOT_UTF8 },
        { key: null, value: "text" },
        { value: null },
        { key: "bytes-json", value: enc.encode('{"a":1}') },
        { key: "when", value: { at: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)) } },
      ],
    });
    const produced = await call<{ offsets: { partition: number; offset: number }[] }>("POST", "/v1/topics/t/records", body, { "content-type": "application/cbor" });
    expect(produced.status).toBe(200);
    expect(produced.headers.get("content-type")).toBe("application/cbor");
    expect(produced.body.offsets.map((o) => o.offset)).toEqual([0, 1, 2, 3, 4, 5]);

    const asCbor = await call<{ records: { key: unknown; value: unknown; headers: Record<string, unknown> }[]; nextOffset: number }>(
      "GET",
      "/v1/topics/t/partitions/0/records?offset=0",
      undefined,
      { accept: "application/cbor" },
    );
    expect(asCbor.status).toBe(200);
    expect(asCbor.headers.get("content-type")).toBe("application/cbor");
    const r = asCbor.body.records;
    expect(r[0]!.key).toBe("dev-1");
    expect(r[0]!.value).toEqual({ temp: 21.5, seq: 7, tags: ["x"] });
    expect(r[0]!.headers["content-type"]).toBe("application/json");
    expect(new Uint8Array(r[0]!.headers.raw as Uint8Array)).toEqual(NOT_UTF8);
    expect(new Uint8Array(r[1]!.key as Uint8Array)).toEqual(NOT_UTF8);
    expect(new Uint8Array(r[1]!.value as Uint8Array)).toEqual(NOT_UTF8);
    expect(r[2]).toMatchObject({ key: null, value: "text" });
    expect(r[3]).toMatchObject({ key: null, value: null });
    expect(r[4]!.value).toEqual({ a: 1 });
    expect(r[5]!.value).toEqual({ at: "2024-01-02T03:04:05.000Z" });
    expect(asCbor.body.nextOffset).toBe(6);

    const asJson = await fetchJson("t", 0, "?offset=0");
    expect(asJson.records[0]!.value).toEqual({ temp: 21.5, seq: 7, tags: ["x"] });
    expect(asJson.records[0]!.headersBase64).toEqual({ raw: b64(NOT_UTF8) });
    expect(asJson.records[1]).toMatchObject({ keyBase64: b64(NOT_UTF8), valueBase64: b64(NOT_UTF8) });
    expect(asJson.records[2]!.value).toBe("text");
  });

  it("accepts what cbor-x's default encoder sends (tagged Uint8Array) like the example device does", async () => {
    await createTopic("t");
    const body = new Uint8Array(cborDefaultEncode({ records: [{ key: "d", value: { n: 1 } }, { key: "raw", value: NOT_UTF8 }] }));
    const r = await call<{ offsets: unknown[] }>("POST", "/v1/topics/t/records", body, { "content-type": "application/cbor", accept: "application/cbor" });
    expect(r.status).toBe(200);
    expect(r.body.offsets).toHaveLength(2);
    const got = await fetchJson("t", 0);
    expect(got.records[0]!.value).toEqual({ n: 1 });
    expect(got.records[1]!.valueBase64).toBe(b64(NOT_UTF8));
  });

  it("refuses malformed CBOR and values JSON cannot hold, in CBOR when the client speaks CBOR", async () => {
    await createTopic("t");
    const post = (bytes: Uint8Array) => call("POST", "/v1/topics/t/records", bytes, { "content-type": "application/cbor" });
    for (const bytes of [
      new Uint8Array([0xa1, 0x01]), // truncated map
      new Uint8Array([0x01, 0x02]), // trailing bytes
      new Uint8Array([0xff]),
      cborOut.encode({ records: [{ value: { nested: NOT_UTF8 } }] }),
      cborOut.encode({ records: [{ value: 2n ** 70n }] }),
      cborOut.encode({ records: [{ value: Number.NaN }] }),
      cborOut.encode({ records: [{ key: 12, value: 1 }] }),
      cborOut.encode({ records: "nope" }),
    ]) {
      const r = await expectError(post(bytes), 400, "INVALID_REQUEST");
      expect(r.headers.get("content-type")).toBe("application/cbor");
    }
    const jsonReply = await call("POST", "/v1/topics/t/records", new Uint8Array([0xff]), { "content-type": "application/cbor", accept: "application/json" });
    expect(jsonReply.headers.get("content-type")).toBe("application/json");
    expect((await fetchJson("t", 0)).highWatermark).toBe(0);
  });
});

describe("long polls", () => {
  it("returns as soon as a record arrives", async () => {
    await createTopic("t");
    await produceJson("t", [{ value: "before" }]);
    const started = Date.now();
    const poll = fetchJson("t", 0, "?offset=1&waitMs=4000");
    await waitFor("the long poll to wait", () => gauge("tributary_http_long_polls_active") === 1);
    await produceJson("t", [{ value: "after" }]);
    const got = await poll;
    expect(got.records.map((r) => r.value)).toEqual(["after"]);
    expect(Date.now() - started).toBeLessThan(3500);
    expect(gauge("tributary_http_long_polls_active")).toBe(0);
  });

  it("times out empty, with waitMs capped at maxWaitMs", async () => {
    await broker.close();
    await open({}, { maxWaitMs: 150 });
    await createTopic("t");
    let started = Date.now();
    const empty = await fetchJson("t", 0, "?offset=0&waitMs=100");
    expect(empty.records).toEqual([]);
    expect(empty.nextOffset).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    started = Date.now();
    const capped = await fetchJson("t", 0, "?offset=0&waitMs=600000");
    expect(capped.records).toEqual([]);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it("holds at most maxLongPolls; one more gets 503 OVERLOADED with Retry-After", async () => {
    await createTopic("t");
    const polls = [fetchJson("t", 0, "?offset=0&waitMs=4000"), fetchJson("t", 0, "?offset=0&waitMs=4000")];
    await waitFor("two long polls", () => gauge("tributary_http_long_polls_active") === 2);
    const r = await expectError(call("GET", "/v1/topics/t/partitions/0/records?offset=0&waitMs=4000"), 503, "OVERLOADED");
    expect(r.headers.get("retry-after")).toBe("1");
    // A fetch that does not wait needs no slot.
    expect((await fetchJson("t", 0, "?offset=0")).records).toEqual([]);
    await produceJson("t", [{ value: "wake" }]);
    for (const p of await Promise.all(polls)) expect(p.records.map((x) => x.value)).toEqual(["wake"]);
  });
});

interface SseEvent {
  id?: string;
  event?: string;
  data: string;
}

/** Reads SSE events from a response body as they come. */
function sseReader(res: Response) {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const events: SseEvent[] = [];
  const pump = (async () => {
    for (;;) {
      const { done, value } = await reader.read().catch(() => ({ done: true as const, value: undefined }));
      if (done) return;
      buffer += value;
      let sep: number;
      while ((sep = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, sep);
        buffer = buffer.slice(sep + 2);
        const e: SseEvent = { data: "" };
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = line.slice(0, colon);
          const v = line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") data.push(v);
          else if (field === "id") e.id = v;
          else if (field === "event") e.event = v;
        }
        if (data.length === 0 && e.id === undefined && e.event === undefined) continue;
        e.data = data.join("\n");
        events.push(e);
      }
    }
  })();
  return { events, done: pump, cancel: () => reader.cancel() };
}

describe("SSE stream", () => {
  it("sends records produced after it opened, one event per record with id = offset", async () => {
    await createTopic("t");
    await produceJson("t", [{ value: "old" }]);
    const abort = new AbortController();
    const res = await app.request("/v1/topics/t/partitions/0/stream", { signal: abort.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const sse = sseReader(res);
    await waitFor("the stream to open", () => gauge("tributary_http_streams_active") === 1);
    await produceJson("t", [{ key: "k", value: { n: 1 } }, { valueBase64: b64(NOT_UTF8) }]);
    await waitFor("two events", () => sse.events.length >= 2);
    expect(sse.events.map((e) => e.id)).toEqual(["1", "2"]);
    expect(JSON.parse(sse.events[0]!.data)).toMatchObject({ offset: 1, key: "k", value: { n: 1 } });
    expect(JSON.parse(sse.events[1]!.data)).toMatchObject({ offset: 2, valueBase64: b64(NOT_UTF8) });
    abort.abort();
    await sse.cancel();
    await sse.done;
    await waitFor("the stream slot to be released", () => gauge("tributary_http_streams_active") === 0);
  });

  it("starts at an offset or after Last-Event-ID, and refuses bad starts with HTTP errors", async () => {
    await createTopic("t");
    await produceJson("t", [{ value: 0 }, { value: 1 }, { value: 2 }]);
    const fromOffset = sseReader(await app.request("/v1/topics/t/partitions/0/stream?offset=1"));
    await waitFor("two events", () => fromOffset.events.length >= 2);
    expect(fromOffset.events.map((e) => e.id)).toEqual(["1", "2"]);
    await fromOffset.cancel();
    const resumed = sseReader(await app.request("/v1/topics/t/partitions/0/stream?offset=0", { headers: { "last-event-id": "1" } }));
    await waitFor("one event", () => resumed.events.length >= 1);
    expect(resumed.events[0]!.id).toBe("2");
    await resumed.cancel();
    await waitFor("both slots released", () => gauge("tributary_http_streams_active") === 0);

    await expectError(call("GET", "/v1/topics/none/partitions/0/stream"), 404, "TOPIC_NOT_FOUND");
    await expectError(call("GET", "/v1/topics/t/partitions/9/stream"), 404, "PARTITION_NOT_FOUND");
    await expectError(call("GET", "/v1/topics/t/partitions/0/stream?offset=50"), 416, "OFFSET_OUT_OF_RANGE");
    await expectError(call("GET", "/v1/topics/t/partitions/0/stream?offset=x"), 400, "INVALID_REQUEST");
    expect(gauge("tributary_http_streams_active")).toBe(0);
  });

  it("holds at most maxStreams; one more gets 503 OVERLOADED", async () => {
    await createTopic("t");
    const a = sseReader(await app.request("/v1/topics/t/partitions/0/stream"));
    const b = sseReader(await app.request("/v1/topics/t/partitions/0/stream"));
    await expectError(call("GET", "/v1/topics/t/partitions/0/stream"), 503, "OVERLOADED");
    await a.cancel();
    await waitFor("a slot to free", () => gauge("tributary_http_streams_active") === 1);
    const c = sseReader(await app.request("/v1/topics/t/partitions/0/stream"));
    await b.cancel();
    await c.cancel();
    await waitFor("all slots to free", () => gauge("tributary_http_streams_active") === 0);
  });

  it("ends with an error event when the broker closes under it", async () => {
    await createTopic("t");
    const s = sseReader(await app.request("/v1/topics/t/partitions/0/stream"));
    await waitFor("the stream to open", () => gauge("tributary_http_streams_active") === 1);
    await broker.close();
    await s.done;
    expect(s.events.at(-1)?.event).toBe("error");
    expect(JSON.parse(s.events.at(-1)!.data)).toMatchObject({ error: { code: "NOT_READY" } });
    await open();
  });
});

describe("operations", () => {
  it("takes a reassignment as POST /v1/cluster/reassign, refusing a bad body and a single node", async () => {
    await createTopic("t");
    await expectError(call("POST", "/v1/cluster/reassign", { topic: "t", partition: 0, replicas: [1, 2] }), 400, "INVALID_REQUEST"); // a single node
    await expectError(call("POST", "/v1/cluster/reassign", { topic: "t", partition: 0 }), 400, "INVALID_REQUEST");
    const seen: unknown[] = [];
    const original = broker.reassignPartition;
    broker.reassignPartition = async (...args) => {
      seen.push(args);
    };
    try {
      expect((await call("POST", "/v1/cluster/reassign", { topic: "t", partition: 1, replicas: [1, 2, 4] })).status).toBe(202);
    } finally {
      broker.reassignPartition = original;
    }
    expect(seen).toEqual([["t", 1, [1, 2, 4]]]);
  });

  it("answers health, readiness and metrics", async () => {
    await createTopic("t");
    await produceJson("t", [{ value: 1 }]);
    expect((await call("GET", "/healthz")).status).toBe(200);
    expect((await call("GET", "/readyz")).body).toEqual({ status: "ready" });
    await expectError(call("GET", "/nope"), 404, "NOT_FOUND");
    await expectError(call("PUT", "/v1/topics"), 404, "NOT_FOUND");
    const m = await app.request("/metrics");
    expect(m.status).toBe(200);
    expect(m.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await m.text();
    expect(text).toContain('tributary_http_requests_total{method="POST",route="/v1/topics",status="201"} 1');
    expect(text).toContain('tributary_http_requests_total{method="POST",route="/v1/topics/:topic/records",status="200"} 1');
    expect(text).toContain('tributary_http_requests_total{method="GET",route="unmatched",status="404"} 1');
    expect(text).toMatch(/tributary_http_request_duration_seconds_bucket\{method="GET",route="\/readyz",le="\+Inf"\} 1/);
    expect(text).toContain("tributary_records_produced_total");
  });

  it("is not ready, and refuses work with 503, once the broker is closing", async () => {
    await createTopic("t");
    await broker.close();
    expect((await call("GET", "/healthz")).status).toBe(200);
    const r = await expectError(call("GET", "/readyz"), 503, "NOT_READY");
    expect(r.headers.get("retry-after")).toBe("1");
    await expectError(call("POST", "/v1/topics/t/records", { records: [{ value: 1 }] }), 503, "NOT_READY");
    await open();
  });

  it("maps every error code through the one table, and answers an unexpected exception with a logged 500", async () => {
    await createTopic("t");
    const expected: Record<string, number> = {
      INVALID_REQUEST: 400,
      INVALID_TOPIC_NAME: 400,
      INVALID_CONFIG: 400,
      INVALID_PARTITIONS: 400,
      TOPIC_NOT_FOUND: 404,
      PARTITION_NOT_FOUND: 404,
      TOPIC_EXISTS: 409,
      RECORD_TOO_LARGE: 413,
      UNSUPPORTED_MEDIA_TYPE: 415,
      NOT_ACCEPTABLE: 406,
      OFFSET_OUT_OF_RANGE: 416,
      CORRUPT_RECORD: 500,
      OVERLOADED: 503,
      NOT_READY: 503,
      STORAGE_ERROR: 503,
      OUT_OF_ORDER_SEQUENCE: 409,
      PRODUCER_FENCED: 409,
      UNKNOWN_PRODUCER_ID: 409,
      INVALID_GROUP_ID: 400,
      GROUP_NOT_FOUND: 404,
      GROUP_NOT_EMPTY: 409,
      UNKNOWN_MEMBER_ID: 404,
      MIRROR_NOT_CONFIGURED: 404,
      ILLEGAL_GENERATION: 409,
      REBALANCE_IN_PROGRESS: 409,
      INVALID_SESSION_TIMEOUT: 400,
      UNAUTHENTICATED: 401,
      PERMISSION_DENIED: 403,
      NOT_LEADER: 503,
      PEER_UNAVAILABLE: 503,
      NOT_COORDINATOR: 503,
      REQUEST_TIMED_OUT: 503,
    };
    expect(Object.keys(expected).sort()).toEqual([...ERROR_CODES].sort());
    const original = broker.describeTopic.bind(broker);
    for (const code of ERROR_CODES) {
      expect(HTTP_STATUS[code]).toBe(expected[code]);
      broker.describeTopic = () => {
        throw new TributaryError(code, `simulated ${code}`);
      };
      const r = await call<{ error: { code: string; message: string } }>("GET", "/v1/topics/t");
      expect(r.status).toBe(expected[code]);
      expect(r.body).toEqual({ error: { code, message: `simulated ${code}` } });
    }
    broker.describeTopic = () => {
      throw new Error("a bug");
    };
    const r = await expectError(call("GET", "/v1/topics/t"), 500, "INTERNAL");
    expect(JSON.stringify(r.body)).not.toContain("a bug");
    expect(logLines.some((l) => l.includes('"level":"error"') && l.includes("a bug"))).toBe(true);
    broker.describeTopic = original;
    expect((await call("GET", "/v1/topics/t")).status).toBe(200);
  });
});

describe("runtime server adapter", () => {
  it("refuses to serve on Node with a message naming the runtimes that do", async () => {
    await expect(startHttpServer(app.fetch, { hostname: "127.0.0.1", port: 0, maxRequestBodyBytes: 1024 })).rejects.toThrow(/Bun .*Deno.*app\.request/s);
  });
});
