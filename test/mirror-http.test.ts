/**
 * The edge's mirror on a real Broker (temp dir, system clock) through brokerMirrorHost: records
 * produced go to the in-memory central (mem-sink.ts, standing in for the central cluster), the
 * checkpoint topic is created as an internal topic and replayed by a restarted broker, and
 * `GET /v1/mirror` and gRPC `AdminService.DescribeMirror` show links and per-partition lag; pause
 * and resume over HTTP; 404 / NOT_FOUND without a mirror; ACLs guard it like /v1/cluster.
 */
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { status as grpcStatus } from "@grpc/grpc-js";
import { connect, unary } from "../gateways/grpc/client.ts";
import { AdminService } from "../gateways/grpc/gen/tributary/v1/admin_pb.ts";
import { startGrpcGateway } from "../gateways/grpc/index.ts";
import { createHttpApp } from "../gateways/http/app.ts";
import { requiredChecks } from "../gateways/http/auth.ts";
import { Broker } from "../src/broker.ts";
import { CLUSTER } from "../src/security/guard.ts";
import { defaultConfig } from "../src/config.ts";
import { silentLogger } from "../src/logger.ts";
import { brokerMirrorHost } from "../src/mirror/broker-host.ts";
import { CHECKPOINTS_TOPIC } from "../src/mirror/checkpoints.ts";
import { parseMirrorConfig } from "../src/mirror/config.ts";
import { MirrorEdge, type MirrorStatus } from "../src/mirror/edge.ts";
import { MemCentral } from "../src/mirror/mem-sink.ts";
import { systemClock } from "../src/runtime/clock.ts";
import { REPO_ROOT } from "./support/broker-process.ts";
import { rng } from "./support/random.ts";
import { waitFor } from "./support/wait.ts";

const enc = new TextEncoder();
const LIMITS = { maxRequestBytes: 64 * 1024, maxWaitMs: 5000, maxLongPolls: 2, maxStreams: 2, logger: silentLogger };
const CONFIG = { links: [{ name: "to-dc", central: { address: "dc:8481" }, topics: { include: ["telemetry"] }, uplink: { bytesPerSecond: 10_000_000 } }] };

let dir: string;
let broker: Broker;
let edge: MirrorEdge;
let central: MemCentral;

async function open(): Promise<void> {
  broker = await Broker.open(defaultConfig({ "data.dir": dir }), { logger: silentLogger });
  edge = new MirrorEdge({
    clusterId: "site7",
    config: parseMirrorConfig(CONFIG, "site7"),
    host: brokerMirrorHost(broker),
    sinkFor: () => central.connect(),
    clock: systemClock,
    random: rng(1),
    logger: silentLogger,
    metrics: broker.metrics,
    checkpointIntervalMs: 50,
  });
  await edge.start();
}

async function close(): Promise<void> {
  await edge.stop();
  await broker.close();
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tributary-mirror-"));
  central = new MemCentral();
  await open();
});
afterEach(async () => {
  await close();
  await rm(dir, { recursive: true, force: true });
});

describe("mirror on a broker", () => {
  it("mirrors produced records, keeps checkpoints in an internal topic, and a restarted broker resumes from them", async () => {
    await broker.createTopic("telemetry", 2);
    await broker.createTopic("other", 1);
    for (let i = 0; i < 20; i++) await broker.produce("telemetry", [{ key: null, value: enc.encode(`v${i}`), partition: i % 2 }]);
    await waitFor("both partitions at the central", () => central.position("site7.telemetry", 0) === 10 && central.position("site7.telemetry", 1) === 10);
    expect(central.records("site7.telemetry", 0).map((r) => new TextDecoder().decode(r.record.value!))).toEqual(Array.from({ length: 10 }, (_, i) => `v${i * 2}`));
    expect(central.position("site7.other", 0)).toBeNull();
    expect(broker.listTopics({ includeInternal: true }).map((t) => t.name)).toContain(CHECKPOINTS_TOPIC);
    await expect(broker.produce(CHECKPOINTS_TOPIC, [{ key: null, value: null }])).rejects.toThrow(/internal/);

    await close();
    const sends = central.sendsAnswered;
    await open();
    await waitFor("the link connected again", () => edge.status().links[0]!.state === "connected" && edge.status().links[0]!.partitions.length === 2);
    expect(edge.status().links[0]!.partitions.map((p) => p.notes)).toEqual([[], []]);
    expect(central.sendsAnswered).toBe(sends);
    await broker.produce("telemetry", [{ key: null, value: enc.encode("after"), partition: 0 }]);
    await waitFor("the new record at the central", () => central.position("site7.telemetry", 0) === 11);
  });

  it("GET /v1/mirror shows the links, POST pauses and resumes one; 404 without a mirror", async () => {
    await broker.createTopic("telemetry", 1);
    const app = createHttpApp(broker, { ...LIMITS, mirror: edge });
    await broker.produce("telemetry", [{ key: null, value: enc.encode("x") }]);
    await waitFor("mirrored", () => central.position("site7.telemetry", 0) === 1);
    const res = await app.request("/v1/mirror");
    expect(res.status).toBe(200);
    const body = (await res.json()) as MirrorStatus;
    expect(body.cluster).toBe("site7");
    expect(body.leading).toBe(true);
    expect(body.links[0]).toMatchObject({ name: "to-dc", state: "connected", summary: { lagRecords: 0 } });
    expect(body.links[0]!.partitions[0]).toMatchObject({ topic: "telemetry", partition: 0, target: "site7.telemetry", state: "sending", lag: { position: 1, lagRecords: 0, lagBytes: 0, stalled: false } });
    expect(body.links[0]!.partitions[0]!.lag!.lastAdvanceMs).toBeGreaterThan(0);

    expect((await app.request("/v1/mirror/links/to-dc/pause", { method: "POST" })).status).toBe(204);
    expect(((await (await app.request("/v1/mirror")).json()) as MirrorStatus).links[0]!.state).toBe("paused");
    expect((await app.request("/v1/mirror/links/nope/pause", { method: "POST" })).status).toBe(400);
    expect((await app.request("/v1/mirror/links/to-dc/resume", { method: "POST" })).status).toBe(204);
    await waitFor("connected again", async () => ((await (await app.request("/v1/mirror")).json()) as MirrorStatus).links[0]!.state === "connected");

    const metrics = await (await app.request("/metrics")).text();
    expect(metrics).toContain('tributary_mirror_lag_records{link="to-dc",topic="telemetry",partition="0"} 0');

    const plain = createHttpApp(broker, LIMITS);
    expect((await plain.request("/v1/mirror")).status).toBe(404);
  });

  it("gRPC AdminService.DescribeMirror shows the same status; NOT_FOUND without a mirror", async () => {
    await broker.createTopic("telemetry", 1);
    const gateway = await startGrpcGateway(broker, { host: "127.0.0.1", port: 0, maxMessageBytes: 1 << 20, streamMaxInflight: 8, logger: silentLogger, mirror: edge });
    const plainGateway = await startGrpcGateway(broker, { host: "127.0.0.1", port: 0, maxMessageBytes: 1 << 20, streamMaxInflight: 8, logger: silentLogger });
    const client = connect(`127.0.0.1:${gateway.port}`);
    const plain = connect(`127.0.0.1:${plainGateway.port}`);
    try {
      await broker.produce("telemetry", [{ key: null, value: enc.encode("x") }, { key: null, value: enc.encode("y") }]);
      await waitFor("mirrored", () => central.position("site7.telemetry", 0) === 2);
      const s = await waitFor("the status shows the position", async () => {
        const r = await unary(client, AdminService.method.describeMirror, {});
        return r.links[0]?.partitions[0]?.position === 2n ? r : undefined;
      });
      expect(s.cluster).toBe("site7");
      expect(s.leading).toBe(true);
      expect(s.links[0]).toMatchObject({ name: "to-dc", state: "connected", lagRecords: 0n, stalledPartitions: 0 });
      expect(s.links[0]!.partitions[0]).toMatchObject({ topic: "telemetry", partition: 0, target: "site7.telemetry", state: "sending", highWatermark: 2n, lagRecords: 0n, lagBytes: 0n, stalled: false });
      expect(s.links[0]!.partitions[0]!.lastAdvanceMs).toBeGreaterThan(0n);
      await expect(unary(plain, AdminService.method.describeMirror, {})).rejects.toMatchObject({ code: grpcStatus.NOT_FOUND });
    } finally {
      client.close();
      plain.close();
      await gateway.stop();
      await plainGateway.stop();
    }
  });

  it("needs describe on the cluster to read it and admin to pause", async () => {
    expect(await requiredChecks(new Request("http://h/v1/mirror"), "/v1/mirror", 1024)).toEqual([{ operation: "describe", resource: CLUSTER }]);
    expect(await requiredChecks(new Request("http://h/v1/mirror/links/a/pause", { method: "POST" }), "/v1/mirror/links/a/pause", 1024)).toEqual([{ operation: "admin", resource: CLUSTER }]);
  });

  it("tributary mirror status prints each link and partition (and --json the whole status)", async () => {
    await broker.createTopic("telemetry", 1);
    await broker.produce("telemetry", [{ key: null, value: enc.encode("x") }]);
    await waitFor("mirrored", () => central.position("site7.telemetry", 0) === 1);
    await edge.checkpoints.recordDropped("telemetry", 0, [{ from: 0, to: 0 + 1, reason: "retention" }]);
    // The HTTP gateway in a plain Node server, so the CLI (a Bun process) can reach it.
    const app = createHttpApp(broker, { ...LIMITS, mirror: edge });
    const server = createServer(async (req, res) => {
      const r = await app.request(req.url!, { method: req.method! });
      res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "text/plain" });
      res.end(Buffer.from(await r.arrayBuffer()));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      // Not spawnSync: the gateway answering it runs in this process.
      const cli = (args: string[]) =>
        new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
          const child = spawn(join(REPO_ROOT, "node_modules/.bin/bun"), ["bin/tributary", ...args, "--url", url], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
          let stdout = "";
          let stderr = "";
          child.stdout.on("data", (b: Buffer) => (stdout += b.toString("utf8")));
          child.stderr.on("data", (b: Buffer) => (stderr += b.toString("utf8")));
          child.once("error", reject);
          child.once("close", (status) => resolve({ status, stdout, stderr }));
        });
      const text = await cli(["mirror", "status"]);
      expect(text.status, text.stderr).toBe(0);
      expect(text.stdout).toContain("edge cluster site7; links run on this peer");
      expect(text.stdout).toMatch(/link to-dc: connected, lag 0 records/);
      expect(text.stdout).toMatch(/telemetry\t0\tsite7\.telemetry\tsending\t1\t0\t0\t0\.0\t\d{4}-/);
      expect(text.stdout).toContain("dropped telemetry/0: 1 offsets in [0, 1) retention");
      const json = await cli(["mirror", "status", "--json"]);
      expect((JSON.parse(json.stdout) as MirrorStatus).links[0]!.name).toBe("to-dc");
      const paused = await cli(["mirror", "pause", "to-dc"]);
      expect(paused.stdout).toContain("paused mirror link to-dc");
      expect(edge.status().links[0]!.state).toBe("paused");
      expect((await cli(["mirror", "bogus"])).status).toBe(2);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
