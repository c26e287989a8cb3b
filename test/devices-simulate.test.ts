/**
 * The fleet simulator against a real Mosquitto and broker process: its MQTT mode goes through the
 * bridge into the log, its HTTP mode straight to the gateway, its gRPC mode to the gRPC gateway,
 * with CBOR and JSON payloads; and the example gRPC device (devices/grpc-device.ts) as a process.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { decode as decodeCbor } from "cbor-x/decode";
import { runSimulation } from "../devices/simulate.ts";
import { REPO_ROOT, startBrokerProcess, type BrokerProcess } from "./support/broker-process.ts";
import { metricValue, readPartition, startMosquitto, waitFor, writeBridgeConfig, type Mosquitto } from "./support/mosquitto.ts";

let mq: Mosquitto;
let broker: BrokerProcess;
let dir: string;
beforeAll(async () => {
  mq = await startMosquitto({ maxQueuedMessages: 100_000 });
  dir = await mkdtemp(join(tmpdir(), "tributary-sim-"));
  const configPath = await writeBridgeConfig(dir, {
    connections: [{ url: mq.url, clientId: "bridge-sim" }],
    ingress: [{ filter: "devices/+deviceId/telemetry", topic: "telemetry", key: "{deviceId}", validate: "cbor" }],
  });
  broker = await startBrokerProcess({ runtime: "bun", dataDir: join(dir, "data"), args: ["--mqtt-config", configPath] });
  for (const name of ["telemetry", "http-telemetry", "grpc-telemetry", "grpc-device"]) {
    const res = await fetch(`${broker.url}/v1/topics`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name }) });
    expect(res.status).toBe(201);
  }
  await waitFor("the bridge's connection", async () => ((await metricValue(broker.url, "tributary_mqtt_connects_total")) > 0 ? true : undefined));
});
afterAll(async () => {
  await broker?.kill("SIGKILL");
  await mq?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A partition's records with their raw key and value bytes, over HTTP (base64). */
async function readRaw(url: string, topic: string): Promise<{ key: string; value: Buffer; contentType: string | null }[]> {
  const res = await fetch(`${url}/v1/topics/${topic}/partitions/0/records?offset=0&maxRecords=10000&maxBytes=16777216&encoding=base64`);
  expect(res.status).toBe(200);
  const body = (await res.json()) as { records: { keyBase64?: string | null; valueBase64?: string | null; headersBase64?: Record<string, string> }[] };
  return body.records.map((r) => ({
    key: Buffer.from(r.keyBase64 ?? "", "base64").toString("utf8"),
    value: Buffer.from(r.valueBase64 ?? "", "base64"),
    contentType: r.headersBase64?.["content-type"] === undefined ? null : Buffer.from(r.headersBase64["content-type"], "base64").toString("utf8"),
  }));
}

/** Run a devices/ script under Bun to its exit; resolves with its exit code and output. */
function runBun(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(REPO_ROOT, "node_modules/.bin/bun"), args, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("fleet simulator", () => {
  it("MQTT mode: 20 devices x 25 CBOR readings reach the log through the bridge", async () => {
    const stats = await runSimulation({ protocol: "mqtt", url: mq.url, devices: 20, count: 25, rate: 0, format: "cbor", onTick: () => {} });
    expect(stats).toMatchObject({ sent: 500, acked: 500, errors: 0 });
    const records = await waitFor("500 records", async () => {
      const r = await readPartition(broker.url, "telemetry", 0);
      return r.length >= 500 ? r : undefined;
    });
    expect(records).toHaveLength(500);
    const r0 = records[0]!;
    expect(r0.key).toMatch(/^sim-\d+$/);
    expect(await metricValue(broker.url, "tributary_mqtt_invalid_payload_total")).toBe(0);
  });

  it("HTTP mode: 5 devices at a rate, JSON, batches of 4", async () => {
    const stats = await runSimulation({ protocol: "http", url: broker.url, topic: "http-telemetry", devices: 5, count: 20, rate: 200, batch: 4, format: "json", onTick: () => {} });
    expect(stats).toMatchObject({ sent: 100, acked: 100, errors: 0 });
    const records = await readPartition(broker.url, "http-telemetry", 0);
    expect(records).toHaveLength(100);
    expect(JSON.parse(records[0]!.value)).toMatchObject({ deviceId: records[0]!.key, seq: expect.any(Number) });
  });

  it("counts errors instead of stopping", async () => {
    const stats = await runSimulation({ protocol: "http", url: broker.url, topic: "no-such-topic", devices: 2, count: 4, rate: 0, batch: 2, onTick: () => {} });
    expect(stats).toMatchObject({ sent: 8, acked: 0, errors: 8 });
    expect(stats.lastError).toContain("404");
  });

  it("gRPC mode: 10 devices at a rate, CBOR, batches of 5, into the log", async () => {
    const stats = await runSimulation({ protocol: "grpc", url: broker.grpcAddress, topic: "grpc-telemetry", devices: 10, count: 30, rate: 300, batch: 5, format: "cbor", onTick: () => {} });
    expect(stats).toMatchObject({ sent: 300, acked: 300, errors: 0, lastError: null });
    const records = await readRaw(broker.url, "grpc-telemetry");
    expect(records).toHaveLength(300);
    const readings = records.map((r) => ({ key: r.key, contentType: r.contentType, reading: decodeCbor(r.value) as { deviceId: string; seq: number } }));
    for (const r of readings) {
      expect(r.reading.deviceId).toBe(r.key);
      expect(r.contentType).toBe("application/cbor");
    }
    // Every device's 30 readings, each once.
    const seen = new Set(readings.map((r) => `${r.reading.deviceId}/${r.reading.seq}`));
    expect(seen.size).toBe(300);
    for (let d = 0; d < 10; d++) for (let q = 0; q < 30; q++) expect(seen.has(`sim-${d}/${q}`)).toBe(true);
  });

  it("gRPC mode counts refusals as errors (NOT_FOUND topic)", async () => {
    const stats = await runSimulation({ protocol: "grpc", url: broker.grpcAddress, topic: "no-such-topic", devices: 2, count: 4, rate: 0, batch: 2, onTick: () => {} });
    expect(stats).toMatchObject({ sent: 8, acked: 0, errors: 8 });
    expect(stats.lastError).toContain("NOT_FOUND");
  });

  it("the example gRPC device sends --count readings, JSON, and exits 0", async () => {
    const run = await runBun([
      "devices/grpc-device.ts", "--address", broker.grpcAddress, "--topic", "grpc-device", "--device-id", "grpc-dev-7",
      "--count", "23", "--batch", "10", "--interval-ms", "0", "--format", "json",
    ]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("done: 23 readings acknowledged");
    const records = await readRaw(broker.url, "grpc-device");
    expect(records).toHaveLength(23);
    records.forEach((r, i) => {
      expect(r.key).toBe("grpc-dev-7");
      expect(r.contentType).toBe("application/json");
      expect(JSON.parse(r.value.toString("utf8"))).toMatchObject({ deviceId: "grpc-dev-7", seq: i, temperatureC: expect.any(Number) });
    });
  });

  it("the example gRPC device gives up with status 1 on a refusal retrying cannot fix", async () => {
    const run = await runBun(["devices/grpc-device.ts", "--address", broker.grpcAddress, "--topic", "no-such-topic", "--count", "3", "--interval-ms", "0"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("NOT_FOUND");
  });
});
