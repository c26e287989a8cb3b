/**
 * Bytes per record a mirror link would send for realistic CBOR telemetry, with and without gzip:
 * the RecordBatch v2 bytes as the edge stores them, gzip inside each batch (codec 1), and gzip of
 * a whole send (the batches of one send concatenated, as the sink would compress its payload).
 * Also what per-record source headers would have cost (the design stamps the batch header
 * instead: 0 bytes per record; see src/mirror/index.ts).
 *
 * The reading: a device id, sequence, timestamp, temperature, humidity, pressure, a 3-axis
 * vibration sample, battery and status, encoded with cbor-x (the pure-JS entry point, as
 * gateways/http/media.ts explains), keyed by device id; 200 devices reporting in turn.
 *
 * usage: bun bench/mirror-bytes.ts   |   deno run -A bench/mirror-bytes.ts
 */
import { gzipSync } from "node:zlib";
import { encodeBatch, type RecordHeader, type RecordInput } from "../src/storage/record-batch.ts";
import { rng } from "../test/support/random.ts";
import { machine, table } from "./lib.ts";
import { T0, cbor, telemetryReading } from "./telemetry.ts";

const enc = new TextEncoder();
const random = rng(42);
const SEND_BYTES = 256 * 1024;
const reading = (i: number) => telemetryReading(i, random);

type Headers = "none" | "mqtt";

function record(i: number, headers: Headers, sourceHeaders: boolean): RecordInput {
  const r = reading(i);
  const h: RecordHeader[] = [];
  if (headers === "mqtt") {
    // What the MQTT bridge adds: the MQTT topic and the MQTT 5 content type.
    h.push({ key: "mqtt.topic", value: enc.encode(`devices/${String(r.deviceId)}/telemetry`) }, { key: "content-type", value: enc.encode("application/cbor") });
  }
  if (sourceHeaders) {
    // The rejected design: each record names its source (cluster/topic/partition) and offset.
    const offset = new Uint8Array(8);
    new DataView(offset.buffer).setBigInt64(0, BigInt(1_000_000 + i));
    h.push({ key: "tributary.source", value: enc.encode("site7/telemetry/0") }, { key: "tributary.offset", value: offset });
  }
  return { key: enc.encode(String(r.deviceId)), value: new Uint8Array(cbor.encode(r)), headers: h, timestamp: r.ts as number };
}

function measure(perBatch: number, headers: Headers, sourceHeaders: boolean, total = 20_000) {
  const plain: Uint8Array[] = [];
  let gzBatchBytes = 0;
  let valueBytes = 0;
  for (let start = 0; start < total; start += perBatch) {
    const recs = Array.from({ length: perBatch }, (_, j) => record(start + j, headers, sourceHeaders));
    for (const r of recs) valueBytes += r.value!.length;
    plain.push(encodeBatch(recs, { timestamp: T0 }));
    gzBatchBytes += encodeBatch(recs, { timestamp: T0, compression: "gzip" }).length;
  }
  const plainBytes = plain.reduce((a, b) => a + b.length, 0);
  // Sends of about SEND_BYTES of whole batches, each gzipped as one payload.
  let wire = 0;
  let gzipMs = 0;
  for (let i = 0; i < plain.length; ) {
    const parts: Uint8Array[] = [];
    let n = 0;
    while (i < plain.length && (n === 0 || n + plain[i]!.length <= SEND_BYTES)) {
      parts.push(plain[i]!);
      n += plain[i++]!.length;
    }
    const send = new Uint8Array(n);
    let at = 0;
    for (const p of parts) {
      send.set(p, at);
      at += p.length;
    }
    const started = performance.now();
    wire += gzipSync(send).length;
    gzipMs += performance.now() - started;
  }
  return { value: valueBytes / total, plain: plainBytes / total, gzBatch: gzBatchBytes / total, gzSend: wire / total, gzipMBps: plainBytes / 1e6 / (gzipMs / 1000) };
}

const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string } } };
console.log(`# mirror bytes per record (${machine()})`);
console.log(`node:zlib gzipSync on this runtime: ${typeof gzipSync} (${g.Bun ? `Bun ${g.Bun.version}` : g.Deno ? `Deno ${g.Deno.version.deno}` : "Node"})\n`);
const rows: (string | number)[][] = [];
for (const headers of ["none", "mqtt"] as const) {
  for (const perBatch of [10, 100, 1000]) {
    for (const sourceHeaders of [false, true]) {
      const m = measure(perBatch, headers, sourceHeaders);
      rows.push([headers, perBatch, sourceHeaders ? "per-record headers" : "batch stamp", m.value.toFixed(1), m.plain.toFixed(1), m.gzBatch.toFixed(1), m.gzSend.toFixed(1), `${(m.plain / m.gzSend).toFixed(2)}x`, m.gzipMBps.toFixed(0)]);
    }
  }
}
console.log(table(["record headers", "records/batch", "source carried by", "CBOR value B", "batch B/rec", "gzip per batch B/rec", "gzip per 256 KiB send B/rec", "send ratio", "gzip MB/s (one core)"], rows));
