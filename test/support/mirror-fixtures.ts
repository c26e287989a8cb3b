/**
 * Mirror test fixtures: an edge partition's batches as the edge's link would send them (encoded,
 * at their source offsets, stamped), sends made of them, and the target partition read back.
 *
 * @example
 *   const src = sourceLog([3, 2, 4]);                 // batches of 3, 2 and 4 records at offsets 0, 3, 5
 *   await broker.mirrorAppend(centralSend("site7", "t", 0, src.slice(0, 2)));
 *   expect(await targetValues(broker, "site7.t", 0)).toEqual(src.flatMap((b) => b.values).slice(0, 5));
 */
import { gzipSync } from "node:zlib";
import type { Broker } from "../../src/broker.ts";
import type { CentralSend } from "../../src/mirror/central.ts";
import { stampBatch } from "../../src/mirror/stamp.ts";
import type { Gap, TopicBinding } from "../../src/mirror/types.ts";
import { encodeBatch, setBatchBaseOffset } from "../../src/storage/record-batch.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

export interface SourceBatch {
  /** First source offset. */
  readonly from: number;
  /** End source offset (exclusive). */
  readonly to: number;
  readonly values: string[];
  /** Stamped RecordBatch v2 bytes (a fresh copy each call: the central's log rewrites baseOffset in place). */
  bytes(): Uint8Array;
}

/** One stamped batch of `values` at source offset `from`. */
export function sourceBatch(from: number, values: string[], keyOf: (v: string) => string | null = () => null): SourceBatch {
  const bytes = encodeBatch(
    values.map((v) => {
      const k = keyOf(v);
      return { key: k === null ? null : enc.encode(k), value: enc.encode(v) };
    }),
    { timestamp: 1_800_000_000_000 },
  );
  setBatchBaseOffset(bytes, from);
  stampBatch(bytes);
  return { from, to: from + values.length, values, bytes: () => bytes.slice() };
}

/** Batches of the given sizes, back to back from `start` (values `v<offset>`), `skip` offsets left between them. */
export function sourceLog(sizes: readonly number[], start = 0, skip = 0): SourceBatch[] {
  const out: SourceBatch[] = [];
  let at = start;
  for (const n of sizes) {
    out.push(sourceBatch(at, Array.from({ length: n }, (_, i) => `v${at + i}`)));
    at += n + skip;
  }
  return out;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A send of `batches` for cluster/topic/partition, gzipped, from the first batch's offset unless told. */
export function centralSend(cluster: string, topic: string, partition: number, batches: readonly SourceBatch[], options: { fromOffset?: number; gaps?: Gap[]; gzip?: boolean } = {}): CentralSend {
  const raw = concat(batches.map((b) => b.bytes()));
  const gzip = options.gzip ?? true;
  return {
    source: { cluster, topic, partition },
    fromOffset: options.fromOffset ?? batches[0]?.from ?? 0,
    payload: gzip ? new Uint8Array(gzipSync(raw)) : raw,
    compression: gzip ? "gzip" : "none",
    gaps: options.gaps ?? [],
  };
}

export function binding(sourceTopic: string, target: string, partitions = 1, sourceTopicId = "id0", config: Record<string, string> = {}): TopicBinding {
  return { sourceTopic, sourceTopicId, target, partitions, config };
}

/** Every record value of a target partition, in offset order. */
export async function targetValues(broker: Broker, topic: string, partition: number): Promise<string[]> {
  return (await targetRecords(broker, topic, partition)).map((r) => r.value);
}

export async function targetRecords(broker: Broker, topic: string, partition: number): Promise<{ offset: number; value: string }[]> {
  const out: { offset: number; value: string }[] = [];
  let offset = broker.describeTopic(topic).partitions[partition]!.logStartOffset;
  for (;;) {
    const r = await broker.fetch(topic, partition, offset, { maxRecords: 10_000, maxBytes: 64 << 20 });
    for (const rec of r.records) out.push({ offset: rec.offset, value: dec.decode(rec.value!) });
    if (r.nextOffset >= r.highWatermark || r.nextOffset === offset) return out;
    offset = r.nextOffset;
  }
}
