/**
 * A fleet simulator: N devices publishing telemetry at a rate, over MQTT (each device its own
 * connection to the MQTT broker, QoS 0/1/2), HTTP (each device its own POSTs to Tributary) or
 * gRPC (each device its own channel to the gRPC gateway, one unary Produce per batch, through
 * grpc-device.ts), with JSON or CBOR payloads. Prints the achieved rate and the errors every
 * second and a summary line of JSON at the end. Uses only the public protocols, never src/.
 *
 * usage: bun devices/simulate.ts [--protocol mqtt|http|grpc] [--devices 100] [--rate 10] [--duration-s 10]
 *        [--count N] [--format json|cbor] [--qos 1] [--max-inflight 100] [--batch 10]
 *        [--url mqtt://127.0.0.1:1883 | http://127.0.0.1:8480 | 127.0.0.1:8481] [--topic telemetry]
 * `--rate` is readings per second per device; 0 sends as fast as acknowledgements allow.
 * `--count` stops each device after that many readings (instead of after `--duration-s`).
 */
import { parseArgs } from "node:util";
import mqtt, { type MqttClient } from "mqtt";
import { encode as encodeCbor } from "cbor-x/encode";
import { encodeReading, reading } from "./mqtt-device.ts";
import { openChannel, produceReadings } from "./grpc-device.ts";

export interface SimulationOptions {
  protocol: "mqtt" | "http" | "grpc";
  url: string;
  devices: number;
  /** Readings per second per device; 0: as fast as the in-flight bound allows. */
  rate: number;
  durationS: number;
  /** Readings per device; when set, devices stop after it instead of after durationS. */
  count: number;
  format: "json" | "cbor";
  qos: 0 | 1 | 2;
  /** Unacknowledged readings per device at most; more are skipped and counted as "behind". */
  maxInflight: number;
  /** HTTP and gRPC: readings per request. */
  batch: number;
  /** HTTP and gRPC: the log topic. */
  topic: string;
  /** Device ids are `${idPrefix}${i}`. */
  idPrefix: string;
  /** Called every second with the numbers so far; default prints a line. */
  onTick?: (s: SimulationStats) => void;
}

export interface SimulationStats {
  sent: number;
  acked: number;
  errors: number;
  behind: number;
  seconds: number;
  ratePerS: number;
  lastError: string | null;
}

export const DEFAULTS: SimulationOptions = {
  protocol: "mqtt",
  url: "",
  devices: 100,
  rate: 10,
  durationS: 10,
  count: 0,
  format: "json",
  qos: 1,
  maxInflight: 100,
  batch: 10,
  topic: "telemetry",
  idPrefix: "sim-",
};

interface Device {
  /** Send up to `n` readings; each resolves on acknowledgement. */
  send(readings: Uint8Array[], ids: { id: string; seq: number }[]): Promise<void>[];
  close(): Promise<void>;
}

async function mqttDevice(o: SimulationOptions, id: string): Promise<Device> {
  const client: MqttClient = await mqtt.connectAsync(o.url, { clientId: id, protocolVersion: 5, reconnectPeriod: 1000, clean: true });
  return {
    send: (payloads, ids) => payloads.map((p, i) => client.publishAsync(`devices/${ids[i]!.id}/telemetry`, Buffer.from(p), { qos: o.qos }).then(() => {})),
    close: () => client.endAsync(),
  };
}

function httpDevice(o: SimulationOptions, id: string): Device {
  const url = `${o.url.replace(/\/$/, "")}/v1/topics/${encodeURIComponent(o.topic)}/records`;
  return {
    send(payloads) {
      const body = o.format === "cbor"
        ? { bytes: new Uint8Array(encodeCbor({ records: payloads.map((p) => ({ key: id, value: p })) })), type: "application/cbor" }
        : { bytes: new TextEncoder().encode(JSON.stringify({ records: payloads.map((p) => ({ key: id, value: JSON.parse(new TextDecoder().decode(p)) as unknown })) })), type: "application/json" };
      const done = fetch(url, { method: "POST", headers: { "content-type": body.type, accept: "application/json" }, body: body.bytes }).then(async (res) => {
        const text = await res.text();
        if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
      });
      // One request carries the whole batch: every reading shares its outcome.
      return payloads.map(() => done);
    },
    close: async () => {},
  };
}

function grpcDevice(o: SimulationOptions, id: string): Device {
  const client = openChannel(o.url);
  return {
    send(payloads) {
      const done = produceReadings(client, o.topic, id, payloads, o.format).then(() => {});
      // One call carries the whole batch: every reading shares its outcome.
      return payloads.map(() => done);
    },
    close: async () => client.close(),
  };
}

const DEFAULT_URLS: Record<SimulationOptions["protocol"], string> = {
  mqtt: "mqtt://127.0.0.1:1883",
  http: "http://127.0.0.1:8480",
  grpc: "127.0.0.1:8481",
};

export async function runSimulation(partial: Partial<SimulationOptions>): Promise<SimulationStats> {
  const o: SimulationOptions = { ...DEFAULTS, ...partial };
  if (!o.url) o.url = DEFAULT_URLS[o.protocol];
  const stats: SimulationStats = { sent: 0, acked: 0, errors: 0, behind: 0, seconds: 0, ratePerS: 0, lastError: null };
  const started = performance.now();
  const devices = await Promise.all(Array.from({ length: o.devices }, (_, i) => {
    const id = `${o.idPrefix}${i}`;
    if (o.protocol === "mqtt") return mqttDevice(o, id);
    return Promise.resolve(o.protocol === "http" ? httpDevice(o, id) : grpcDevice(o, id));
  }));
  const deadline = started + o.durationS * 1000;
  let lastTick = performance.now();
  let lastAcked = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    const rate = ((stats.acked - lastAcked) * 1000) / (now - lastTick);
    lastTick = now;
    lastAcked = stats.acked;
    const line = { ...stats, seconds: Math.round((now - started) / 100) / 10, ratePerS: Math.round(rate) };
    if (o.onTick) o.onTick(line);
    else console.log(`${line.seconds}s: ${line.ratePerS}/s acknowledged, ${stats.acked} total, ${stats.errors} errors, ${stats.behind} behind${stats.lastError ? ` (last error: ${stats.lastError})` : ""}`);
  }, 1000);

  const runDevice = async (d: Device, index: number): Promise<void> => {
    const id = `${o.idPrefix}${index}`;
    let seq = 0;
    let inflight = 0;
    const pending = new Set<Promise<void>>();
    const deviceStart = performance.now();
    const done = () => (o.count > 0 ? seq >= o.count : performance.now() >= deadline);
    const perSend = o.protocol === "mqtt" ? 1 : Math.max(1, o.batch);
    while (!done()) {
      if (o.rate > 0) {
        // Readings due by now at the asked rate; late ones are sent at once (catch-up), not dropped.
        const due = Math.floor(((performance.now() - deviceStart) / 1000) * o.rate);
        if (seq >= due) {
          await new Promise((r) => setTimeout(r, Math.max(1, ((seq + 1) / o.rate) * 1000 - (performance.now() - deviceStart))));
          continue;
        }
      }
      // With nothing in flight a send goes out even when a batch is larger than the bound.
      if (inflight > 0 && inflight + perSend > o.maxInflight) {
        if (o.rate > 0) stats.behind++;
        await Promise.race(pending);
        continue;
      }
      const n = Math.min(perSend, o.count > 0 ? o.count - seq : perSend);
      const ids = Array.from({ length: n }, () => ({ id, seq: seq++ }));
      const payloads = ids.map((x) => encodeReading(reading(x.id, x.seq), o.format));
      inflight += n;
      stats.sent += n;
      for (const p of d.send(payloads, ids)) {
        const settled: Promise<void> = p.then(
          () => {
            stats.acked++;
          },
          (e: unknown) => {
            stats.errors++;
            stats.lastError = (e as Error).message;
          },
        ).finally(() => {
          inflight--;
          pending.delete(settled);
        });
        pending.add(settled);
      }
    }
    await Promise.all(pending);
  };
  try {
    await Promise.all(devices.map((d, i) => runDevice(d, i)));
  } finally {
    clearInterval(tick);
    await Promise.all(devices.map((d) => d.close()));
  }
  stats.seconds = (performance.now() - started) / 1000;
  stats.ratePerS = Math.round(stats.acked / stats.seconds);
  return stats;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      protocol: { type: "string", default: "mqtt" },
      url: { type: "string" },
      devices: { type: "string", default: String(DEFAULTS.devices) },
      rate: { type: "string", default: String(DEFAULTS.rate) },
      "duration-s": { type: "string", default: String(DEFAULTS.durationS) },
      count: { type: "string", default: "0" },
      format: { type: "string", default: "json" },
      qos: { type: "string", default: "1" },
      "max-inflight": { type: "string", default: String(DEFAULTS.maxInflight) },
      batch: { type: "string", default: String(DEFAULTS.batch) },
      topic: { type: "string", default: DEFAULTS.topic },
    },
  });
  if (values.protocol !== "mqtt" && values.protocol !== "http" && values.protocol !== "grpc") {
    console.error("--protocol must be mqtt, http or grpc");
    process.exit(2);
  }
  const qos = Number(values.qos);
  const stats = await runSimulation({
    protocol: values.protocol,
    url: values.url ?? "",
    devices: Number(values.devices),
    rate: Number(values.rate),
    durationS: Number(values["duration-s"]),
    count: Number(values.count),
    format: values.format === "cbor" ? "cbor" : "json",
    qos: qos === 0 || qos === 2 ? qos : 1,
    maxInflight: Number(values["max-inflight"]),
    batch: Number(values.batch),
    topic: values.topic,
  });
  console.log(JSON.stringify({ summary: stats }));
  process.exit(stats.errors > 0 ? 1 : 0);
}

if (import.meta.main) await main();
