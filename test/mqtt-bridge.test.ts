/**
 * The MQTT bridge end to end with a real Mosquitto and a real broker process (Bun; one case on
 * Deno): device -> Mosquitto -> bridge -> log -> consumer, egress back to a device, dropped
 * messages counted and not fatal, a bad config file refused at start-up; with authentication on,
 * the bridge's principal over its produce quota is slowed to the rate (its window fills and it
 * stops reading) without losing or reordering a message.
 */
import { describe, expect, it } from "vitest";
import mqtt, { type MqttClient } from "mqtt";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { egressGroupId } from "../gateways/mqtt/egress.ts";
import { startBrokerProcess, type Runtime } from "./support/broker-process.ts";
import { metricValue, readPartition, startMosquitto, waitFor, writeBridgeConfig, type Mosquitto, mqttTestResources } from "./support/mosquitto.ts";
import { createToken } from "./support/tokens.ts";

const { brokers, mosquittos, clients, dirs } = mqttTestResources();


async function createTopic(url: string, name: string, partitions = 1): Promise<void> {
  const res = await fetch(`${url}/v1/topics`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name, partitions }) });
  expect(res.status).toBe(201);
}

async function setup(runtime: Runtime, bridge: (mq: Mosquitto) => unknown) {
  const mq = await startMosquitto({ maxQueuedMessages: 100_000 });
  mosquittos.push(mq);
  const dir = await mkdtemp(join(tmpdir(), "tributary-mqtt-"));
  dirs.push(dir);
  const configPath = await writeBridgeConfig(dir, bridge(mq));
  const broker = await startBrokerProcess({ runtime, dataDir: join(dir, "data"), args: ["--mqtt-config", configPath] });
  brokers.push(broker);
  return { mq, dir, broker, configPath };
}

async function device(url: string, options: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, ...options });
  clients.push(c);
  return c;
}

describe.each(["bun", "deno"] as const)("MQTT bridge on %s", (runtime) => {
  it("carries device telemetry into the log with key and headers, counts what it drops, and publishes commands back", async () => {
    const { mq, broker } = await setup(runtime, (mq) => ({
      connections: [{ name: "local", url: mq.url, clientId: `bridge-${runtime}`, subscribe: [{ filter: "devices/#", qos: 1 }] }],
      ingress: [
        { filter: "devices/+deviceId/telemetry", qos: 1, topic: "telemetry", key: "{deviceId}", validate: "json", headers: { gateway: "gw-1" } },
        { filter: "devices/{deviceId}/events", qos: 2, topic: "events", key: "{deviceId}" },
      ],
      egress: [{ topic: "commands", mqttTopic: "devices/{key}/commands", qos: 1 }],
    }));
    await createTopic(broker.url, "telemetry", 2);
    await createTopic(broker.url, "events");
    await createTopic(broker.url, "commands");
    await waitFor("the bridge's connection", async () => ((await metricValue(broker.url, "tributary_mqtt_connects_total")) > 0 ? true : undefined));

    const v5 = await device(mq.url);
    const v4 = await device(mq.url, { protocolVersion: 4 });
    const sent: string[] = [];
    await Promise.all(Array.from({ length: 200 }, (_, i) => {
      const id = `d${i % 4}`;
      const body = JSON.stringify({ deviceId: id, seq: i, temp: 20 + i / 10 });
      sent.push(body);
      return (i % 2 ? v4 : v5).publishAsync(`devices/${id}/telemetry`, body, { qos: 1, ...(i % 2 ? {} : { properties: { userProperties: { unit: "C" } } }) });
    }));
    await v5.publishAsync("devices/d9/events", "\u0001binary-ish", { qos: 2 });
    // Not JSON, and a topic no rule maps: both acknowledged, counted, dropped.
    await v5.publishAsync("devices/d1/telemetry", "{not json", { qos: 1 });
    await v5.publishAsync("devices/d1/firmware", "v2", { qos: 1 });

    const records = await waitFor("200 telemetry records", async () => {
      const all = [...(await readPartition(broker.url, "telemetry", 0)), ...(await readPartition(broker.url, "telemetry", 1))];
      return all.length >= 200 ? all : undefined;
    });
    expect(records.map((r) => r.value).sort()).toEqual([...sent].sort());
    for (const r of records) {
      const body = JSON.parse(r.value) as { deviceId: string; seq: number };
      expect(r.key).toBe(body.deviceId);
      expect(r.headers["mqtt.topic"]).toBe(`devices/${body.deviceId}/telemetry`);
      expect(r.headers.gateway).toBe("gw-1");
      if (body.seq % 2 === 0) expect(r.headers.unit).toBe("C");
    }
    const events = await waitFor("the QoS 2 event", async () => {
      const e = await readPartition(broker.url, "events", 0);
      return e.length > 0 ? e : undefined;
    });
    expect(events).toMatchObject([{ key: "d9", value: "\u0001binary-ish" }]);
    await waitFor("the drops to be counted", async () =>
      (await metricValue(broker.url, "tributary_mqtt_invalid_payload_total")) === 1 && (await metricValue(broker.url, "tributary_mqtt_unmapped_total")) === 1 ? true : undefined);
    expect(broker.stderrLines().some((l) => l.includes("payload failed validation"))).toBe(true);
    expect(broker.stderrLines().some((l) => l.includes("no ingress rule matches"))).toBe(true);

    // Egress: a command produced to the log reaches the device's MQTT topic.
    const got = new Promise<{ topic: string; payload: string }>((resolve) => v5.once("message", (topic, payload) => resolve({ topic, payload: payload.toString() })));
    await v5.subscribeAsync("devices/d2/commands", { qos: 1 });
    // startFrom "latest": a command produced before the egress loop took its start would be skipped.
    const group = egressGroupId({ connection: "local", topic: "commands", mqttTopicText: "devices/{key}/commands" });
    await waitFor("the egress loop to commit its start position", async () => {
      const res = await fetch(`${broker.url}/v1/groups/${group}`);
      return res.status === 200 && ((await res.json()) as { partitions: { committedOffset: number | null }[] }).partitions[0]?.committedOffset === 0 ? true : undefined;
    });
    const res = await fetch(`${broker.url}/v1/topics/commands/records`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ records: [{ key: "d2", value: { reboot: true } }] }),
    });
    expect(res.status).toBe(200);
    expect(await got).toEqual({ topic: "devices/d2/commands", payload: '{"reboot":true}' });
    await waitFor("the egress metric", async () => ((await metricValue(broker.url, "tributary_mqtt_egress_published_total")) === 1 ? true : undefined));
    await waitFor("the egress commit, with lag 0", async () => {
      const d = (await (await fetch(`${broker.url}/v1/groups/${group}`)).json()) as { partitions: { committedOffset: number | null; lag: number | null }[] };
      return d.partitions[0]?.committedOffset === 1 && d.partitions[0].lag === 0 ? true : undefined;
    });

    // The broker still serves, and stops cleanly with the bridge.
    expect((await fetch(`${broker.url}/healthz`)).status).toBe(200);
    await broker.stop();
    expect(broker.child.exitCode).toBe(0);
    expect(broker.stderrLines().some((l) => l.includes("MQTT bridge stopped"))).toBe(true);
  });
});

describe("MQTT bridge under its principal's produce quota (Bun)", () => {
  it("delays the records to the rate, with the window full and reading paused, and drops none", async () => {
    const RATE = 20_000; // bytes per second
    const N = 120;
    const mq = await startMosquitto({ maxQueuedMessages: 100_000 });
    mosquittos.push(mq);
    const dir = await mkdtemp(join(tmpdir(), "tributary-mqtt-quota-"));
    dirs.push(dir);
    const tokensFile = join(dir, "tokens.json");
    const aclFile = join(dir, "acl.json");
    await writeFile(aclFile, JSON.stringify({
      acls: [
        { principal: "bridge", resource: "topic:telemetry", operations: ["produce"] },
        { principal: "ops", resource: "*", operations: ["admin"] },
      ],
      quotas: [{ principal: "bridge", produceBytesPerSec: RATE }],
    }));
    const auth = { authorization: `Bearer ${createToken(tokensFile, "ops")}` };
    const configPath = await writeBridgeConfig(dir, {
      connections: [{ name: "local", url: mq.url, clientId: "bridge-quota", receiveMaximum: 10, subscribe: [{ filter: "devices/#", qos: 1 }] }],
      ingress: [{ filter: "devices/+deviceId/telemetry", qos: 1, topic: "telemetry", key: "{deviceId}" }],
    });
    const broker = await startBrokerProcess({ runtime: "bun", dataDir: join(dir, "data"), args: ["--mqtt-config", configPath, "--auth-tokens-file", tokensFile, "--auth-acl-file", aclFile, "--mqtt-principal", "bridge"] });
    brokers.push(broker);
    const created = await fetch(`${broker.url}/v1/topics`, { method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify({ name: "telemetry", partitions: 1 }) });
    expect(created.status).toBe(201);
    await waitFor("the bridge's connection", async () => ((await metricValue(broker.url, "tributary_mqtt_connects_total", {}, auth)) > 0 ? true : undefined));

    const d = await device(mq.url);
    const sent = Array.from({ length: N }, (_, i) => JSON.stringify({ seq: i, pad: "x".repeat(480) }));
    const t0 = performance.now();
    await Promise.all(sent.map((body) => d.publishAsync("devices/d1/telemetry", body, { qos: 1 })));
    const records = await waitFor("every record in the log", async () => {
      const rs = await readPartition(broker.url, "telemetry", 0, auth);
      return rs.length >= N ? rs : undefined;
    }, 30_000);
    const elapsedS = (performance.now() - t0) / 1000;

    // None lost, none reordered, none twice.
    expect(records.map((r) => r.value)).toEqual(sent);
    // Held to the rate: past the one-second burst, the rest took about bytes / rate.
    const bytesEach = 32 + 2 + sent[0]!.length + "mqtt.topic".length + "devices/d1/telemetry".length + 8;
    const minS = (N * bytesEach - RATE) / RATE;
    expect(elapsedS).toBeGreaterThan(minS * 0.8);
    // Not throttled far past it (generous: a busy machine delivers the messages late as well).
    expect(elapsedS).toBeLessThan(minS * 3 + 5);
    // Less than minS when the messages arrive slower than the rate: the bucket refills meanwhile.
    expect(await metricValue(broker.url, "tributary_quota_throttle_seconds_total", { listener: "mqtt", kind: "produce" }, auth)).toBeGreaterThan(0);
    // Backpressure: the window filled and the bridge stopped reading; nothing was refused.
    expect(await metricValue(broker.url, "tributary_mqtt_window_stalls_total", {}, auth)).toBeGreaterThan(0);
    expect(await metricValue(broker.url, "tributary_mqtt_rejected_total", {}, auth)).toBe(0);
  }, 60_000);
});

describe("MQTT bridge config", () => {
  it("a bad config file stops start-up with an INVALID_CONFIG message", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tributary-mqtt-bad-"));
    dirs.push(dir);
    const configPath = await writeBridgeConfig(dir, { connections: [{ url: "mqtt://127.0.0.1:1", clientId: "b", recieveMaximum: 10 }] });
    const broker = await startBrokerProcess({ runtime: "bun", dataDir: join(dir, "data"), args: ["--mqtt-config", configPath] });
    brokers.push(broker);
    await new Promise<void>((resolve) => (broker.child.exitCode !== null ? resolve() : broker.child.once("exit", () => resolve())));
    expect(broker.child.exitCode).toBe(2);
    const stderr = broker.stderrLines().join("\n");
    expect(stderr).toContain("error: INVALID_CONFIG:");
    expect(stderr).toContain('unknown field "recieveMaximum"');
  });
});
