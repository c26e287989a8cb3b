/**
 * `ReplicaLog`'s in-memory index of a partition log's batches: per stored batch, in Raft index
 * order, its term and its first and last offset. Position 0 is the first stored batch, the one
 * right after the Raft anchor. Built at open from a header-only scan of the segments, then kept
 * in step with every append, truncation and retention pass.
 *
 * Batches follow one another without gaps (each starts one after the last offset of the one
 * before), so only first offsets are kept, 8 bytes a batch in a growable Float64Array, and the
 * last offset of the last batch beside them; terms change only with the leader, so they are kept
 * as runs (the position where each term starts). A million batches cost 8 MB and no objects.
 */
import { assert } from "../errors.ts";

const INITIAL_CAPACITY = 64;

export class BatchIndex {
  private bases = new Float64Array(INITIAL_CAPACITY);
  private count = 0;
  /** The last offset of batch count - 1 (meaningless while empty). */
  private lastOfLast = -1;
  /** Term runs: runStarts[i] is the first position of term runTerms[i]; ascending, runStarts[0] = 0 when not empty. */
  private runStarts: number[] = [];
  private runTerms: number[] = [];

  get length(): number {
    return this.count;
  }

  push(term: number, baseOffset: number, lastOffset: number): void {
    assert(this.count === 0 || baseOffset === this.lastOfLast + 1, `batch at ${baseOffset} does not follow ${this.lastOfLast}`);
    assert(lastOffset >= baseOffset, `batch ${baseOffset}..${lastOffset} ends before it starts`);
    if (this.count === this.bases.length) this.grow(this.count * 2);
    this.bases[this.count] = baseOffset;
    if (this.runTerms.length === 0 || this.runTerms[this.runTerms.length - 1] !== term) {
      this.runStarts.push(this.count);
      this.runTerms.push(term);
    }
    this.lastOfLast = lastOffset;
    this.count++;
  }

  term(position: number): number {
    this.checked(position);
    return this.runTerms[this.runAt(position)]!;
  }
  baseOffset(position: number): number {
    return this.bases[this.checked(position)]!;
  }
  lastOffset(position: number): number {
    this.checked(position);
    return position === this.count - 1 ? this.lastOfLast : this.bases[position + 1]! - 1;
  }

  /** Keep the first `n` batches (a conflicting suffix was cut). */
  truncate(n: number): void {
    assert(n >= 0 && n <= this.count, `truncate to ${n} of ${this.count}`);
    if (n === this.count) return;
    if (n > 0) this.lastOfLast = this.bases[n]! - 1;
    this.count = n;
    while (this.runStarts.length > 0 && this.runStarts[this.runStarts.length - 1]! >= n) {
      this.runStarts.pop();
      this.runTerms.pop();
    }
  }

  /** Forget the first `n` batches (retention moved the anchor past them). */
  dropFront(n: number): void {
    assert(n >= 0 && n <= this.count, `drop ${n} of ${this.count}`);
    if (n === 0) return;
    this.bases.copyWithin(0, n, this.count);
    this.count -= n;
    if (this.count === 0) {
      this.runStarts = [];
      this.runTerms = [];
      return;
    }
    const first = this.runAt(n);
    this.runStarts = this.runStarts.slice(first).map((s) => Math.max(0, s - n));
    this.runTerms = this.runTerms.slice(first);
  }

  /** The position of the batch holding `offset`, or -1. */
  find(offset: number): number {
    if (this.count === 0 || offset < this.bases[0]! || offset > this.lastOfLast) return -1;
    // The last batch starting at or before `offset`: batches leave no gaps, so it holds it.
    return lastAtOrBelow(this.bases, this.count, offset);
  }

  /** The run holding `position` (which is below count). */
  private runAt(position: number): number {
    return lastAtOrBelow(this.runStarts, this.runStarts.length, position);
  }

  private checked(position: number): number {
    assert(position >= 0 && position < this.count, `batch position ${position} outside [0, ${this.count})`);
    return position;
  }

  private grow(capacity: number): void {
    const bases = new Float64Array(capacity);
    bases.set(this.bases.subarray(0, this.count));
    this.bases = bases;
  }
}

/** The last i < length with values[i] <= x, for ascending values whose first is <= x. */
function lastAtOrBelow(values: ArrayLike<number>, length: number, x: number): number {
  let lo = 0;
  let hi = length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (values[mid]! <= x) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
