/**
 * `ReplicaLog`'s in-memory index of a partition log's batches: per stored batch, in Raft index
 * order, its term and its first and last offset, in growable typed arrays (20 bytes a batch, so
 * a million batches cost 20 MB and no objects). Position 0 is the first stored batch, the one
 * right after the Raft anchor. Built at open from a header-only scan of the segments, then kept
 * in step with every append, truncation and retention pass.
 */
import { assert } from "../errors.ts";

const INITIAL_CAPACITY = 64;

export class BatchIndex {
  private terms = new Int32Array(INITIAL_CAPACITY);
  private bases = new Float64Array(INITIAL_CAPACITY);
  private lasts = new Float64Array(INITIAL_CAPACITY);
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(term: number, baseOffset: number, lastOffset: number): void {
    assert(this.count === 0 || baseOffset === this.lasts[this.count - 1]! + 1, `batch at ${baseOffset} does not follow ${this.lasts[this.count - 1]}`);
    if (this.count === this.terms.length) this.grow(this.count * 2);
    this.terms[this.count] = term;
    this.bases[this.count] = baseOffset;
    this.lasts[this.count] = lastOffset;
    this.count++;
  }

  term(position: number): number {
    return this.terms[this.checked(position)]!;
  }
  baseOffset(position: number): number {
    return this.bases[this.checked(position)]!;
  }
  lastOffset(position: number): number {
    return this.lasts[this.checked(position)]!;
  }

  /** Keep the first `n` batches (a conflicting suffix was cut). */
  truncate(n: number): void {
    assert(n >= 0 && n <= this.count, `truncate to ${n} of ${this.count}`);
    this.count = n;
  }

  /** Forget the first `n` batches (retention moved the anchor past them). */
  dropFront(n: number): void {
    assert(n >= 0 && n <= this.count, `drop ${n} of ${this.count}`);
    this.terms.copyWithin(0, n, this.count);
    this.bases.copyWithin(0, n, this.count);
    this.lasts.copyWithin(0, n, this.count);
    this.count -= n;
  }

  /** The position of the batch holding `offset`, or -1. */
  find(offset: number): number {
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.lasts[mid]! < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    return lo < this.count && this.bases[lo]! <= offset ? lo : -1;
  }

  private checked(position: number): number {
    assert(position >= 0 && position < this.count, `batch position ${position} outside [0, ${this.count})`);
    return position;
  }

  private grow(capacity: number): void {
    const terms = new Int32Array(capacity);
    const bases = new Float64Array(capacity);
    const lasts = new Float64Array(capacity);
    terms.set(this.terms.subarray(0, this.count));
    bases.set(this.bases.subarray(0, this.count));
    lasts.set(this.lasts.subarray(0, this.count));
    this.terms = terms;
    this.bases = bases;
    this.lasts = lasts;
  }
}
