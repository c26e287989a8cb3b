/**
 * `npm run bench:grpc`: produce throughput over gRPC, ProduceStream against unary Produce against
 * HTTP, with 100 B and 1 KiB records in batches of 100, against a broker process on Bun and then
 * on Deno (acks=1, flush.mode=batch, one partition, a fresh data directory per scenario). The
 * producer is a separate Bun process: bench/grpc-load.ts for gRPC, bench/http-load.ts for HTTP.
 *
 * Prints a markdown table; copy it with the date into bench/RESULTS.md.
 * Options (env): BENCH_SECONDS (default 3) per scenario; BENCH_RUNTIMES=bun,deno;
 * BENCH_TRANSPORTS=stream,unary,http.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fmt, machine, runLoadProcess, table, type LoadResult } from "./lib.ts";
import { startBrokerProcess, type BrokerProcess } from "../test/support/broker-process.ts";

type Runtime = "bun" | "deno";
type Transport = "stream" | "unary" | "http";

const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const runtimes = (process.env.BENCH_RUNTIMES ?? "bun,deno").split(",") as Runtime[];
const transports = (process.env.BENCH_TRANSPORTS ?? "stream,unary,http").split(",") as Transport[];
/** Batches in flight: ProduceStream stays under grpc.stream.max.inflight (32); HTTP as in npm run bench. */
const IN_FLIGHT: Record<Transport, number> = { stream: 16, unary: 8, http: 8 };
const BATCH = 100;


function runLoad(transport: Transport, broker: BrokerProcess, recordBytes: number): Promise<LoadResult> {
  const n = String(IN_FLIGHT[transport]);
  const ms = String(seconds * 1000);
  const args =
    transport === "http"
      ? ["bench/http-load.ts", broker.url, "bench", String(recordBytes), String(BATCH), n, ms]
      : ["bench/grpc-load.ts", transport, broker.grpcAddress, "bench", String(recordBytes), String(BATCH), n, ms];
  return runLoadProcess(args);
}

async function scenario(runtime: Runtime, transport: Transport, recordBytes: number): Promise<LoadResult> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-bench-grpc-"));
  try {
    const broker = await startBrokerProcess({ runtime, dataDir: dir });
    try {
      const res = await fetch(`${broker.url}/v1/topics`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "bench", partitions: 1 }),
      });
      if (res.status !== 201) throw new Error(`create topic: ${res.status} ${await res.text()}`);
      return await runLoad(transport, broker, recordBytes);
    } finally {
      await broker.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const NAMES: Record<Transport, string> = { stream: "gRPC ProduceStream", unary: "gRPC Produce (unary)", http: "HTTP JSON" };
const date = new Date().toISOString().slice(0, 10);
console.log(`# Tributary gRPC benchmark, ${date}\n\n${machine()}; ${seconds} s per scenario; acks=1, flush.mode=batch, one partition, batches of ${BATCH}\n`);
const rows: (string | number)[][] = [];
for (const runtime of runtimes) {
  for (const recordBytes of [100, 1024]) {
    for (const transport of transports) {
      const r = await scenario(runtime, transport, recordBytes);
      const s = r.elapsedMs / 1000;
      rows.push([
        runtime === "bun" ? "Bun" : "Deno",
        NAMES[transport],
        recordBytes === 1024 ? "1 KiB" : `${recordBytes} B`,
        IN_FLIGHT[transport],
        fmt.int(r.records / s),
        fmt.mb(r.bytes / s),
        `${fmt.ms(r.p50)} / ${fmt.ms(r.p99)}`,
        r.errors,
      ]);
      console.error(`done: ${runtime} ${transport} ${recordBytes} B`);
    }
  }
}
console.log(table(["broker on", "transport", "record", "batches in flight", "records/s", "MB/s", "p50 / p99 ms per batch", "errors"], rows));
