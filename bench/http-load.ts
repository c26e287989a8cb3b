/**
 * HTTP produce load generator, run as its own process so it does not share an event loop with
 * the broker. Keeps `concurrency` requests in flight for `durationMs`, each a batch of `batch`
 * records of `recordBytes` bytes, and prints one JSON line: requests, records, bytes, latencies.
 *
 * usage: bun bench/http-load.ts URL TOPIC RECORD_BYTES BATCH CONCURRENCY DURATION_MS
 */
import { percentile } from "./lib.ts";

const [url, topic, recordBytesArg, batchArg, concurrencyArg, durationArg] = process.argv.slice(2);
const recordBytes = Number(recordBytesArg);
const batch = Number(batchArg);
const concurrency = Number(concurrencyArg);
const durationMs = Number(durationArg);

// A JSON string value of exactly recordBytes bytes once stored (the quotes count).
const value = "x".repeat(Math.max(0, recordBytes - 2));
const body = JSON.stringify({ records: Array.from({ length: batch }, (_, i) => ({ key: `device-${i % 100}`, value })) });
const target = `${url}/v1/topics/${topic}/records`;

const latencies: number[] = [];
let requests = 0;
let errors = 0;
const started = performance.now();
const end = started + durationMs;

async function worker(): Promise<void> {
  while (performance.now() < end) {
    const t0 = performance.now();
    const res = await fetch(target, { method: "POST", headers: { "content-type": "application/json" }, body });
    await res.arrayBuffer();
    if (res.status === 200) {
      latencies.push(performance.now() - t0);
      requests++;
    } else {
      errors++;
    }
  }
}

await Promise.all(Array.from({ length: concurrency }, worker));
const elapsedMs = performance.now() - started;
latencies.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    requests,
    errors,
    records: requests * batch,
    bytes: requests * batch * recordBytes,
    elapsedMs,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  }),
);
