/**
 * Quotas: the token buckets as tables on a ManualClock, the `quotas` section of the ACL file, and
 * a Bun broker with authentication on where a noisy principal over its produce rate is throttled
 * (replies delayed, `X-Throttle-Ms` / `tributary-throttle-ms` present, measured rate close to the
 * quota) while a quiet principal's requests in the same period keep their latency.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isTributaryError } from "../src/errors.ts";
import { Metrics } from "../src/metrics.ts";
import { ManualClock } from "../src/runtime/clock.ts";
import { parseAcl } from "../src/security/acl.ts";
import { parseQuotas, QuotaBuckets, QuotaEnforcer, type QuotaRule } from "../src/security/quotas.ts";
import { startBrokerProcess, type BrokerProcess } from "./support/broker-process.ts";
import { TributaryClient } from "./support/grpc-client.ts";
import { createToken } from "./support/tokens.ts";

const RULES: QuotaRule[] = [
  { principal: "*", requestsPerSec: 10, maxStreams: 2 },
  { principal: "noisy", produceBytesPerSec: 1000, fetchBytesPerSec: 500 },
];

describe("quota buckets", () => {
  it("a burst of one second's worth passes, then the debt is the delay", () => {
    const clock = new ManualClock();
    const q = new QuotaBuckets(() => RULES);
    const t0 = clock.now();
    expect(q.charge("noisy", "produce", 1000, t0)).toBe(0); // the burst
    expect(q.charge("noisy", "produce", 500, t0)).toBe(500); // 500 B in debt at 1000 B/s
    expect(q.charge("noisy", "produce", 500, t0)).toBe(1000);
    clock.advance(1000); // 1000 B refilled: 0 left
    expect(q.charge("noisy", "produce", 1, clock.now())).toBe(1);
    clock.advance(10_000); // refills only up to the burst
    expect(q.charge("noisy", "produce", 1000, clock.now())).toBe(0);
    expect(q.charge("noisy", "produce", 100, clock.now())).toBe(100);
  });

  it.each<[string, string, "produce" | "fetch" | "request", number, number]>([
    ["own rule: produce limited", "noisy", "produce", 3000, 2000],
    ["own rule: fetch limited at its own rate", "noisy", "fetch", 1500, 2000],
    ["own rule replaces *: requests unlimited", "noisy", "request", 1000, 0],
    ["* rule: requests limited", "quiet", "request", 20, 1000],
    ["* rule: produce unlimited", "quiet", "produce", 1 << 30, 0],
    ["zero and negative amounts are free", "noisy", "produce", 0, 0],
  ])("%s", (_what, principal, kind, amount, expected) => {
    const q = new QuotaBuckets(() => RULES);
    expect(q.charge(principal, kind, amount, 0)).toBe(expected);
  });

  it("no rules: nothing is limited", () => {
    const q = new QuotaBuckets(() => []);
    expect(q.charge("x", "produce", 1e12, 0)).toBe(0);
    expect(q.size).toBe(0);
  });

  it("a single delay is capped, and the debt with it", () => {
    const q = new QuotaBuckets(() => RULES, { maxDelayMs: 2000 });
    expect(q.charge("noisy", "produce", 1_000_000, 0)).toBe(2000);
    expect(q.charge("noisy", "produce", 1_000_000, 0)).toBe(2000);
    expect(q.charge("noisy", "produce", 1, 2000)).toBe(1);
  });

  it("keeps buckets for at most maxPrincipals, forgetting the least recently charged", () => {
    const q = new QuotaBuckets(() => [{ principal: "*", requestsPerSec: 1 }], { maxPrincipals: 3 });
    for (const p of ["a", "b", "c"]) expect(q.charge(p, "request", 1, 0)).toBe(0);
    expect(q.charge("a", "request", 1, 0)).toBe(1000); // a is now most recent
    expect(q.charge("d", "request", 1, 0)).toBe(0); // evicts b
    expect(q.size).toBe(3);
    expect(q.charge("a", "request", 1, 0)).toBe(2000); // a kept its debt
    expect(q.charge("b", "request", 1, 0)).toBe(0); // b was forgotten (evicts c)
    for (let i = 0; i < 1000; i++) q.charge(`p${i}`, "request", 1, 0);
    expect(q.size).toBe(3);
  });

  it("counts open streams per principal and refuses past maxStreams with OVERLOADED", () => {
    const q = new QuotaBuckets(() => RULES);
    const r1 = q.openStream("quiet");
    const r2 = q.openStream("quiet");
    let err: unknown;
    try {
      q.openStream("quiet");
    } catch (e) {
      err = e;
    }
    expect(isTributaryError(err) && err.code).toBe("OVERLOADED");
    expect(String((err as Error).message)).toMatch(/maxStreams 2/);
    expect(q.openStream("other")).toBeTypeOf("function"); // another principal's count is its own
    r1();
    r1(); // twice is once
    expect(q.openStreams("quiet")).toBe(1);
    q.openStream("quiet");
    r2();
    expect(q.openStreams("noisy")).toBe(0);
    for (let i = 0; i < 100; i++) q.openStream("noisy"); // no maxStreams in its own rule
  });

  it("the enforcer waits the delay on its clock and counts throttled seconds by listener and kind", async () => {
    const clock = new ManualClock();
    const metrics = new Metrics();
    const q = new QuotaEnforcer(() => RULES, metrics, clock);
    expect(await q.throttle("http", "noisy", [["request", 1], ["produce", 1000]])).toBe(0);
    let done: number | null = null;
    void q.throttle("http", "noisy", [["request", 1], ["produce", 250]]).then((d) => (done = d));
    await Promise.resolve();
    clock.advance(249);
    await Promise.resolve();
    expect(done).toBeNull();
    clock.advance(1);
    await new Promise((r) => setTimeout(r, 0));
    expect(done).toBe(250);
    expect(metrics.render()).toContain('tributary_quota_throttle_seconds_total{listener="http",kind="produce"} 0.25');
    // An aborted wait ends at once.
    const ac = new AbortController();
    const p = q.throttle("grpc", "noisy", [["produce", 5000]], ac.signal);
    ac.abort();
    expect(await p).toBeGreaterThan(0);
  });
});

describe("the quotas section of the ACL file", () => {
  it("parses beside the ACLs; absent means none", () => {
    expect(parseAcl({ acls: [] }).quotas).toBeUndefined();
    const acl = parseAcl({ acls: [], quotas: [{ principal: "*", requestsPerSec: 5.5, maxStreams: 3 }] });
    expect(acl.quotas).toEqual([{ principal: "*", requestsPerSec: 5.5, maxStreams: 3 }]);
  });

  it.each<[unknown, RegExp]>([
    [{}, /quotas must be a list/],
    [[1], /quotas\[0\] must be an object/],
    [[{ requestsPerSec: 1 }], /principal must be a non-empty string/],
    [[{ principal: "" }], /principal must be a non-empty string/],
    [[{ principal: "a", bytesPerSec: 1 }], /unknown field bytesPerSec/],
    [[{ principal: "a", requestsPerSec: 0 }], /requestsPerSec must be a positive number/],
    [[{ principal: "a", produceBytesPerSec: -1 }], /produceBytesPerSec must be a positive number/],
    [[{ principal: "a", fetchBytesPerSec: "100" }], /fetchBytesPerSec must be a positive number/],
    [[{ principal: "a", fetchBytesPerSec: Infinity }], /fetchBytesPerSec must be a positive number/],
    [[{ principal: "a", maxStreams: 1.5 }], /maxStreams must be a positive integer/],
    [[{ principal: "a" }, { principal: "a" }], /quotas\[1\]: a second rule for principal a/],
  ])("%j -> INVALID_CONFIG %s", (quotas, message) => {
    for (const parse of [() => parseQuotas(quotas), () => parseAcl({ acls: [], quotas })]) {
      let err: unknown;
      try {
        parse();
      } catch (e) {
        err = e;
      }
      expect(isTributaryError(err) && err.code).toBe("INVALID_CONFIG");
      expect((err as Error).message).toMatch(message);
    }
  });
});


const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe("quotas on a Bun broker with authentication on", () => {
  // Bytes per second: each 8 KB request of the noisy principal is held about 400 ms, far above what a
  // busy machine adds to the quiet one's requests.
  const NOISY_RATE = 20_000;
  const BODY_VALUE = "x".repeat(7_900);
  let dir: string;
  let broker: BrokerProcess;
  let grpc: TributaryClient;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tributary-quotas-"));
    const tokensFile = join(dir, "tokens.json");
    const aclFile = join(dir, "acl.json");
    await writeFile(
      aclFile,
      JSON.stringify({
        acls: [
          { principal: "*", resource: "topic:q-*", operations: ["produce", "consume", "create", "describe"] },
          { principal: "ops", resource: "cluster", operations: ["describe"] },
        ],
        quotas: [
          { principal: "noisy", produceBytesPerSec: NOISY_RATE, maxStreams: 1 },
          { principal: "quiet", produceBytesPerSec: 10_000_000 },
        ],
      }),
    );
    for (const name of ["noisy", "quiet", "ops"]) tokens[name] = createToken(tokensFile, name);
    broker = await startBrokerProcess({ runtime: "bun", dataDir: join(dir, "data"), args: ["--auth-tokens-file", tokensFile, "--auth-acl-file", aclFile] });
    grpc = new TributaryClient(broker.grpcAddress);
    const created = await http("/v1/topics", "quiet", { method: "POST", body: JSON.stringify({ name: "q-t", partitions: 2 }) });
    expect(created.status).toBe(201);
  }, 120_000);

  afterAll(async () => {
    grpc?.close();
    await broker?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const http = (path: string, who: string, init: RequestInit = {}) =>
    fetch(`${broker.url}${path}`, { ...init, headers: { "content-type": "application/json", authorization: `Bearer ${tokens[who]}`, ...(init.headers as Record<string, string>) } });

  it("throttles the noisy producer to its rate while the quiet one keeps its latency", async () => {
    const body = JSON.stringify({ records: [{ value: BODY_VALUE }] });
    const size = new TextEncoder().encode(body).byteLength;
    const noisy: { ms: number; end: number; throttle: string | null }[] = [];
    const quiet: number[] = [];
    let noisyDone = false;
    const start = performance.now();
    const noisyLoop = (async () => {
      // 1 s of burst, then about 2.5 s held to the rate.
      const n = Math.ceil((NOISY_RATE * 3.5) / size);
      for (let i = 0; i < n; i++) {
        const t = performance.now();
        const res = await http("/v1/topics/q-t/records", "noisy", { method: "POST", body });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
        noisy.push({ ms: performance.now() - t, end: performance.now(), throttle: res.headers.get("x-throttle-ms") });
      }
      noisyDone = true;
    })();
    const quietLoop = (async () => {
      while (!noisyDone) {
        const t = performance.now();
        const res = await http("/v1/topics/q-t/records", "quiet", { method: "POST", body });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
        expect(res.headers.get("x-throttle-ms")).toBeNull();
        quiet.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await Promise.all([noisyLoop, quietLoop]);
    const elapsedS = (performance.now() - start) / 1000;

    const throttled = noisy.filter((r) => r.throttle !== null);
    expect(throttled.length).toBeGreaterThan(noisy.length / 2);
    for (const r of throttled) expect(Number(r.throttle)).toBeGreaterThan(0);
    // Measured rate past the burst: bytes after the first second's worth, over the time they took.
    const burst = Math.floor(NOISY_RATE / size);
    const rest = noisy.slice(burst);
    const restS = (rest.at(-1)!.end - noisy[burst - 1]!.end) / 1000;
    const rate = (rest.length * size) / restS;
    expect(rate).toBeGreaterThan(NOISY_RATE * 0.6);
    expect(rate).toBeLessThan(NOISY_RATE * 1.4);
    expect(elapsedS).toBeGreaterThan(2);
    // The quiet principal, in the same period: many requests, each fast.
    expect(quiet.length).toBeGreaterThan(10);
    const quietMedian = median(quiet);
    const noisyMedian = median(throttled.map((r) => r.ms));
    if (process.env.QUOTA_NUMBERS) console.info({ rate, quietMedian, noisyMedian, quietN: quiet.length, noisyN: noisy.length, throttled: throttled.length, elapsedS });
    expect(quietMedian * 4).toBeLessThan(noisyMedian);
    expect(quietMedian).toBeLessThan(100);
  }, 60_000);

  it("gRPC: a throttled Produce carries the tributary-throttle-ms trailer", async () => {
    const meta = new Metadata();
    meta.set("authorization", `Bearer ${tokens.noisy}`);
    const trailers: string[] = [];
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve, reject) => {
        const call = grpc.client.makeUnaryRequest(
          "/tributary.v1.ProducerService/Produce",
          (b: Buffer) => b,
          (b: Buffer) => b,
          produceBytes(20_000),
          meta,
          (err) => (err ? reject(err) : resolve()),
        );
        call.on("status", (s) => {
          const v = s.metadata.get("tributary-throttle-ms")[0];
          if (v !== undefined) trailers.push(String(v));
        });
      });
    }
    expect(trailers.length).toBeGreaterThan(0);
    expect(Number(trailers[0])).toBeGreaterThan(0);
  }, 30_000);

  it("refuses a second open stream of the same principal with 503 OVERLOADED; another principal's is its own", async () => {
    const ac = new AbortController();
    const first = await http("/v1/topics/q-t/partitions/0/stream", "noisy", { signal: ac.signal });
    expect(first.status).toBe(200);
    const second = await http("/v1/topics/q-t/partitions/0/stream", "noisy");
    expect(second.status).toBe(503);
    expect(((await second.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: "OVERLOADED", message: expect.stringMatching(/maxStreams 1/) });
    const other = await http("/v1/topics/q-t/partitions/0/records?offset=0&maxRecords=1", "quiet");
    expect(other.status).toBe(200);
    ac.abort();
    await first.body?.cancel().catch(() => {});
    // The stream's slot comes back once it is closed.
    const end = Date.now() + 10_000;
    for (;;) {
      const again = await http("/v1/topics/q-t/partitions/0/records?offset=0&maxRecords=1&waitMs=1", "noisy");
      if (again.status === 200) break;
      expect(Date.now()).toBeLessThan(end);
      await new Promise((r) => setTimeout(r, 50));
    }
  }, 30_000);

  it("counts throttled time by listener and kind, with no principal label, and never shows a token", async () => {
    const metrics = await (await http("/metrics", "ops")).text();
    expect(metrics).toMatch(/tributary_quota_throttle_seconds_total\{listener="http",kind="produce"\} [0-9.]+/);
    expect(metrics).toMatch(/tributary_quota_throttle_seconds_total\{listener="grpc",kind="produce"\} [0-9.]+/);
    expect(metrics).not.toMatch(/tributary_quota_[^\n]*noisy/);
    const stderr = broker.stderrLines().join("\n");
    for (const token of Object.values(tokens)) {
      const secret = token.slice("trb_".length + 16 + 1);
      for (const text of [metrics, stderr]) {
        expect(text).not.toContain(token);
        expect(text).not.toContain(secret);
      }
    }
  });
});

/** A ProduceRequest by hand: topic "q-t" (field 1), one record (field 2) whose value (field 2) has `n` bytes. */
function produceBytes(n: number): Buffer {
  const varint = (v: number): number[] => {
    const out: number[] = [];
    while (v > 0x7f) {
      out.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    out.push(v);
    return out;
  };
  const value = [0x12, ...varint(n), ...new Array<number>(n).fill(0x61)];
  const record = [0x12, ...varint(value.length), ...value];
  const topic = [0x0a, 3, ...Buffer.from("q-t")];
  return Buffer.from([...topic, ...record]);
}
