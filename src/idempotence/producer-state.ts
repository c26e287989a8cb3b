/**
 * Idempotent-producer state of one partition, as Kafka keeps it: per producer id, its epoch and
 * the sequence ranges and offsets of its last BATCHES_KEPT_PER_PRODUCER batches.
 *
 * check() decides, synchronously, what an incoming batch is:
 *   - the same (firstSeq, lastSeq) as one of the last 5 batches: a retry, answered with the
 *     original offsets (once those are durable) and not written again;
 *   - firstSeq = last batch's lastSeq + 1: the next batch, appended;
 *   - anything else: OUT_OF_ORDER_SEQUENCE (a gap, or an old batch beyond the last 5);
 *   - an older epoch: PRODUCER_FENCED; a newer epoch starts again at sequence 0.
 * The broker calls check(), then log.append(), then record(), with no await in between, so two
 * concurrent calls of one producer are checked in the order the log numbers them.
 *
 * Bounded: at most MAX_PRODUCERS_PER_PARTITION producers per partition; beyond, the least
 * recently used is forgotten. A forgotten producer (or one whose batches lie only in segments
 * older than the ones rebuilt on open) that sends a sequence other than 0 gets
 * UNKNOWN_PRODUCER_ID and must init a new producer id; a retry of its old batches can no longer
 * be recognised, which is the price of the bound, as in Kafka.
 *
 * After a restart the state is rebuilt from the batch headers of the log (producerId,
 * producerEpoch, baseSequence, offsets): see rebuildProducerState.
 *
 * @example
 *   const verdict = table.check(7, 0, 0, 9);   // { kind: "append" }
 *   table.record(7, 0, { firstSeq: 0, lastSeq: 9, baseOffset: 100, lastOffset: 109, done });
 *   table.check(7, 0, 0, 9);                   // { kind: "duplicate", batch: { baseOffset: 100, ... } }
 */
import { TributaryError } from "../errors.ts";
import type { PartitionLog } from "../storage/log.ts";
import { readBatchHeader, splitBatches } from "../storage/record-batch.ts";

export const BATCHES_KEPT_PER_PRODUCER = 5;
/** Producers remembered per partition: about 200 bytes each, so 1000 is ~200 KiB a partition at most. */
export const MAX_PRODUCERS_PER_PARTITION = 1000;
/** Segments (the newest ones) whose batch headers are scanned to rebuild the state on first use. */
export const REBUILD_SEGMENTS = 2;
const REBUILD_READ_BYTES = 1 << 20;

export interface BatchRecord {
  firstSeq: number;
  lastSeq: number;
  baseOffset: number;
  lastOffset: number;
  /** Resolves once the batch is durable (at once for batches read back from the log). */
  done: Promise<void>;
}

interface ProducerEntry {
  epoch: number;
  batches: BatchRecord[];
}

export type Verdict = { kind: "append" } | { kind: "duplicate"; batch: BatchRecord };

export class ProducerStateTable {
  private readonly producers = new Map<number, ProducerEntry>();

  constructor(private readonly maxProducers = MAX_PRODUCERS_PER_PARTITION) {}

  get size(): number {
    return this.producers.size;
  }

  check(producerId: number, epoch: number, firstSeq: number, lastSeq: number): Verdict {
    const e = this.producers.get(producerId);
    if (!e) {
      if (firstSeq !== 0) {
        throw new TributaryError(
          "UNKNOWN_PRODUCER_ID",
          `producer ${producerId} has no state on this partition (never written here, or forgotten beyond ${this.maxProducers} producers): its first batch must have sequence 0, got ${firstSeq}; init a new producer id`,
        );
      }
      return { kind: "append" };
    }
    if (epoch < e.epoch) throw new TributaryError("PRODUCER_FENCED", `producer ${producerId} epoch ${epoch} is fenced by epoch ${e.epoch}`);
    if (epoch > e.epoch) {
      if (firstSeq !== 0) throw new TributaryError("OUT_OF_ORDER_SEQUENCE", `producer ${producerId} epoch ${epoch} is new here: its first sequence must be 0, got ${firstSeq}`);
      return { kind: "append" };
    }
    const dup = e.batches.find((b) => b.firstSeq === firstSeq && b.lastSeq === lastSeq);
    if (dup) return { kind: "duplicate", batch: dup };
    const expected = e.batches[e.batches.length - 1]!.lastSeq + 1;
    if (firstSeq !== expected) {
      const why = firstSeq < expected ? "it repeats sequences already written (an old batch beyond the last 5, or a retry with other records)" : "it leaves a gap";
      throw new TributaryError("OUT_OF_ORDER_SEQUENCE", `producer ${producerId} expected sequence ${expected} on this partition, got ${firstSeq}: ${why}`);
    }
    return { kind: "append" };
  }

  /** Note a batch appended (or read back on rebuild); the producer becomes the most recently used. */
  record(producerId: number, epoch: number, batch: BatchRecord): void {
    let e = this.producers.get(producerId);
    if (e) this.producers.delete(producerId);
    if (!e || epoch > e.epoch) e = { epoch, batches: [] };
    e.batches.push(batch);
    if (e.batches.length > BATCHES_KEPT_PER_PRODUCER) e.batches.shift();
    this.producers.set(producerId, e);
    if (this.producers.size > this.maxProducers) {
      const oldest = this.producers.keys().next().value;
      if (oldest !== undefined) this.producers.delete(oldest);
    }
  }
}

/**
 * Rebuild a partition's table from the batch headers of its newest REBUILD_SEGMENTS segments, up
 * to the durable end of the log (on a single node the high watermark).
 * Calls `seen` with every producer id met, so the id allocator can stay above them.
 */
export async function rebuildProducerState(log: PartitionLog, seen: (producerId: number) => void): Promise<ProducerStateTable> {
  const table = new ProducerStateTable();
  const bases = log.segmentBaseOffsets;
  let offset = Math.max(log.logStartOffset, bases[Math.max(0, bases.length - REBUILD_SEGMENTS)] ?? 0);
  const done = Promise.resolve();
  // Up to the durable end, not the high watermark: a new Raft leader must know the batches it holds
  // but has not committed yet (they will commit), or a producer's retry of one is written twice.
  while (offset < log.durableEnd) {
    const { batches } = await log.readDurable(offset, REBUILD_READ_BYTES);
    const list = splitBatches(batches);
    if (list.length === 0) break;
    for (const batch of list) {
      const h = readBatchHeader(batch);
      const lastOffset = h.baseOffset + h.lastOffsetDelta;
      if (!h.isControl && h.producerId >= 0 && h.baseSequence >= 0 && lastOffset >= offset) {
        seen(h.producerId);
        table.record(h.producerId, h.producerEpoch, {
          firstSeq: h.baseSequence,
          lastSeq: h.baseSequence + h.lastOffsetDelta,
          baseOffset: h.baseOffset,
          lastOffset,
          done,
        });
      }
      offset = Math.max(offset, lastOffset + 1);
    }
  }
  return table;
}
