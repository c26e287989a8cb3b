/**
 * An example device that reports telemetry over MQTT through the plant's MQTT broker (Mosquitto),
 * which Tributary's MQTT bridge subscribes to; it also prints the commands the bridge publishes
 * to it. It uses only MQTT, like a real device:
 *   - a persistent session (clean=false, client id = device id), so commands published while it
 *     was offline are delivered when it is back;
 *   - QoS 1 readings; a reading counts as sent once the MQTT broker acknowledged it;
 *   - at most `--max-inflight` unacknowledged readings: past that the device skips readings (and
 *     counts them) instead of queueing without bound while the network is down.
 *
 * usage: bun devices/mqtt-device.ts [--url mqtt://127.0.0.1:1883] [--device-id dev-1]
 *        [--interval-ms 1000] [--count N] [--format json|cbor] [--max-inflight 100]
 * Publishes to devices/{deviceId}/telemetry; listens on devices/{deviceId}/commands.
 */
import { parseArgs } from "node:util";
import mqtt, { type MqttClient } from "mqtt";
// The pure-JS entry point: plain "cbor-x" may load a native add-on that aborts Bun and Deno.
import { encode as encodeCbor } from "cbor-x/encode";

export interface Reading {
  deviceId: string;
  seq: number;
  ts: number;
  temperatureC: number;
  vibrationMmS: number;
}

export function reading(deviceId: string, seq: number): Reading {
  return { deviceId, seq, ts: Date.now(), temperatureC: 20 + Math.sin(seq / 10) * 5, vibrationMmS: Math.abs(Math.cos(seq / 7)) * 3 };
}

export function encodeReading(r: Reading, format: "json" | "cbor"): Uint8Array {
  return format === "cbor" ? new Uint8Array(encodeCbor(r)) : new TextEncoder().encode(JSON.stringify(r));
}

/** Publish one reading at QoS 1; resolves once the MQTT broker acknowledged it. */
export async function publishReading(client: MqttClient, r: Reading, format: "json" | "cbor"): Promise<void> {
  await client.publishAsync(`devices/${r.deviceId}/telemetry`, Buffer.from(encodeReading(r, format)), {
    qos: 1,
    properties: { contentType: format === "cbor" ? "application/cbor" : "application/json" },
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: "string", default: process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883" },
      "device-id": { type: "string", default: "dev-1" },
      "interval-ms": { type: "string", default: "1000" },
      count: { type: "string", default: "0" },
      format: { type: "string", default: "json" },
      "max-inflight": { type: "string", default: "100" },
    },
  });
  const deviceId = values["device-id"];
  const format = values.format === "cbor" ? "cbor" : "json";
  const count = Number(values.count);
  const maxInflight = Math.max(1, Number(values["max-inflight"]));
  const client = mqtt.connect(values.url, {
    clientId: deviceId,
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 3600 },
    reconnectPeriod: 1000,
  });
  client.on("connect", (ack) => {
    console.log(`connected (session ${ack.sessionPresent ? "resumed" : "new"})`);
    client.subscribe(`devices/${deviceId}/commands`, { qos: 1 });
  });
  client.on("message", (topic, payload) => console.log(`command on ${topic}: ${payload.toString()}`));
  client.on("error", (e) => console.error(`mqtt error: ${e.message}`));
  let seq = 0;
  let inflight = 0;
  let skipped = 0;
  let acked = 0;
  const timer = setInterval(() => {
    if (count > 0 && seq >= count) {
      if (inflight === 0) {
        clearInterval(timer);
        console.log(`done: ${acked} readings acknowledged, ${skipped} skipped`);
        void client.endAsync();
      }
      return;
    }
    if (inflight >= maxInflight) {
      skipped++;
      seq++;
      return;
    }
    const r = reading(deviceId, seq++);
    inflight++;
    publishReading(client, r, format)
      .then(() => {
        acked++;
        if (acked % 10 === 0) console.log(`${acked} readings acknowledged${skipped ? `, ${skipped} skipped while offline` : ""}`);
      })
      .catch((e: unknown) => console.error(`publish failed: ${(e as Error).message}`))
      .finally(() => inflight--);
  }, Number(values["interval-ms"]));
}

if (import.meta.main) await main();
