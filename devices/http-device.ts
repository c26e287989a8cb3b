/**
 * An example device that reports telemetry to Tributary over HTTP with CBOR bodies, the way a
 * small Linux device on the plant network would: one POST per reading batch, retrying with
 * backoff when the broker answers 503 or cannot be reached, and never dropping a reading the
 * broker did not acknowledge (it stays in a bounded local queue; the oldest go first when full).
 *
 * usage: bun devices/http-device.ts [--url http://127.0.0.1:8480] [--topic telemetry]
 *        [--device-id dev-1] [--interval-ms 1000] [--count N] [--batch 10]
 */
import { parseArgs } from "node:util";
// The pure-JS entry points: plain "cbor-x" may load a native add-on that aborts Bun and Deno.
import { encode } from "cbor-x/encode";
import { decode } from "cbor-x/decode";

export interface Reading {
  deviceId: string;
  seq: number;
  ts: number;
  temperatureC: number;
  vibrationMmS: number;
}

/** Post readings as one CBOR request; resolves with their offsets once the broker made them durable. */
export async function sendReadings(url: string, topic: string, readings: Reading[]): Promise<{ partition: number; offset: number }[]> {
  const body = new Uint8Array(encode({ records: readings.map((r) => ({ key: r.deviceId, value: r, headers: { "content-type": "application/json" } })) }));
  const res = await fetch(`${url}/v1/topics/${encodeURIComponent(topic)}/records`, {
    method: "POST",
    headers: { "content-type": "application/cbor", accept: "application/cbor" },
    body,
  });
  const reply = decode(new Uint8Array(await res.arrayBuffer())) as { offsets?: { partition: number; offset: number }[]; error?: { code: string; message: string } };
  if (res.status !== 200 || !reply.offsets) {
    const err = new Error(`${res.status} ${reply.error?.code ?? ""}: ${reply.error?.message ?? "no offsets in reply"}`);
    (err as Error & { retriable: boolean }).retriable = res.status === 503;
    throw err;
  }
  return reply.offsets;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: "string", default: process.env.TRIBUTARY_URL ?? "http://127.0.0.1:8480" },
      topic: { type: "string", default: "telemetry" },
      "device-id": { type: "string", default: "dev-1" },
      "interval-ms": { type: "string", default: "1000" },
      count: { type: "string", default: "0" },
      batch: { type: "string", default: "10" },
    },
  });
  const intervalMs = Number(values["interval-ms"]);
  const count = Number(values.count);
  const batch = Math.max(1, Number(values.batch));
  const queueMax = 10_000;
  const queue: Reading[] = [];
  let seq = 0;
  let backoffMs = 100;
  let dropped = 0;

  for (;;) {
    if (count === 0 || seq < count) {
      queue.push({
        deviceId: values["device-id"],
        seq: seq++,
        ts: Date.now(),
        temperatureC: 20 + Math.sin(seq / 10) * 5,
        vibrationMmS: Math.abs(Math.cos(seq / 7)) * 3,
      });
      if (queue.length > queueMax) {
        queue.shift();
        dropped++;
      }
    }
    if (queue.length >= batch || (count > 0 && seq >= count)) {
      const sending = queue.slice(0, batch);
      try {
        const offsets = await sendReadings(values.url, values.topic, sending);
        queue.splice(0, sending.length);
        backoffMs = 100;
        console.log(`sent ${sending.length} readings, last at ${offsets.at(-1)?.partition}/${offsets.at(-1)?.offset}${dropped ? `, ${dropped} dropped while offline` : ""}`);
      } catch (e) {
        console.error(`send failed (${(e as Error).message}); retrying in ${backoffMs} ms`);
        await new Promise((r) => setTimeout(r, backoffMs + Math.random() * backoffMs));
        backoffMs = Math.min(backoffMs * 2, 30_000);
        continue;
      }
    }
    if (count > 0 && seq >= count && queue.length === 0) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

if (import.meta.main) await main();
