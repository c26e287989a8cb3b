/**
 * Property test: random sequences of append (single and concurrent), read, truncateTo,
 * retention, compaction, clock moves and close+reopen, on mem-fs and on real files, checked
 * after every step against a plain model of the log: a map from offset to record.
 *
 * The model does not predict where segments roll, so retention and compaction are checked by
 * their rules instead (a prefix goes; the newest record of every key stays, tombstones only
 * after delete.retention.ms; nothing moves) and the model then takes what the log kept.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../src/runtime/clock.ts";
import type { FileSystem } from "../src/runtime/fs.ts";
import { PartitionLog, type LogConfig } from "../src/storage/log.ts";
import { decodeRecords, splitBatches } from "../src/storage/record-batch.ts";
import { batchOf, capturingLogger, logConfig, memFs, readAll, realFs, str, type FsKind } from "./support/log-fixtures.ts";

interface ModelRecord {
  key: string | null;
  value: string | null;
  timestamp: number;
}

type Cmd =
  | { t: "append"; records: { key: string | null; value: string | null }[] }
  | { t: "appendMany"; n: number }
  | { t: "read"; at: number; maxBytes: number }
  | { t: "truncate"; back: number }
  | { t: "retention"; keepBytes: number }
  | { t: "compact" }
  | { t: "tick"; ms: number }
  | { t: "reopen" };

const keyArb = fc.option(fc.constantFrom("a", "b", "c", "d", "e"), { nil: null, freq: 5 });
const recordArb = fc.record({ key: keyArb, value: fc.option(fc.string({ minLength: 0, maxLength: 30 }), { nil: null, freq: 6 }) });
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant("append" as const), records: fc.array(recordArb, { minLength: 1, maxLength: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("appendMany" as const), n: fc.integer({ min: 2, max: 8 }) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant("read" as const), at: fc.nat(1000), maxBytes: fc.integer({ min: 1, max: 2000 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("truncate" as const), back: fc.nat(12) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("retention" as const), keepBytes: fc.integer({ min: 200, max: 3000 }) }) },
  { weight: 2, arbitrary: fc.constant({ t: "compact" as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("tick" as const), ms: fc.integer({ min: 1, max: 3000 }) }) },
  { weight: 1, arbitrary: fc.constant({ t: "reopen" as const }) },
);

const DELETE_RETENTION_MS = 2000;
/** fast-check prints `seed` and `path` on failure; FC_SEED=… FC_PATH=… replays that case. */
const replay = process.env.FC_SEED ? { seed: Number(process.env.FC_SEED), ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}) } : {};

async function run(kind: FsKind, cmds: Cmd[], segmentBytes: number, indexIntervalBytes: number): Promise<void> {
  const { fs, dir, cleanup } = await kind.make();
  const clock = new ManualClock();
  let config: LogConfig = logConfig({ segmentBytes, indexIntervalBytes, cleanupPolicy: "compact,delete", deleteRetentionMs: DELETE_RETENTION_MS });
  const open = (f: FileSystem) => PartitionLog.open(dir, config, { fs: f, clock, logger: capturingLogger().logger });
  let log = await open(fs);
  const model = new Map<number, ModelRecord>();
  let end = 0;
  let seq = 0;
  try {
    const append = (records: { key: string | null; value: string | null }[]) => {
      const ts = clock.now();
      const p = log.append(batchOf(records, ts));
      const base = end;
      records.forEach((r, i) => model.set(base + i, { ...r, timestamp: ts }));
      end += records.length;
      return p.then((res) => expect(res).toEqual({ baseOffset: base, lastOffset: base + records.length - 1 }));
    };
    for (const cmd of cmds) {
      switch (cmd.t) {
        case "append":
          await append(cmd.records);
          break;
        case "appendMany":
          await Promise.all(Array.from({ length: cmd.n }, () => append([{ key: null, value: `m${seq++}` }])));
          break;
        case "read": {
          const at = log.logStartOffset + (cmd.at % (end - log.logStartOffset + 2));
          if (at > log.highWatermark) {
            await expect(log.read(at, cmd.maxBytes)).rejects.toMatchObject({ code: "OFFSET_OUT_OF_RANGE" });
            break;
          }
          const { batches } = await log.read(at, cmd.maxBytes);
          const got = splitBatches(batches).flatMap((b) => decodeRecords(b)).filter((r) => r.offset >= at);
          const want = [...model.keys()].filter((o) => o >= at).sort((a, b) => a - b);
          expect(got.map((r) => r.offset)).toEqual(want.slice(0, got.length));
          // A batch whose kept records all lie below `at` (compaction emptied its tail) still comes
          // back, so a reader moves on past its last offset; it is never empty while records remain.
          if (want.length > 0) expect(batches.length).toBeGreaterThan(0);
          break;
        }
        case "truncate": {
          const offset = Math.max(0, end - cmd.back);
          await log.truncateTo(offset);
          if (offset < end) {
            const target = Math.max(offset, log.logStartOffset);
            // Everything from the batch holding `target` goes; the log says where that batch began.
            for (const o of [...model.keys()]) if (o >= log.logEndOffset) model.delete(o);
            expect(log.logEndOffset).toBeLessThanOrEqual(target);
            end = log.logEndOffset;
          }
          break;
        }
        case "retention": {
          config = { ...config, retentionBytes: cmd.keepBytes };
          log.updateConfig(config);
          const before = log.logStartOffset;
          await log.enforceRetention();
          config = { ...config, retentionBytes: -1 };
          log.updateConfig(config);
          expect(log.logStartOffset).toBeGreaterThanOrEqual(before);
          expect(log.logStartOffset).toBeLessThanOrEqual(log.highWatermark);
          for (const o of [...model.keys()]) if (o < log.logStartOffset) model.delete(o);
          break;
        }
        case "compact": {
          await log.compact();
          const kept = new Map((await readAll(log, log.logStartOffset, 500)).map((r) => [r.offset, r]));
          const newest = new Map<string, number>();
          for (const [o, r] of model) if (r.key !== null && (newest.get(r.key) ?? -1) < o) newest.set(r.key, o);
          for (const [o, r] of model) {
            const k = kept.get(o);
            if (k) {
              expect([str(k.key), str(k.value)]).toEqual([r.key, r.value]);
              continue;
            }
            // Only a superseded record, or a newest tombstone past delete.retention.ms, may go.
            const superseded = r.key !== null && newest.get(r.key)! > o;
            const oldTombstone = r.key !== null && r.value === null && r.timestamp < clock.now() - DELETE_RETENTION_MS;
            expect(superseded || oldTombstone, `record ${o} (${r.key}) removed`).toBe(true);
            model.delete(o);
          }
          break;
        }
        case "tick":
          clock.advance(cmd.ms);
          break;
        case "reopen":
          await log.close();
          log = await open(fs);
          break;
      }
      expect(log.logEndOffset).toBe(end);
      expect(log.highWatermark).toBe(end);
      const all = await readAll(log, log.logStartOffset, 700);
      expect(all.map((r) => [r.offset, str(r.key), str(r.value)])).toEqual(
        [...model.entries()].sort((a, b) => a[0] - b[0]).map(([o, r]) => [o, r.key, r.value]),
      );
    }
  } finally {
    await log.close().catch(() => undefined);
    await cleanup();
  }
}

describe("PartitionLog against a model", () => {
  it("on mem-fs", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 20, maxLength: 100, size: "max" }), fc.integer({ min: 250, max: 900 }), fc.integer({ min: 1, max: 300 }), (cmds, seg, idx) =>
        run(memFs, cmds, seg, idx),
      ),
      { numRuns: 200, ...replay },
    );
  });

  it("on real files", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 20, maxLength: 60, size: "max" }), fc.integer({ min: 250, max: 900 }), fc.integer({ min: 1, max: 300 }), (cmds, seg, idx) =>
        run(realFs, cmds, seg, idx),
      ),
      { numRuns: 40, ...replay },
    );
  });
});
