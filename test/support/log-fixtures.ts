/** Shared helpers for the storage tests: configs, batches, temp dirs, reading a log back whole. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger, type Logger } from "../../src/logger.ts";
import type { FileSystem } from "../../src/runtime/fs.ts";
import { nodeFileSystem } from "../../src/runtime/fs.ts";
import { MemFileSystem } from "../../src/runtime/mem-fs.ts";
import type { LogConfig, PartitionLog } from "../../src/storage/log.ts";
import { BATCH_HEADER_BYTES, batchSizeAt, decodeRecords, encodeBatch, readBatchHeader, splitBatches, type DecodedRecord, type RecordInput } from "../../src/storage/record-batch.ts";

export function logConfig(overrides: Partial<LogConfig> = {}): LogConfig {
  return {
    segmentBytes: 64 * 1024 * 1024,
    segmentMs: 7 * 24 * 3600_000,
    indexIntervalBytes: 4096,
    retentionMs: -1,
    retentionBytes: -1,
    cleanupPolicy: "delete",
    deleteRetentionMs: 24 * 3600_000,
    maxMessageBytes: 1024 * 1024,
    flush: { mode: "batch" },
    maxPendingBytes: 16 * 1024 * 1024,
    ...overrides,
  };
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function text(s: string): Uint8Array {
  return enc.encode(s);
}
export function str(b: Uint8Array | null): string | null {
  return b === null ? null : dec.decode(b);
}

/** A batch of records with string keys/values (null allowed), all at `timestamp` unless given. */
export function batchOf(records: { key?: string | null; value: string | null; timestamp?: number }[], timestamp = 1_700_000_000_000): Uint8Array {
  const inputs: RecordInput[] = records.map((r) => ({
    key: r.key == null ? null : text(r.key),
    value: r.value === null ? null : text(r.value),
    ...(r.timestamp !== undefined ? { timestamp: r.timestamp } : {}),
  }));
  return encodeBatch(inputs, { timestamp });
}

/** n records "prefix-i" in one batch. */
export function valuesBatch(prefix: string, n: number, timestamp?: number): Uint8Array {
  return batchOf(Array.from({ length: n }, (_, i) => ({ value: `${prefix}-${i}` })), timestamp);
}

/** Every record from `from` to the high watermark, reading in `maxBytes` steps. */
export async function readAll(log: PartitionLog, from = log.logStartOffset, maxBytes = 64 * 1024): Promise<DecodedRecord[]> {
  const out: DecodedRecord[] = [];
  let offset = from;
  while (offset < log.highWatermark) {
    const { batches } = await log.read(offset, maxBytes);
    if (batches.length === 0) break;
    for (const b of splitBatches(batches)) {
      for (const r of decodeRecords(b)) if (r.offset >= offset) out.push(r);
      const h = readBatchHeader(b);
      offset = h.baseOffset + h.lastOffsetDelta + 1;
    }
  }
  return out;
}

export interface FsKind {
  name: string;
  /** A fresh file system and a directory on it, plus a cleanup. */
  make(): Promise<{ fs: FileSystem; dir: string; cleanup: () => Promise<void> }>;
}

export const realFs: FsKind = {
  name: "nodeFileSystem",
  async make() {
    const root = await mkdtemp(join(tmpdir(), "tributary-storage-"));
    return { fs: nodeFileSystem, dir: join(root, "p0"), cleanup: () => rm(root, { recursive: true, force: true }) };
  },
};

export const memFs: FsKind = {
  name: "mem-fs",
  async make() {
    return { fs: new MemFileSystem(), dir: "/data/p0", cleanup: async () => {} };
  },
};

/** A logger that keeps what it is told, for asserting on warnings. */
export function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { logger: createLogger("debug", (l) => lines.push(JSON.parse(l) as Record<string, unknown>)), lines };
}

/** Wait until `cond` holds, yielding to the event loop between checks; fails after `timeoutMs`. */
export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** Where a segment file's batches end: the first place no whole batch starts (the zeros of extended space after them, or junk). */
export function batchesEnd(file: Uint8Array): number {
  let pos = 0;
  while (pos + BATCH_HEADER_BYTES <= file.length) {
    let n: number;
    try {
      n = batchSizeAt(file, pos);
    } catch {
      break; // a length no batch has: zeros, or junk
    }
    if (pos + n > file.length) break;
    pos += n;
  }
  return pos;
}
