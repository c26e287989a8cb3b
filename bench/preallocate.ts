/**
 * `npm run bench:preallocate`: what extending the active segment ahead of its appends
 * (log.preallocate.bytes, src/storage/log.ts) saves per fdatasync on this disk, in one run.
 *
 * 1. The disk: N writes of 1 KiB, each followed by fdatasync, with blocking calls, into a file
 *    they grow (what every append did before), into space made with one ftruncate (what the log
 *    does now), and over bytes written and synced before (a reference: no allocation at all).
 * 2. The log: PartitionLog with one append of one 1 KiB record in flight (a lone append, synced on
 *    the event loop: flusher.ts), preallocateBytes 0 against the default.
 *
 * Each case runs ROUNDS times, in turn with the others (the machine is shared: the medians of
 * rounds run side by side are what to compare). Bytes and write requests sent to the device come
 * from /sys/dev/block/<device of the temp dir>/stat over each run, so other writers on the
 * machine add to them; the journal's own writes are in them, which is the point.
 *
 * Env: BENCH_PREALLOC_WRITES (default 3000) per run, BENCH_PREALLOC_ROUNDS (default 3).
 * Prints a markdown table; copy it with the date into bench/RESULTS.md under "Preallocation".
 */
import { closeSync, fdatasyncSync, fsyncSync, ftruncateSync, openSync, readFileSync, statSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../src/runtime/clock.ts";
import { nodeFileSystem } from "../src/runtime/fs.ts";
import { silentLogger } from "../src/logger.ts";
import { PartitionLog, PREALLOCATE_BYTES_DEFAULT } from "../src/storage/log.ts";
import { encodeBatch } from "../src/storage/record-batch.ts";
import { fmt, machine, median, percentile, table } from "./lib.ts";
import { logConfig } from "../test/support/log-fixtures.ts";

const WRITES = Number(process.env.BENCH_PREALLOC_WRITES ?? 3000);
const ROUNDS = Number(process.env.BENCH_PREALLOC_ROUNDS ?? 3);
const RECORD = 1024;

interface Run {
  perSecond: number;
  p50Us: number;
  p99Us: number;
  deviceKiBPerWrite: number;
  deviceWritesPerWrite: number;
}

/** Sectors written and write requests completed by the device holding `dir`, so far. */
function deviceCounters(dir: string): { sectors: number; writes: number } {
  const dev = statSync(dir).dev;
  const major = (dev >> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  const f = readFileSync(`/sys/dev/block/${major}:${minor}/stat`, "utf8").trim().split(/\s+/).map(Number);
  return { writes: f[4]!, sectors: f[6]! };
}

async function measured(dir: string, n: number, op: (i: number) => void | Promise<void>): Promise<Run> {
  const lat: number[] = [];
  const before = deviceCounters(dir);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await op(i);
    lat.push(performance.now() - s);
  }
  const elapsed = performance.now() - t0;
  const after = deviceCounters(dir);
  lat.sort((a, b) => a - b);
  return {
    perSecond: n / (elapsed / 1000),
    p50Us: percentile(lat, 50) * 1000,
    p99Us: percentile(lat, 99) * 1000,
    deviceKiBPerWrite: ((after.sectors - before.sectors) * 512) / 1024 / n,
    deviceWritesPerWrite: (after.writes - before.writes) / n,
  };
}

type Case = { name: string; run: (dir: string) => Promise<Run> };

function diskCase(name: string, prepare: (fd: number) => void): Case {
  return {
    name,
    run: async (dir) => {
      const fd = openSync(join(dir, "f"), "w+");
      try {
        prepare(fd);
        const buf = new Uint8Array(RECORD).fill(7);
        return await measured(dir, WRITES, (i) => {
          writeSync(fd, buf, 0, buf.length, i * buf.length);
          fdatasyncSync(fd);
        });
      } finally {
        closeSync(fd);
      }
    },
  };
}

function logCase(name: string, preallocateBytes: number): Case {
  return {
    name,
    run: async (dir) => {
      const log = await PartitionLog.open(dir, logConfig({ preallocateBytes }), { fs: nodeFileSystem, clock: new ManualClock(), logger: silentLogger });
      try {
        const value = new Uint8Array(RECORD).fill(7);
        return await measured(dir, WRITES, () => log.append(encodeBatch([{ key: null, value }], { timestamp: 1_795_300_000_000 })).then(() => {}));
      } finally {
        await log.close();
      }
    },
  };
}

const filled = WRITES * RECORD + (1 << 20);
const CASES: Case[] = [
  diskCase("disk: write grows the file", () => {}),
  diskCase("disk: write into ftruncate'd space", (fd) => {
    ftruncateSync(fd, filled);
    fsyncSync(fd);
  }),
  diskCase("disk: write over synced bytes (reference)", (fd) => {
    const z = new Uint8Array(1 << 20);
    for (let at = 0; at < filled; at += z.length) writeSync(fd, z, 0, z.length, at);
    fsyncSync(fd);
  }),
  logCase("log: one append in flight, log.preallocate.bytes=0", 0),
  logCase(`log: one append in flight, log.preallocate.bytes=${PREALLOCATE_BYTES_DEFAULT} (default)`, PREALLOCATE_BYTES_DEFAULT),
];

const results = new Map<string, Run[]>();
for (let round = 0; round < ROUNDS; round++) {
  for (const c of CASES) {
    const dir = await mkdtemp(join(tmpdir(), "tributary-bench-prealloc-"));
    try {
      const r = await c.run(dir);
      results.set(c.name, [...(results.get(c.name) ?? []), r]);
      console.error(`round ${round + 1}: ${c.name}: ${fmt.int(r.perSecond)}/s, p50 ${r.p50Us.toFixed(0)} µs, ${r.deviceKiBPerWrite.toFixed(1)} KiB to the device`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

const rows = CASES.map((c) => {
  const rs = results.get(c.name)!;
  return [
    c.name,
    `${fmt.int(median(rs.map((r) => r.perSecond)))} (${rs.map((r) => fmt.int(r.perSecond)).join(", ")})`,
    `${median(rs.map((r) => r.p50Us)).toFixed(0)} / ${median(rs.map((r) => r.p99Us)).toFixed(0)}`,
    `${median(rs.map((r) => r.deviceKiBPerWrite)).toFixed(1)} (${rs.map((r) => r.deviceKiBPerWrite.toFixed(1)).join(", ")})`,
    median(rs.map((r) => r.deviceWritesPerWrite)).toFixed(2),
  ];
});
console.log(`### ${new Date().toISOString().slice(0, 10)}: preallocation\n`);
console.log(`${machine()}; ${WRITES} writes of ${RECORD} B per run, ${ROUNDS} rounds in turn; medians (each round).\n`);
console.log(table(["case", "writes/s", "p50 / p99 µs", "KiB to the device per write", "device writes per write"], rows));
