/**
 * MQTT ingest benchmark: devices -> Mosquitto -> bridge -> durable log, against the rate the same
 * Mosquitto delivers to a plain mqtt.js QoS 1 subscriber, in the same run. 100 simulated devices
 * (devices/simulate.ts) publish QoS 1 as fast as Mosquitto acknowledges them.
 *
 *   1. plain: a private Mosquitto and one mqtt.js subscriber (QoS 1, MQTT 5); time from the first
 *      publish to the last message received.
 *   2. bridge: a broker process (Bun, flush.mode=batch: every acknowledged record fdatasync'ed)
 *      with the bridge subscribed instead; time from the first publish until the log's high
 *      watermark (durable records) reaches the count.
 * Prints a markdown table. BENCH_MQTT_MESSAGES (default 50000) sets the messages per phase.
 * `runMqttFanIn` is the same run for bench/vs.ts (scenario d), with the CPU seconds of Mosquitto
 * and of the broker, and the broker's peak RSS, over each phase.
 *
 * usage: npm run bench:mqtt
 */
import mqtt from "mqtt";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runSimulation } from "../devices/simulate.ts";
import { startBrokerProcess } from "../test/support/broker-process.ts";
import { startMosquitto, waitFor, writeBridgeConfig } from "../test/support/mosquitto.ts";
import { cpuSeconds, peakRssBytes } from "./proc-stats.ts";

const DEVICES = 100;
const MESSAGES = Number(process.env.BENCH_MQTT_MESSAGES ?? 50_000);
const PER_DEVICE = Math.ceil(MESSAGES / DEVICES);
const TOTAL = PER_DEVICE * DEVICES;
const RECEIVE_MAXIMUM = 2000;

export interface MqttRow {
  path: string;
  messages: number;
  seconds: number;
  rate: number;
  /** CPU seconds over the phase: Mosquitto's, and the Tributary broker's (bridge phase only). */
  mosquittoCpuS: number;
  brokerCpuS?: number;
  brokerPeakRssBytes?: number;
}
type Row = Omit<MqttRow, "mosquittoCpuS" | "messages">;

async function plain(url: string): Promise<Row> {
  const sub = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: "bench-plain", properties: { receiveMaximum: RECEIVE_MAXIMUM } });
  await sub.subscribeAsync("devices/+/telemetry", { qos: 1 });
  let received = 0;
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((r) => (resolveDone = r));
  sub.on("message", () => {
    if (++received === TOTAL) resolveDone();
  });
  const started = performance.now();
  await runSimulation({ protocol: "mqtt", url, devices: DEVICES, count: PER_DEVICE, rate: 0, qos: 1, format: "json", idPrefix: "plain-", onTick: () => {} });
  await done;
  const seconds = (performance.now() - started) / 1000;
  await sub.endAsync();
  return { path: "Mosquitto -> plain mqtt.js QoS 1 subscriber", seconds, rate: TOTAL / seconds };
}

async function bridge(url: string, dir: string): Promise<Row> {
  const configPath = await writeBridgeConfig(dir, {
    connections: [{ url, clientId: "bench-bridge", receiveMaximum: RECEIVE_MAXIMUM }],
    ingress: [{ filter: "devices/+deviceId/telemetry", qos: 1, topic: "telemetry", key: "{deviceId}" }],
  });
  const broker = await startBrokerProcess({ runtime: "bun", dataDir: join(dir, "data"), args: ["--mqtt-config", configPath] });
  try {
    const res = await fetch(`${broker.url}/v1/topics`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "telemetry", partitions: 3 }) });
    if (res.status !== 201) throw new Error(`create topic: ${res.status}`);
    const durable = async () => {
      const d = (await (await fetch(`${broker.url}/v1/topics/telemetry`)).json()) as { partitions: { highWatermark: number }[] };
      return d.partitions.reduce((a, p) => a + p.highWatermark, 0);
    };
    await waitFor("the bridge's subscription", async () => {
      const m = await (await fetch(`${broker.url}/metrics`)).text();
      return /tributary_mqtt_connects_total\{[^}]*\} [1-9]/.test(m) ? true : undefined;
    });
    const started = performance.now();
    const cpu0 = cpuSeconds(broker.pid);
    await runSimulation({ protocol: "mqtt", url, devices: DEVICES, count: PER_DEVICE, rate: 0, qos: 1, format: "json", idPrefix: "bridge-", onTick: () => {} });
    await waitFor(`${TOTAL} durable records`, async () => ((await durable()) >= TOTAL ? true : undefined), 300_000);
    const seconds = (performance.now() - started) / 1000;
    return {
      path: "Mosquitto -> bridge -> durable log (fdatasync per group commit)",
      seconds,
      rate: TOTAL / seconds,
      brokerCpuS: cpuSeconds(broker.pid) - cpu0,
      brokerPeakRssBytes: peakRssBytes(broker.pid),
    };
  } finally {
    await broker.stop();
  }
}

/** Both phases on one private Mosquitto: the plain subscriber first, then the bridge. */
export async function runMqttFanIn(): Promise<MqttRow[]> {
  const mq = await startMosquitto({ maxQueuedMessages: 1_000_000 });
  const dir = await mkdtemp(join(tmpdir(), "tributary-bench-mqtt-"));
  try {
    const rows: MqttRow[] = [];
    for (const phase of [() => plain(mq.url), () => bridge(mq.url, dir)]) {
      const cpu0 = cpuSeconds(mq.pid);
      const row = await phase();
      rows.push({ ...row, messages: TOTAL, mosquittoCpuS: cpuSeconds(mq.pid) - cpu0 });
    }
    return rows;
  } finally {
    await mq.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

export const MQTT_DEVICES = DEVICES;

if (import.meta.main) {
  const rows = await runMqttFanIn();
  console.log(`\nMQTT ingest, ${DEVICES} devices, ${TOTAL} QoS 1 messages of ~110 bytes (JSON), one Mosquitto ${process.platform}/${process.arch}:\n`);
  console.log("| path | messages | seconds | messages/s | vs plain |");
  console.log("|---|---:|---:|---:|---:|");
  for (const r of rows) {
    console.log(`| ${r.path} | ${TOTAL} | ${r.seconds.toFixed(2)} | ${Math.round(r.rate)} | ${((r.rate / rows[0]!.rate) * 100).toFixed(0)}% |`);
  }
}
