/**
 * Property-based fuzzing (fast-check) of HTTP request bodies, in JSON and CBOR, through the real
 * Hono app in process (`app.request`), with authentication off and on (the auth middleware reads
 * some bodies itself, and the quota middleware measures them): random bodies, random CBOR, and
 * valid bodies mutated byte by byte. Every reply is a 2xx or a 4xx whose body is
 * `{"error":{"code","message"}}`, never a 5xx; nothing is logged as a failure; no token appears in
 * a reply or a log line; and a valid request afterwards still works.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Decoder, Encoder } from "cbor-x";
import fc from "fast-check";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Broker } from "../src/broker.ts";
import { defaultConfig } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { SecurityGuard } from "../src/security/guard.ts";
import { writeTokenFile } from "../src/security/token-file.ts";
import { EMPTY_TOKEN_FILE, newToken } from "../src/security/tokens.ts";
import { createHttpApp } from "../gateways/http/app.ts";

const cborOut = new Encoder({ useRecords: false, tagUint8Array: false });
const cborIn = new Decoder({ mapsAsObjects: true, useRecords: false });
const enc = new TextEncoder();

/** Routes that read a body, with a valid body for each. */
const ROUTES: { method: string; path: string; valid: unknown }[] = [
  { method: "POST", path: "/v1/topics", valid: { name: "fz-new", partitions: 1, config: { "retention.ms": "60000" } } },
  { method: "POST", path: "/v1/topics/fz/records", valid: { records: [{ key: "k", value: { a: 1 }, headers: { h: "v" }, partition: 0 }] } },
  { method: "POST", path: "/v1/producers", valid: {} },
  { method: "POST", path: "/v1/consumers/fz-g", valid: { name: "c1", "auto.offset.reset": "earliest" } },
  { method: "POST", path: "/v1/consumers/fz-g/instances/c1/subscription", valid: { topics: ["fz"] } },
  { method: "POST", path: "/v1/consumers/fz-g/instances/c1/offsets", valid: { offsets: [{ topic: "fz", partition: 0, offset: 0 }] } },
  { method: "POST", path: "/v1/groups/fz-idle/offsets/reset", valid: { topic: "fz", to: "earliest" } },
];

const jsonArb: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: "small" },
    fc.constantFrom(null, true, 0, -1, 2 ** 53, 1.5, "", "fz", "earliest", "base64", "AAAA"),
    fc.double(),
    fc.string({ maxLength: 10 }),
    fc.array(tie("v"), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom("records", "value", "key", "headers", "partition", "timestamp", "name", "partitions", "topics", "offsets", "topic", "offset", "to", "config", "idempotence", "producerId", "x"), tie("v"), { maxKeys: 4 }),
  ),
})).v;

type Body = { format: "json" | "cbor"; bytes: Uint8Array };
function bodyArb(): fc.Arbitrary<{ route: number; body: Body }> {
  const route = fc.nat({ max: ROUTES.length - 1 });
  const randomJson = fc.tuple(route, jsonArb).map(([r, v]) => ({ route: r, body: { format: "json" as const, bytes: enc.encode(JSON.stringify(v) ?? "null") } }));
  const randomCbor = fc.tuple(route, jsonArb).map(([r, v]) => ({ route: r, body: { format: "cbor" as const, bytes: new Uint8Array(cborOut.encode(v)) } }));
  const randomBytes = fc.tuple(route, fc.constantFrom("json" as const, "cbor" as const), fc.uint8Array({ maxLength: 64 })).map(([r, format, bytes]) => ({ route: r, body: { format, bytes } }));
  const mutated = fc
    .tuple(route, fc.constantFrom("json" as const, "cbor" as const), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat())
    .map(([r, format, edits, cut]) => {
      const valid = ROUTES[r]!.valid;
      const b = format === "json" ? enc.encode(JSON.stringify(valid)) : new Uint8Array(cborOut.encode(valid));
      for (const [at, v] of edits) if (b.length > 0) b[at % b.length] = v;
      return { route: r, body: { format, bytes: cut % 4 === 0 ? b.subarray(0, cut % (b.length + 1)) : b } };
    });
  return fc.oneof(randomJson, randomCbor, randomBytes, mutated);
}

interface Setup {
  dir: string;
  broker: Broker;
  app: Hono;
  logs: string[];
  token?: string;
}

async function open(auth: boolean): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-fuzz-http-"));
  const logs: string[] = [];
  const logger = createLogger("info", (l) => logs.push(l));
  const broker = await Broker.open(defaultConfig({ "data.dir": join(dir, "data") }), { logger });
  let guard: SecurityGuard | undefined;
  let token: string | undefined;
  if (auth) {
    const made = await newToken("fuzzer", Date.now());
    token = made.token;
    await writeTokenFile(join(dir, "tokens.json"), { ...EMPTY_TOKEN_FILE, tokens: [made.entry] });
    await writeFile(
      join(dir, "acl.json"),
      JSON.stringify({ acls: [{ principal: "fuzzer", resource: "*", operations: ["admin"] }], quotas: [{ principal: "*", produceBytesPerSec: 1e9, requestsPerSec: 1e9, maxStreams: 4 }] }),
    );
    guard = await SecurityGuard.open({ tokensFile: join(dir, "tokens.json"), aclFile: join(dir, "acl.json"), metrics: broker.metrics, logger });
  }
  const app = createHttpApp(broker, { maxRequestBytes: 64 * 1024, maxWaitMs: 100, maxLongPolls: 4, maxStreams: 4, logger, ...(guard ? { guard } : {}) });
  const s: Setup = { dir, broker, app, logs, ...(token ? { token } : {}) };
  expect((await send(s, "POST", "/v1/topics", { format: "json", bytes: enc.encode(JSON.stringify({ name: "fz", partitions: 2 })) })).status).toBe(201);
  return s;
}

async function send(s: Setup, method: string, path: string, body: Body): Promise<Response> {
  const headers: Record<string, string> = { "content-type": `application/${body.format}`, accept: `application/${body.format}` };
  if (s.token) headers.authorization = `Bearer ${s.token}`;
  return s.app.request(path, { method, body: body.bytes as BodyInit, headers });
}

async function checkReply(s: Setup, res: Response, format: "json" | "cbor"): Promise<void> {
  const raw = new Uint8Array(await res.arrayBuffer());
  expect(res.status, new TextDecoder().decode(raw)).toBeLessThan(500);
  if (s.token) expect(new TextDecoder().decode(raw)).not.toContain(s.token);
  if (res.status < 400) return;
  const type = res.headers.get("content-type") ?? "";
  const body = (type.includes("cbor") ? cborIn.decode(raw) : JSON.parse(new TextDecoder().decode(raw))) as { error?: { code?: unknown; message?: unknown } };
  expect(typeof body.error?.code, `${format} ${res.status}`).toBe("string");
  expect(typeof body.error?.message).toBe("string");
}

describe.each([false, true])("HTTP bodies (authentication %s)", (auth) => {
  let s: Setup;
  beforeAll(async () => {
    s = await open(auth);
  }, 30_000);
  afterAll(async () => {
    await s?.broker.close();
    if (s) await rm(s.dir, { recursive: true, force: true });
  });

  it("random, CBOR and mutated bodies on every body-reading route: 2xx or 4xx with an error body, never 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(bodyArb(), async ({ route, body }) => {
        const r = ROUTES[route]!;
        await checkReply(s, await send(s, r.method, r.path, body), body.format);
      }),
      { numRuns: 1500 },
    );
    expect(s.logs.filter((l) => l.includes('"level":"error"'))).toEqual([]);
    if (s.token) for (const l of s.logs) expect(l).not.toContain(s.token);
  }, 60_000);

  it("a valid produce and fetch still work afterwards", async () => {
    const res = await send(s, "POST", "/v1/topics/fz/records", { format: "json", bytes: enc.encode(JSON.stringify({ records: [{ value: "after", partition: 1 }] })) });
    expect(res.status).toBe(200);
    const headers: Record<string, string> = s.token ? { authorization: `Bearer ${s.token}` } : {};
    const fetched = await s.app.request("/v1/topics/fz/partitions/1/records?offset=0&maxRecords=1000", { headers });
    expect(fetched.status).toBe(200);
    const records = ((await fetched.json()) as { records: { value: unknown }[] }).records;
    expect(records.at(-1)?.value).toBe("after");
  });
});
