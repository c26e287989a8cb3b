/**
 * The MQTT bridge under faults, with a real Mosquitto and real broker processes:
 *  - the broker (and so the bridge) killed with SIGKILL in the middle of a QoS 1 stream: every
 *    message Mosquitto acknowledged to the publisher ends up in the log; duplicates only of
 *    messages in the bridge's window at the kill, so about one Receive Maximum of them;
 *  - Mosquitto restarted mid-stream: the bridge reconnects, resumes its persistent session, and
 *    nothing the publisher got a PUBACK for is lost;
 *  - Mosquitto's max_queued_messages: while the bridge is away, Mosquitto acknowledges the
 *    publisher and then drops what passes the limit — loss the bridge can never see.
 */
import { describe, expect, it } from "vitest";
import mqtt from "mqtt";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBrokerProcess } from "./support/broker-process.ts";
import { metricValue, readPartition, startMosquitto, waitFor, writeBridgeConfig, type Mosquitto, mqttTestResources } from "./support/mosquitto.ts";

const { brokers, mosquittos, clients, dirs } = mqttTestResources();


const RECEIVE_MAXIMUM = 200;

async function setup(mqOptions: Parameters<typeof startMosquitto>[0]) {
  const mq = await startMosquitto(mqOptions);
  mosquittos.push(mq);
  const dir = await mkdtemp(join(tmpdir(), "tributary-mqtt-faults-"));
  dirs.push(dir);
  const configPath = await writeBridgeConfig(dir, {
    connections: [{ url: mq.url, clientId: "bridge-faults", receiveMaximum: RECEIVE_MAXIMUM, reconnectMinMs: 50, reconnectMaxMs: 500 }],
    ingress: [{ filter: "devices/+deviceId/telemetry", qos: 1, topic: "telemetry", key: "{deviceId}" }],
  });
  const dataDir = join(dir, "data");
  const start = async () => {
    const b = await startBrokerProcess({ runtime: "bun", dataDir, args: ["--mqtt-config", configPath] });
    brokers.push(b);
    return b;
  };
  const broker = await start();
  const res = await fetch(`${broker.url}/v1/topics`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "telemetry", partitions: 1 }) });
  expect(res.status).toBe(201);
  await waitFor("the bridge's connection", async () => ((await metricValue(broker.url, "tributary_mqtt_connects_total")) > 0 ? true : undefined));
  return { mq, start, broker };
}

/** A QoS 1 publisher with up to `window` messages in flight; `acked` holds every seq Mosquitto PUBACKed. */
function publisher(url: string, window = 50) {
  const client = mqtt.connect(url, { clientId: `pub-${Math.random().toString(36).slice(2)}`, clean: false, protocolVersion: 4, reconnectPeriod: 50 });
  clients.push(client);
  const acked = new Set<number>();
  let seq = 0;
  let inflight = 0;
  let running = true;
  let wake: (() => void) | null = null;
  const loop = (async () => {
    while (running) {
      if (inflight >= window) {
        await new Promise<void>((r) => (wake = r));
        continue;
      }
      const n = seq++;
      inflight++;
      client.publish(`devices/pub/telemetry`, JSON.stringify({ seq: n }), { qos: 1 }, (err) => {
        inflight--;
        if (!err) acked.add(n);
        const w = wake;
        wake = null;
        w?.();
      });
      if (seq % window === 0) await new Promise((r) => setImmediate(r));
    }
  })();
  return {
    acked,
    async stop() {
      running = false;
      wake?.();
      await loop;
    },
  };
}

async function logSeqs(url: string): Promise<number[]> {
  return (await readPartition(url, "telemetry", 0)).map((r) => (JSON.parse(r.value) as { seq: number }).seq);
}

async function expectAllAcked(url: string, acked: Set<number>): Promise<number[]> {
  const seqs = await waitFor(`all ${acked.size} acknowledged messages in the log`, async () => {
    const s = await logSeqs(url);
    const have = new Set(s);
    for (const a of acked) if (!have.has(a)) return undefined;
    return s;
  }, 30_000);
  return seqs;
}

const duplicates = (seqs: number[]) => seqs.length - new Set(seqs).size;

describe("MQTT bridge faults", () => {
  it("loses nothing Mosquitto acknowledged when the bridge is killed with SIGKILL mid-stream", async () => {
    const { start, broker } = await setup({ maxQueuedMessages: 100_000 });
    const pub = publisher(mosquittos[0]!.url);
    await waitFor("records flowing", async () => ((await metricValue(broker.url, "tributary_mqtt_records_produced_total")) >= 2000 ? true : undefined));
    await broker.kill("SIGKILL");
    const atKill = pub.acked.size;
    // Mosquitto keeps acknowledging the publisher and queues for the bridge's session.
    await waitFor("more acknowledged while the bridge is down", () => (pub.acked.size >= atKill + 1000 ? true : undefined));
    const second = await start();
    await waitFor("the bridge to resume", async () => ((await metricValue(second.url, "tributary_mqtt_records_produced_total")) >= 1000 ? true : undefined));
    await pub.stop();
    const seqs = await expectAllAcked(second.url, pub.acked);
    // Only messages in the bridge's window at the kill come again: the unacknowledged ones (at
    // most Receive Maximum) and the few whose PUBACK was still on the wire. Seen: up to 201.
    expect(duplicates(seqs)).toBeLessThanOrEqual(2 * RECEIVE_MAXIMUM);
  });

  it("reconnects and resumes its session when Mosquitto restarts mid-stream", async () => {
    const { mq, broker } = await setup({ maxQueuedMessages: 100_000 });
    const pub = publisher(mq.url);
    await waitFor("records flowing", async () => ((await metricValue(broker.url, "tributary_mqtt_records_produced_total")) >= 1000 ? true : undefined));
    await mq.restart("SIGTERM");
    const atRestart = pub.acked.size;
    await waitFor("the bridge to reconnect to its saved session", async () =>
      (await metricValue(broker.url, "tributary_mqtt_connects_total", { session_present: "true" })) >= 1 ? true : undefined);
    await waitFor("the stream to go on", () => (pub.acked.size >= atRestart + 1000 ? true : undefined));
    await pub.stop();
    const seqs = await expectAllAcked(broker.url, pub.acked);
    expect(seqs.length).toBeGreaterThan(atRestart);
    expect(await metricValue(broker.url, "tributary_mqtt_disconnects_total")).toBeGreaterThanOrEqual(1);
  });

  it("shows Mosquitto dropping acknowledged QoS 1 messages past max_queued_messages while the bridge is away", async () => {
    const { mq, broker, start } = await setup({ maxQueuedMessages: 100 });
    await broker.stop(); // a clean stop: the session stays in Mosquitto, which now queues for it
    const pub = mqtt.connect(mq.url, { protocolVersion: 5 });
    clients.push(pub);
    const sent = 1000;
    for (let i = 0; i < sent; i++) await pub.publishAsync("devices/pub/telemetry", JSON.stringify({ seq: i }), { qos: 1 });
    // Every one of them was acknowledged to the publisher by Mosquitto.
    const second = await start();
    // The marker goes after the bridge took the backlog, or it would be dropped behind it too.
    await waitFor("the bridge's return", async () => ((await metricValue(second.url, "tributary_mqtt_records_produced_total")) >= 100 ? true : undefined));
    await pub.publishAsync("devices/pub/telemetry", JSON.stringify({ seq: -1 }), { qos: 1 });
    const seqs = await waitFor("the marker sent after the backlog", async () => {
      const s = await logSeqs(second.url);
      return s.includes(-1) ? s : undefined;
    });
    const delivered = seqs.filter((s) => s >= 0).length;
    expect(delivered).toBeGreaterThanOrEqual(100);
    expect(delivered).toBeLessThan(sent / 2);
    expect(mq.logLines().some((l) => l.includes("Outgoing messages are being dropped for client bridge-faults"))).toBe(true);
  });
});
