/**
 * Where a record goes when the producer names no partition, the way Kafka's Java producer decides,
 * so keys land on the same partitions here as in a Kafka cluster fed by other clients (and the
 * mirror keeps per-key order across both).
 *
 * Keyed records: `toPositive(murmur2(key)) % numPartitions`, the Java client's default
 * partitioner (`Utils.murmur2`, `Utils.toPositive`). Keyless records: the KeylessPartitioner below.
 *
 * @example
 *   partitionForKey(new TextEncoder().encode("foobar"), 6) // Kafka's choice for key "foobar"
 */
import { assert } from "./errors.ts";

const MURMUR2_SEED = 0x9747b28c;
const MURMUR2_M = 0x5bd1e995;

/**
 * Kafka's murmur2 (MurmurHash2, 32-bit, seed 0x9747b28c, little-endian 4-byte blocks), as a signed
 * 32-bit integer like Java's `int`. `Math.imul` gives Java's wrapping multiplication.
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = MURMUR2_SEED ^ length;
  const blocksEnd = length & ~3;
  for (let i = 0; i < blocksEnd; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, MURMUR2_M);
    k ^= k >>> 24;
    k = Math.imul(k, MURMUR2_M);
    h = Math.imul(h, MURMUR2_M) ^ k;
  }
  const tail = length & 3;
  if (tail > 0) {
    if (tail === 3) h ^= data[blocksEnd + 2]! << 16;
    if (tail >= 2) h ^= data[blocksEnd + 1]! << 8;
    h ^= data[blocksEnd]!;
    h = Math.imul(h, MURMUR2_M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, MURMUR2_M);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's `Utils.toPositive`: clears the sign bit (not Math.abs, which differs for negatives). */
export function toPositive(n: number): number {
  return n & 0x7fffffff;
}

/** The partition Kafka's default partitioner picks for a keyed record. */
export function partitionForKey(key: Uint8Array, numPartitions: number): number {
  checkCount(numPartitions);
  return toPositive(murmur2(key)) % numPartitions;
}

export type KeylessMode = "sticky" | "round-robin";

/**
 * Spreads keyless records over a topic's partitions. One instance per topic; not shared between
 * topics, so each topic rotates on its own.
 *
 * - "round-robin": `next(n)` returns a new partition per call (per record): start, start+1, ...
 *   modulo n.
 * - "sticky" (Kafka's default since 2.4, KIP-480, simplified): all keyless records of one produce
 *   request go to one partition, so they form one batch and one append; the next request moves on
 *   to the next partition. The broker calls `partitionForRequest(n)` once per request and uses
 *   the result for every keyless record in it. In this mode `next(n)` returns the partition of the
 *   current request (the last `partitionForRequest` result), choosing one first if none was chosen
 *   yet or the partition count shrank below it.
 *
 * `partitionForRequest(n)` rotates in both modes: start, start+1, ... modulo n. Java's producer
 * picks the first partition at random and, since KIP-794, weighs by broker load; this core takes
 * no randomness (pass a random `start` from the caller's Random to spread brokers' starting points)
 * and rotates evenly, which is what a single broker with local partitions wants.
 *
 * @example
 *   const p = new KeylessPartitioner("sticky");
 *   p.partitionForRequest(3); // 0: every keyless record of this request goes to partition 0
 *   p.partitionForRequest(3); // 1: the next request's
 */
export class KeylessPartitioner {
  readonly mode: KeylessMode;
  /** The next partition to hand out, before reduction modulo the partition count. */
  private cursor: number;
  /** Sticky mode: the current request's partition, or -1 before the first. */
  private current = -1;

  constructor(mode: KeylessMode, start = 0) {
    assert(Number.isSafeInteger(start) && start >= 0, `start ${start} must be a non-negative integer`);
    this.mode = mode;
    this.cursor = start;
  }

  /** The partition for the next keyless record (see the class comment for each mode). */
  next(numPartitions: number): number {
    checkCount(numPartitions);
    if (this.mode === "round-robin") return this.rotate(numPartitions);
    if (this.current < 0 || this.current >= numPartitions) this.current = this.rotate(numPartitions);
    return this.current;
  }

  /** One partition for all keyless records of a produce request; the next call moves on. */
  partitionForRequest(numPartitions: number): number {
    checkCount(numPartitions);
    this.current = this.rotate(numPartitions);
    return this.current;
  }

  private rotate(numPartitions: number): number {
    const p = this.cursor % numPartitions;
    this.cursor = p + 1; // stays below the partition count: no overflow however long it runs
    return p;
  }
}

function checkCount(numPartitions: number): void {
  assert(Number.isSafeInteger(numPartitions) && numPartitions > 0, `partition count ${numPartitions} must be a positive integer`);
}
