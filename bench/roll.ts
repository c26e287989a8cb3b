/**
 * `npm run bench:roll`: what a segment roll costs the append that triggers it. PartitionLog on
 * real files in the temp dir, one batch of 100 records of 1 KiB in flight (acks after fsync, as
 * acks=1), segment.bytes 1 MiB so that every tenth append rolls; the appends that rolled a segment
 * against the others: median, p99 and max latency, and the ratio of the medians.
 *
 * Every append waiting behind a roll waits for what the roll syncs: the closed segment cut to its
 * batches and synced, the new segment created and its directory synced (the closed segment's
 * index files are written after, off the writer's path: src/storage/log.ts `roll`).
 *
 * Env: BENCH_ROLL_APPENDS (default 500) per round, BENCH_ROLL_ROUNDS (default 3).
 * Prints a markdown table; copy it with the date into bench/RESULTS.md under "Segment rolls".
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock } from "../src/runtime/clock.ts";
import { nodeFileSystem } from "../src/runtime/fs.ts";
import { silentLogger } from "../src/logger.ts";
import { PartitionLog } from "../src/storage/log.ts";
import { encodeBatch } from "../src/storage/record-batch.ts";
import { logConfig } from "../test/support/log-fixtures.ts";
import { machine, median, percentile, table } from "./lib.ts";

const APPENDS = Number(process.env.BENCH_ROLL_APPENDS ?? 500);
const ROUNDS = Number(process.env.BENCH_ROLL_ROUNDS ?? 3);
const SEGMENT_BYTES = 1 << 20;
const RECORDS = 100;
const RECORD = 1024;

interface Latencies {
  rolling: number[];
  others: number[];
}

async function round(): Promise<Latencies> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-bench-roll-"));
  const log = await PartitionLog.open(dir, logConfig({ segmentBytes: SEGMENT_BYTES }), { fs: nodeFileSystem, clock: systemClock, logger: silentLogger });
  const value = new Uint8Array(RECORD).fill(7);
  const out: Latencies = { rolling: [], others: [] };
  try {
    for (let i = 0; i < APPENDS; i++) {
      const batch = encodeBatch(Array.from({ length: RECORDS }, () => ({ key: null, value })), { timestamp: Date.now() });
      const segments = log.segmentCount;
      const t0 = performance.now();
      await log.append(batch);
      (log.segmentCount > segments ? out.rolling : out.others).push(performance.now() - t0);
    }
  } finally {
    await log.close();
    await rm(dir, { recursive: true, force: true });
  }
  return out;
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1]! };
};

const rows: (string | number)[][] = [];
const ratios: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const l = await round();
  const [a, b] = [stats(l.rolling), stats(l.others)];
  ratios.push(a.p50 / b.p50);
  for (const [name, s, n] of [["rolling appends", a, l.rolling.length], ["other appends", b, l.others.length]] as const) {
    rows.push([r + 1, name, n, s.p50.toFixed(2), s.p99.toFixed(2), s.max.toFixed(2)]);
  }
  console.error(`round ${r + 1}: rolling ${a.p50.toFixed(2)} ms, others ${b.p50.toFixed(2)} ms (median)`);
}
console.log(`### ${new Date().toISOString().slice(0, 10)}: segment rolls\n`);
console.log(`${machine()}; ${APPENDS} appends of ${RECORDS} x ${RECORD} B per round, one in flight, segment.bytes ${SEGMENT_BYTES}, ${ROUNDS} rounds.\n`);
console.log(table(["round", "appends", "count", "p50 ms", "p99 ms", "max ms"], rows));
console.log(`\nRolling / other append, median latency: ${median(ratios).toFixed(1)}x (rounds: ${ratios.map((x) => `${x.toFixed(1)}x`).join(", ")}).`);
