/**
 * `npm run bench`: append and read throughput and produce latency of the single-node broker, in
 * process and over HTTP on Bun and on Deno, next to what this disk itself does in the same run.
 *
 * 1. Disk baseline: sequential write MB/s (1 MiB writes, one fdatasync at the end), durable
 *    sequential write MB/s (100 KiB write + fdatasync each), and fdatasync/s of 4 KiB writes.
 * 2. In process (Broker.produce, flush.mode=batch, acks=1): 100 B and 1 KiB records, batches of
 *    1 and 100, many calls in flight; records/s, MB/s, p50/p99 per call, records per fdatasync.
 *    Then a full read back of what was written (Broker.fetch), records/s and MB/s.
 * 3. Over HTTP: a broker process on Bun, then on Deno; a load generator in its own Bun process
 *    (bench/http-load.ts) with JSON requests.
 *
 * Prints a markdown table; copy it with the date into bench/RESULTS.md. `npm run bench` runs it
 * on Bun, then its in-process part again on Deno (BENCH_ONLY=inprocess).
 * Options (env): BENCH_SECONDS (default 3) per scenario; BENCH_ONLY=disk,inprocess,http to run
 * some parts (the disk baseline always runs: the other parts are read against it).
 */
import { mkdtemp, rm, open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Broker } from "../src/broker.ts";
import { defaultConfig } from "../src/config.ts";
import { silentLogger } from "../src/logger.ts";
import { nodeFileSystem, type FileSystem } from "../src/runtime/fs.ts";
import { fmt, machine, percentile, runLoadProcess, table, type LoadResult } from "./lib.ts";
import { startBrokerProcess } from "../test/support/broker-process.ts";

const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const only = new Set((process.env.BENCH_ONLY ?? "disk,inprocess,http").split(","));

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-bench-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- 1. the disk itself --------------------------------------------------------------------

async function diskBaseline(): Promise<{ seqMBs: number; durableSeqMBs: number; syncsPerS: number }> {
  return withTempDir(async (dir) => {
    const fh = await open(join(dir, "disk"), "w");
    const mib = new Uint8Array(1 << 20).fill(7);
    let t = performance.now();
    let bytes = 0;
    while (bytes < 256 * (1 << 20)) {
      await fh.write(mib, 0, mib.length, null);
      bytes += mib.length;
    }
    await fh.datasync();
    const seqMBs = bytes / ((performance.now() - t) / 1000);

    const chunk = new Uint8Array(100 * 1024).fill(9);
    t = performance.now();
    bytes = 0;
    while (performance.now() - t < seconds * 1000) {
      await fh.write(chunk, 0, chunk.length, null);
      await fh.datasync();
      bytes += chunk.length;
    }
    const durableSeqMBs = bytes / ((performance.now() - t) / 1000);

    const small = new Uint8Array(4096).fill(1);
    t = performance.now();
    let syncs = 0;
    while (performance.now() - t < seconds * 1000) {
      await fh.write(small, 0, small.length, null);
      await fh.datasync();
      syncs++;
    }
    const syncsPerS = syncs / ((performance.now() - t) / 1000);
    await fh.close();
    return { seqMBs, durableSeqMBs, syncsPerS };
  });
}

// ---- 2. in process -------------------------------------------------------------------------

function countingFs(counter: { syncs: number }): FileSystem {
  return {
    ...nodeFileSystem,
    async open(path, mode) {
      const fh = await nodeFileSystem.open(path, mode);
      return {
        read: (b, o, l, p) => fh.read(b, o, l, p),
        write: (b, p) => fh.write(b, p),
        writev: (bs, p) => fh.writev(bs, p),
        datasync: () => {
          counter.syncs++;
          return fh.datasync();
        },
        truncate: (l) => fh.truncate(l),
        size: () => fh.size(),
        close: () => fh.close(),
      };
    },
  };
}

interface InProcessResult {
  recordsPerS: number;
  mbPerS: number;
  p50: number;
  p99: number;
  recordsPerSync: number;
  readRecordsPerS: number;
  readMBs: number;
}

async function inProcess(recordBytes: number, batch: number, inFlight: number): Promise<InProcessResult> {
  return withTempDir(async (dir) => {
    const counter = { syncs: 0 };
    const broker = await Broker.open(defaultConfig({ "data.dir": dir, "partition.max.pending.bytes": String(64 << 20) }), {
      logger: silentLogger,
      fs: countingFs(counter),
    });
    await broker.createTopic("bench", 1);
    const value = new Uint8Array(recordBytes).fill(120);
    const key = new TextEncoder().encode("device-1");
    const records = Array.from({ length: batch }, () => ({ key, value, partition: 0 }));
    const latencies: number[] = [];
    let produced = 0;
    const syncsBefore = counter.syncs;
    const started = performance.now();
    const end = started + seconds * 1000;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (performance.now() < end) {
          const t0 = performance.now();
          await broker.produce("bench", records, 1);
          latencies.push(performance.now() - t0);
          produced += batch;
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    const syncs = counter.syncs - syncsBefore;
    latencies.sort((a, b) => a - b);

    const readStart = performance.now();
    let offset = 0;
    let read = 0;
    for (;;) {
      const f = await broker.fetch("bench", 0, offset, { maxBytes: 4 << 20, maxRecords: 10_000 });
      read += f.records.length;
      if (f.records.length === 0) break;
      offset = f.nextOffset;
    }
    const readElapsed = (performance.now() - readStart) / 1000;
    await broker.close();
    if (read !== produced) throw new Error(`read back ${read} of ${produced} records`);
    return {
      recordsPerS: produced / elapsed,
      mbPerS: (produced * recordBytes) / elapsed,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      recordsPerSync: syncs > 0 ? produced / syncs : NaN,
      readRecordsPerS: read / readElapsed,
      readMBs: (read * recordBytes) / readElapsed,
    };
  });
}

// ---- 3. over HTTP --------------------------------------------------------------------------


function runLoad(url: string, recordBytes: number, batch: number, concurrency: number): Promise<LoadResult> {
  return runLoadProcess(["bench/http-load.ts", url, "bench", String(recordBytes), String(batch), String(concurrency), String(seconds * 1000)]);
}

async function overHttp(runtime: "bun" | "deno", recordBytes: number, batch: number, concurrency: number): Promise<LoadResult> {
  return withTempDir(async (dir) => {
    const broker = await startBrokerProcess({ runtime, dataDir: dir });
    const url = broker.url;
    try {
      const res = await fetch(`${url}/v1/topics`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "bench", partitions: 1 }) });
      if (res.status !== 201) throw new Error(`create topic: ${res.status} ${await res.text()}`);
      return await runLoad(url, recordBytes, batch, concurrency);
    } finally {
      await broker.stop();
    }
  });
}

// ---- run -----------------------------------------------------------------------------------

const date = new Date().toISOString().slice(0, 10);
console.log(`# Tributary single-node benchmark, ${date}\n\n${machine()}; ${seconds} s per scenario\n`);

const disk = await diskBaseline();
console.log(
  table(
    ["disk baseline", "value"],
    [
      ["sequential write, 1 MiB writes, one fdatasync", `${fmt.mb(disk.seqMBs)} MB/s`],
      ["sequential write, fdatasync after every 100 KiB", `${fmt.mb(disk.durableSeqMBs)} MB/s`],
      ["fdatasync of 4 KiB writes", `${fmt.int(disk.syncsPerS)} /s`],
    ],
  ),
);
console.log();

const rows: (string | number)[][] = [];
const inProcessScenarios = [
  [100, 1, 64],
  [100, 100, 16],
  [1024, 1, 64],
  [1024, 100, 16],
  [1024, 100, 32],
] as const;
for (const [recordBytes, batch, inFlight] of only.has("inprocess") ? inProcessScenarios : []) {
  const r = await inProcess(recordBytes, batch, inFlight);
  rows.push([
    `${recordBytes} B`,
    batch,
    inFlight,
    fmt.int(r.recordsPerS),
    fmt.mb(r.mbPerS),
    fmt.ratio(r.mbPerS / disk.durableSeqMBs),
    fmt.ms(r.p50),
    fmt.ms(r.p99),
    fmt.int(r.recordsPerSync),
    fmt.int(r.readRecordsPerS),
    fmt.mb(r.readMBs),
  ]);
}
if (rows.length > 0) console.log("In process, Broker.produce with acks=1, flush.mode=batch (group commit), one partition:\n");
if (rows.length > 0) console.log(
  table(
    ["record", "batch", "in flight", "append records/s", "append MB/s", "vs disk durable MB/s", "p50 ms", "p99 ms", "records per fdatasync", "read records/s", "read MB/s"],
    rows,
  ),
);
console.log();

const httpRows: (string | number)[][] = [];
for (const runtime of only.has("http") ? (["bun", "deno"] as const) : []) {
  for (const [recordBytes, batch, concurrency] of [
    [100, 1, 32],
    [100, 100, 8],
    [1024, 1, 32],
    [1024, 100, 8],
  ] as const) {
    const r = await overHttp(runtime, recordBytes, batch, concurrency);
    const s = r.elapsedMs / 1000;
    httpRows.push([runtime, `${recordBytes} B`, batch, concurrency, fmt.int(r.records / s), fmt.mb(r.bytes / s), fmt.ms(r.p50), fmt.ms(r.p99), r.errors]);
  }
}
if (httpRows.length > 0) console.log("Over HTTP (JSON, acks=1, flush.mode=batch), broker process vs a load generator process on Bun:\n");
if (httpRows.length > 0) console.log(table(["broker on", "record", "batch", "requests in flight", "records/s", "MB/s", "p50 ms", "p99 ms", "errors"], httpRows));
