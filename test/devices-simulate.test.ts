/**
 * The fleet simulator against a real Mosquitto and broker process: its MQTT mode goes through the
 * bridge into the log, its HTTP mode straight to the gateway, with CBOR and JSON payloads.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runSimulation } from "../devices/simulate.ts";
import { startBrokerProcess, type BrokerProcess } from "./support/broker-process.ts";
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
  for (const name of ["telemetry", "http-telemetry"]) {
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
});
