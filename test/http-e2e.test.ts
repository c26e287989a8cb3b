/**
 * The HTTP API end to end against `tributary serve` as a real process, under Bun and under Deno,
 * on loopback: topics, JSON and CBOR produce and fetch, long polls, an SSE stream receiving records
 * produced after it opened, health and metrics, typed errors (including oversize bodies, declared
 * and streamed), and a restart on the same data directory.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Decoder, Encoder } from "cbor-x";
import { startBrokerProcess, type BrokerProcess } from "./support/broker-process.ts";

const cborOut = new Encoder({ useRecords: false, tagUint8Array: false });
const cborIn = new Decoder({ mapsAsObjects: true, useRecords: false });
const enc = new TextEncoder();
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
const NOT_UTF8 = new Uint8Array([0xff, 0x00, 0xc3, 0x28]);
const MAX_REQUEST_BYTES = 65536;

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.each(["bun", "deno"] as const)("HTTP API on %s", (runtime) => {
  let dataDir: string;
  let broker: BrokerProcess;
  let url: string;

  const json = async <T = Record<string, unknown>>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : null) as T };
  };

  const gauge = async (name: string): Promise<number> => {
    const text = await (await fetch(`${url}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(" ")[1]) : NaN;
  };

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), `tributary-e2e-${runtime}-`));
    broker = await startBrokerProcess({ runtime, dataDir, args: ["--http-max-request-bytes", String(MAX_REQUEST_BYTES), "--http-max-wait-ms", "10000"] });
    url = broker.url;
  });
  afterAll(async () => {
    await broker?.kill("SIGKILL");
    await rm(dataDir, { recursive: true, force: true });
  });

  it("is healthy and ready, and serves metrics", async () => {
    expect((await json("GET", "/healthz")).status).toBe(200);
    expect(await json("GET", "/readyz")).toMatchObject({ status: 200, body: { status: "ready" } });
    const res = await fetch(`${url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await res.text()).toContain('tributary_http_requests_total{method="GET",route="/readyz",status="200"} 1');
  });

  it("creates topics and produces and fetches JSON", async () => {
    expect((await json("POST", "/v1/topics", { name: "telemetry", partitions: 2, config: { "retention.ms": 3_600_000 } })).status).toBe(201);
    expect(await json("POST", "/v1/topics", { name: "telemetry" })).toMatchObject({ status: 409, body: { error: { code: "TOPIC_EXISTS" } } });
    const produced = await json<{ offsets: { partition: number; offset: number }[] }>("POST", "/v1/topics/telemetry/records?acks=all", {
      records: [
        { key: "dev-1", value: { temp: 21.5 }, headers: { unit: "C" }, partition: 0 },
        { key: null, valueBase64: b64(NOT_UTF8), partition: 0 },
        { keyBase64: b64(NOT_UTF8), value: null, partition: 1 },
      ],
    });
    expect(produced).toMatchObject({ status: 200, body: { offsets: [{ partition: 0, offset: 0 }, { partition: 0, offset: 1 }, { partition: 1, offset: 0 }] } });
    const got = await json<{ records: Record<string, unknown>[]; nextOffset: number; highWatermark: number }>("GET", "/v1/topics/telemetry/partitions/0/records?offset=0");
    expect(got.status).toBe(200);
    expect(got.body.records).toMatchObject([
      { offset: 0, key: "dev-1", value: { temp: 21.5 }, headers: { unit: "C" } },
      { offset: 1, key: null, valueBase64: b64(NOT_UTF8) },
    ]);
    expect(got.body.nextOffset).toBe(2);
    const p1 = await json<{ records: Record<string, unknown>[] }>("GET", "/v1/topics/telemetry/partitions/1/records");
    expect(p1.body.records).toMatchObject([{ offset: 0, keyBase64: b64(NOT_UTF8), value: null }]);
    const described = await json<{ partitions: { highWatermark: number }[] }>("GET", "/v1/topics/telemetry");
    expect(described.body.partitions.map((p) => p.highWatermark)).toEqual([2, 1]);
    const list = await json<{ topics: { name: string }[] }>("GET", "/v1/topics");
    expect(list.body.topics.map((t) => t.name)).toContain("telemetry");
  });

  it("produces and fetches CBOR", async () => {
    expect((await json("POST", "/v1/topics", { name: "cbor", partitions: 1 })).status).toBe(201);
    const res = await fetch(`${url}/v1/topics/cbor/records`, {
      method: "POST",
      headers: { "content-type": "application/cbor" },
      body: new Uint8Array(cborOut.encode({ records: [{ key: "d", value: { seq: 1, ok: true } }, { key: NOT_UTF8, value: NOT_UTF8 }] })),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/cbor");
    expect(cborIn.decode(new Uint8Array(await res.arrayBuffer()))).toEqual({ offsets: [{ partition: 0, offset: 0 }, { partition: 0, offset: 1 }] });
    const got = await fetch(`${url}/v1/topics/cbor/partitions/0/records?offset=0`, { headers: { accept: "application/cbor" } });
    const body = cborIn.decode(new Uint8Array(await got.arrayBuffer())) as { records: { key: unknown; value: unknown }[] };
    expect(body.records[0]).toMatchObject({ key: "d", value: { seq: 1, ok: true } });
    expect(new Uint8Array(body.records[1]!.key as Uint8Array)).toEqual(NOT_UTF8);
    expect(new Uint8Array(body.records[1]!.value as Uint8Array)).toEqual(NOT_UTF8);
  });

  it("takes a CBOR body of thousands of text records (the runtime must not load cbor-x's native addon)", async () => {
    const records = Array.from({ length: 1500 }, (_, i) => ({ key: `d${i % 50}`, value: { r: `${i}` } }));
    const body = new Uint8Array(cborOut.encode({ records }));
    expect(body.length).toBeLessThan(MAX_REQUEST_BYTES);
    const res = await fetch(`${url}/v1/topics/cbor/records`, { method: "POST", headers: { "content-type": "application/cbor" }, body });
    expect(res.status).toBe(200);
    const { offsets } = cborIn.decode(new Uint8Array(await res.arrayBuffer())) as { offsets: { offset: number }[] };
    expect(offsets.at(-1)!.offset).toBe(2 + 1499);
    const got = await fetch(`${url}/v1/topics/cbor/partitions/0/records?offset=2&maxRecords=1500`, { headers: { accept: "application/cbor" } });
    const fetched = cborIn.decode(new Uint8Array(await got.arrayBuffer())) as { records: { key: string; value: unknown }[] };
    expect(fetched.records).toHaveLength(1500);
    expect(fetched.records[1499]).toMatchObject({ key: "d49", value: { r: "1499" } });
    expect((await json("GET", "/healthz")).status).toBe(200);
  });

  it("answers a long poll when a record arrives, and times out empty otherwise", async () => {
    expect((await json("POST", "/v1/topics", { name: "poll", partitions: 1 })).status).toBe(201);
    const started = Date.now();
    const poll = json<{ records: { value: unknown }[] }>("GET", "/v1/topics/poll/partitions/0/records?offset=0&waitMs=8000");
    await waitFor("the long poll to wait", async () => (await gauge("tributary_http_long_polls_active")) === 1);
    await json("POST", "/v1/topics/poll/records", { records: [{ value: "wake" }] });
    const got = await poll;
    expect(got.body.records.map((r) => r.value)).toEqual(["wake"]);
    expect(Date.now() - started).toBeLessThan(7000);

    const t0 = Date.now();
    const empty = await json<{ records: unknown[]; nextOffset: number }>("GET", "/v1/topics/poll/partitions/0/records?offset=1&waitMs=200");
    expect(empty.body).toMatchObject({ records: [], nextOffset: 1 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
  });

  it("streams records produced after the SSE stream opened", async () => {
    expect((await json("POST", "/v1/topics", { name: "live", partitions: 1 })).status).toBe(201);
    await json("POST", "/v1/topics/live/records", { records: [{ value: "before" }] });
    const abort = new AbortController();
    const res = await fetch(`${url}/v1/topics/live/partitions/0/stream`, { signal: abort.signal, headers: { accept: "text/event-stream" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const events = (): { id: string; data: unknown }[] =>
      text
        .split("\n\n")
        .filter((block) => block.includes("data:"))
        .map((block) => ({
          id: /^id: (.*)$/m.exec(block)?.[1] ?? "",
          data: JSON.parse(block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n")) as unknown,
        }));
    const pump = (async () => {
      for (;;) {
        const { done, value } = await reader.read().catch(() => ({ done: true as const, value: "" }));
        if (done) return;
        text += value;
      }
    })();
    await waitFor("the stream to open", async () => (await gauge("tributary_http_streams_active")) === 1);
    await json("POST", "/v1/topics/live/records", { records: [{ key: "a", value: { n: 1 } }, { key: "b", value: { n: 2 } }] });
    await waitFor("two events", () => text.split("\n\n").filter((b) => b.includes("data:")).length >= 2);
    expect(events()).toEqual([
      { id: "1", data: expect.objectContaining({ offset: 1, key: "a", value: { n: 1 } }) },
      { id: "2", data: expect.objectContaining({ offset: 2, key: "b", value: { n: 2 } }) },
    ]);
    abort.abort();
    await pump;
    await waitFor("the stream slot to be released", async () => (await gauge("tributary_http_streams_active")) === 0);
  });

  it("refuses bad requests with typed errors and keeps serving", async () => {
    const err = (r: { status: number; body: unknown }) => ({ status: r.status, code: (r.body as { error?: { code?: string } } | null)?.error?.code });
    expect(err(await json("GET", "/v1/topics/nope"))).toEqual({ status: 404, code: "TOPIC_NOT_FOUND" });
    expect(err(await json("GET", "/v1/topics/telemetry/partitions/9/records"))).toEqual({ status: 404, code: "PARTITION_NOT_FOUND" });
    expect(err(await json("GET", "/v1/topics/telemetry/partitions/0/records?offset=99"))).toEqual({ status: 416, code: "OFFSET_OUT_OF_RANGE" });
    expect(err(await json("GET", "/v1/topics/telemetry/partitions/zero/records"))).toEqual({ status: 400, code: "INVALID_REQUEST" });
    expect(err(await json("POST", "/v1/topics/telemetry/records", "{not json"))).toEqual({ status: 400, code: "INVALID_REQUEST" });
    expect(err(await json("POST", "/v1/topics/telemetry/records", { records: [{ value: 1 }] }, { "content-type": "text/csv" }))).toEqual({ status: 415, code: "UNSUPPORTED_MEDIA_TYPE" });
    expect(err(await json("GET", "/v1/topics", undefined, { accept: "image/png" }))).toEqual({ status: 406, code: "NOT_ACCEPTABLE" });
    expect(err(await json("POST", "/v1/topics", { name: "bad name" }))).toEqual({ status: 400, code: "INVALID_TOPIC_NAME" });
    expect(err(await json("GET", "/v2/anything"))).toEqual({ status: 404, code: "NOT_FOUND" });

    const oversize = JSON.stringify({ records: [{ value: "x".repeat(MAX_REQUEST_BYTES) }] });
    expect(err(await json("POST", "/v1/topics/telemetry/records", oversize))).toEqual({ status: 413, code: "RECORD_TOO_LARGE" });

    // The same without a Content-Length: a chunked body is cut off once the bytes read pass the limit.
    const chunk = enc.encode("x".repeat(16 * 1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= MAX_REQUEST_BYTES * 3) controller.close();
        else {
          sent += chunk.length;
          controller.enqueue(chunk);
        }
      },
    });
    const res = await fetch(`${url}/v1/topics/telemetry/records`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stream,
      duplex: "half",
    } as RequestInit).catch((e: Error) => e);
    // The server may answer 413 and close before the client finished sending; either way no 2xx/5xx.
    if (res instanceof Response) {
      expect(res.status).toBe(413);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("RECORD_TOO_LARGE");
    }
    expect((await json("GET", "/healthz")).status).toBe(200);
    expect((await json<{ partitions: { highWatermark: number }[] }>("GET", "/v1/topics/telemetry")).body.partitions[0]!.highWatermark).toBe(2);
  });

  it("deletes a topic", async () => {
    expect((await json("POST", "/v1/topics", { name: "doomed", partitions: 1 })).status).toBe(201);
    expect((await fetch(`${url}/v1/topics/doomed`, { method: "DELETE" })).status).toBe(204);
    expect((await json("GET", "/v1/topics/doomed")).status).toBe(404);
  });

  it("keeps the data across a restart on the same data directory", async () => {
    await broker.stop();
    expect(broker.stderrLines().some((l) => l.includes('"msg":"shutting down"'))).toBe(true);
    broker = await startBrokerProcess({ runtime, dataDir });
    url = broker.url;
    const got = await json<{ records: Record<string, unknown>[] }>("GET", "/v1/topics/telemetry/partitions/0/records?offset=0");
    expect(got.body.records).toMatchObject([
      { offset: 0, key: "dev-1", value: { temp: 21.5 } },
      { offset: 1, valueBase64: b64(NOT_UTF8) },
    ]);
    const topics = await json<{ topics: { name: string }[] }>("GET", "/v1/topics");
    expect(topics.body.topics.map((t) => t.name).sort()).toEqual(["cbor", "live", "poll", "telemetry"]);
    const more = await json<{ offsets: { offset: number }[] }>("POST", "/v1/topics/live/records", { records: [{ value: "after restart" }] });
    expect(more.body.offsets[0]!.offset).toBe(3);
  });
});
