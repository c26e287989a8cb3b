/**
 * The memory budget for small hardware (bench/vs.ts scenario `memory`), per runtime (Bun, Deno):
 *
 * 1. Idle: a fresh broker with one topic of 100 partitions; RSS once it has settled (sampled each
 *    second until three samples in a row move less than 0.5 MB, at most 20 s). Goal < 80 MB.
 * 2. Under load: the throughput run (acks=1, flush.mode=batch, 1 KiB records, batches of 100,
 *    16 in flight, gRPC ProduceStream, a Subscribe tail alongside); peak RSS (VmHWM). Goal < 256 MB.
 * 3. Soak (scenario `soak`, `npm run bench:soak`; `soakRuns`): the maximum rate measured as in
 *    step 2 (at least 10 s), then a fresh broker with the same producer held at half of it for
 *    BENCH_SOAK_SECONDS (default 600), with retention on (64 MiB segments, 256 MiB per partition,
 *    maintenance every 5 s) so the disk stays bounded; RSS sampled every BENCH_SOAK_SAMPLE_S
 *    (default 10) seconds. Reports RSS at the first sample, at a quarter of the run, at the end,
 *    the peak, and the growth over the second half (slope of a least-squares line, MB per minute).
 *    No consumer runs in the soak: the generator's end-to-end bookkeeping grows with the offsets,
 *    and would blur the broker's own growth.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runLoadProcess } from "./lib.ts";
import { peakRssBytes, rssBytes } from "./proc-stats.ts";
import { createTopic, startSystem, STREAM_INFLIGHT_MAX, TOPIC, type Measured } from "./vs-systems.ts";
import { startBrokerProcess, type Runtime } from "../test/support/broker-process.ts";

export const IDLE_PARTITIONS = 100;
const SETTLE_DELTA_BYTES = 0.5e6;
const SETTLE_MAX_MS = 20_000;

export interface MemoryResult {
  runtime: Runtime;
  idleRssBytes: number;
  load: Measured;
}

export interface SoakResult {
  runtime: Runtime;
  seconds: number;
  /** The maximum measured first, records/s; the soak's target is half of it. */
  maxRate: number;
  rate: number;
  achievedRate: number;
  samples: { atS: number; rssBytes: number }[];
  firstRssBytes: number;
  quarterRssBytes: number;
  endRssBytes: number;
  peakRssBytes: number;
  /** Slope of RSS over the second half, MB per minute. */
  growthMBPerMin: number;
  p99: number;
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-bench-mem-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function settledRss(pid: number): Promise<number> {
  const started = Date.now();
  let prev = rssBytes(pid);
  let calm = 0;
  while (calm < 3 && Date.now() - started < SETTLE_MAX_MS) {
    await sleep(1000);
    const now = rssBytes(pid);
    calm = Math.abs(now - prev) < SETTLE_DELTA_BYTES ? calm + 1 : 0;
    prev = now;
  }
  return prev;
}

async function idle(runtime: Runtime): Promise<number> {
  return withDir(async (dir) => {
    const broker = await startBrokerProcess({ runtime, dataDir: dir });
    try {
      await createTopic(broker, IDLE_PARTITIONS);
      return await settledRss(broker.pid);
    } finally {
      await broker.stop();
    }
  });
}

async function underLoad(runtime: Runtime, seconds: number): Promise<Measured> {
  return withDir(async (dir) => {
    const sys = await startSystem({ system: "tributary", runtime, flush: "batch", peers: 1 }, dir);
    try {
      return await sys.produce({ recordBytes: 1024, batch: 100, inflight: 16, durationMs: seconds * 1000 });
    } finally {
      await sys.stop();
    }
  });
}

function slopePerMin(points: { atS: number; rssBytes: number }[]): number {
  if (points.length < 2) return NaN;
  const n = points.length;
  const mx = points.reduce((a, p) => a + p.atS, 0) / n;
  const my = points.reduce((a, p) => a + p.rssBytes, 0) / n;
  const num = points.reduce((a, p) => a + (p.atS - mx) * (p.rssBytes - my), 0);
  const den = points.reduce((a, p) => a + (p.atS - mx) ** 2, 0);
  return den === 0 ? 0 : ((num / den) * 60) / 1e6;
}

async function soak(runtime: Runtime, seconds: number, maxRate: number): Promise<SoakResult> {
  const rate = maxRate / 2;
  const sampleMs = Number(process.env.BENCH_SOAK_SAMPLE_S ?? 10) * 1000;
  return withDir(async (dir) => {
    const broker = await startBrokerProcess({
      runtime,
      dataDir: dir,
      args: ["--grpc-stream-max-inflight", String(STREAM_INFLIGHT_MAX), "--maintenance-interval-ms", "5000"],
    });
    try {
      await createTopic(broker, 1, { "segment.bytes": 64 * 2 ** 20, "retention.bytes": 256 * 2 ** 20 });
      const samples: { atS: number; rssBytes: number }[] = [];
      const t0 = performance.now();
      const timer = setInterval(() => samples.push({ atS: (performance.now() - t0) / 1000, rssBytes: rssBytes(broker.pid) }), sampleMs);
      const r = await runLoadProcess(
        ["bench/vs-grpc-load.ts", "stream", broker.grpcAddress, TOPIC, "1024", "100", "16", String(seconds * 1000)],
        { LOAD_RATE: String(Math.round(rate)), LOAD_E2E: "0" },
      ).finally(() => clearInterval(timer));
      samples.push({ atS: (performance.now() - t0) / 1000, rssBytes: rssBytes(broker.pid) });
      const at = (frac: number) => samples.find((s) => s.atS >= seconds * frac) ?? samples[samples.length - 1]!;
      return {
        runtime,
        seconds,
        maxRate,
        rate,
        achievedRate: r.records / (r.elapsedMs / 1000),
        samples,
        firstRssBytes: samples[0]!.rssBytes,
        quarterRssBytes: at(0.25).rssBytes,
        endRssBytes: samples[samples.length - 1]!.rssBytes,
        peakRssBytes: peakRssBytes(broker.pid),
        growthMBPerMin: slopePerMin(samples.filter((s) => s.atS >= seconds / 2)),
        p99: r.p99,
      };
    } finally {
      await broker.stop();
    }
  });
}

export async function memoryBudget(runtimes: Runtime[], seconds: number): Promise<MemoryResult[]> {
  const out: MemoryResult[] = [];
  for (const runtime of runtimes) {
    const idleRssBytes = await idle(runtime);
    const load = await underLoad(runtime, seconds);
    out.push({ runtime, idleRssBytes, load });
    console.error(`done: memory ${runtime}`);
  }
  return out;
}

/** Per runtime: the maximum rate (a `maxRateSeconds` run), then the soak at half of it. */
export async function soakRuns(runtimes: Runtime[], maxRateSeconds: number, soakSeconds: number): Promise<SoakResult[]> {
  const out: SoakResult[] = [];
  for (const runtime of runtimes) {
    const load = await underLoad(runtime, maxRateSeconds);
    const maxRate = load.records / (load.elapsedMs / 1000);
    console.error(`soak ${runtime}: maximum ${Math.round(maxRate)} records/s; ${soakSeconds} s at half of it`);
    out.push(await soak(runtime, soakSeconds, maxRate));
    console.error(`done: soak ${runtime}`);
  }
  return out;
}
