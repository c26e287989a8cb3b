/**
 * `ReplicaLog`'s in-memory index of a partition log's batches: per stored batch, in Raft index
 * order, its term and its first and last offset. Position 0 is the first stored batch, the one
 * right after the Raft anchor. Built at open from a header-only scan of the segments, then kept
 * in step with every append, truncation and retention pass.
 *
 * Batches follow one another without gaps (each starts one after the last offset of the one
 * before), so only first offsets are kept, and the last offset of the last batch beside them;
 * terms change only with the leader, so they are kept as runs (the position where each term
 * starts): `term` is exact for every stored batch.
 *
 * Its size has a limit, whatever the log holds (a week of single-record batches from devices is
 * hundreds of millions of them):
 *
 * - The tail is exact: the first offset of every batch from `exactFrom` on, 8 bytes a batch in a
 *   Float64Array. The owner marks how far it no longer needs synchronous answers (`settle`, its
 *   applied position); when the exact window passes twice `exactBatches`, its older part, below
 *   both that mark and the newest `exactBatches`, goes sparse.
 * - Below `exactFrom`, only samples: the first offset of the first stored batch and of every
 *   `stride`-th batch (by ordinal since the group began), at most `maxSamples` of them; past
 *   that, every other sample goes and the stride doubles.
 *
 * So the index holds at most 2 x exactBatches + maxSamples numbers (by default 98,304: 768 KiB,
 * under 1.5 MiB with the exact array's spare capacity), plus the term runs, while the owner's
 * applied position is among the newest 2 x exactBatches; an unapplied tail stays exact whole (Raft's
 * limit on uncommitted bytes bounds it). A position below
 * the exact window has no synchronous first offset: `nearest` gives the closest sampled batch at
 * or before it, from where the owner reads the headers on disk.
 */
import { assert } from "../errors.ts";

const INITIAL_CAPACITY = 64;
export const DEFAULT_EXACT_BATCHES = 32_768;
export const DEFAULT_MAX_SAMPLES = 32_768;
const INITIAL_STRIDE = 64;

export interface BatchIndexLimits {
  /** Batches kept exact at least (unless settled); the exact window goes sparse past twice this. */
  exactBatches?: number;
  /** Sampled batches below the exact window, at most. */
  maxSamples?: number;
}

/** A batch whose first offset is known: its position and that offset. */
export interface KnownBatch {
  position: number;
  baseOffset: number;
}

export class BatchIndex {
  private readonly exactBatches: number;
  private readonly maxSamples: number;
  /** Ordinal (counted since the group's first batch, or since the last reset) of position 0. */
  private origin = 0;
  private count = 0;
  /** Ordinal of bases[0]: origin <= exactFrom <= origin + count. */
  private exactFrom = 0;
  private bases = new Float64Array(INITIAL_CAPACITY);
  /** The last offset of batch count - 1 (meaningless while empty). */
  private lastOfLast = -1;
  /** Samples below exactFrom, ascending by ordinal; when exactFrom > origin, the first is origin's. */
  private sampleOrds: number[] = [];
  private sampleBases: number[] = [];
  private stride = INITIAL_STRIDE;
  /** Ordinals below this may lose their exact first offset (settle). */
  private stableOrd = 0;
  /** Term runs: runStarts[i] is the first position of term runTerms[i]; ascending, runStarts[0] = 0 when not empty. */
  private runStarts: number[] = [];
  private runTerms: number[] = [];

  constructor(limits: BatchIndexLimits = {}) {
    this.exactBatches = limits.exactBatches ?? DEFAULT_EXACT_BATCHES;
    this.maxSamples = limits.maxSamples ?? DEFAULT_MAX_SAMPLES;
    assert(this.exactBatches >= 1 && this.maxSamples >= 2, `batch index limits ${this.exactBatches} exact, ${this.maxSamples} samples`);
  }

  get length(): number {
    return this.count;
  }

  /** The first position whose offsets are known synchronously (length when none is). */
  get firstExact(): number {
    return this.exactFrom - this.origin;
  }

  /** Numbers held for first offsets (exact ones and samples): what the limits bound. */
  get heldOffsets(): number {
    return this.window + this.sampleOrds.length;
  }

  /** How many batches the exact window holds: bases[0, window). */
  private get window(): number {
    return this.origin + this.count - this.exactFrom;
  }

  push(term: number, baseOffset: number, lastOffset: number): void {
    assert(this.count === 0 || baseOffset === this.lastOfLast + 1, `batch at ${baseOffset} does not follow ${this.lastOfLast}`);
    assert(lastOffset >= baseOffset, `batch ${baseOffset}..${lastOffset} ends before it starts`);
    const at = this.window;
    if (at === this.bases.length) this.grow(at * 2);
    this.bases[at] = baseOffset;
    if (this.runTerms.length === 0 || this.runTerms[this.runTerms.length - 1] !== term) {
      this.runStarts.push(this.count);
      this.runTerms.push(term);
    }
    this.lastOfLast = lastOffset;
    this.count++;
    this.maybeSparsen();
  }

  /** Positions below `position` need no synchronous offsets any more (the owner applied them). */
  settle(position: number): void {
    this.stableOrd = Math.max(this.stableOrd, this.origin + position);
    this.maybeSparsen();
  }

  term(position: number): number {
    this.checked(position);
    return this.runTerms[this.runAt(position)]!;
  }

  /** The batch's first offset; undefined below the exact window (see `nearest`). */
  baseOffset(position: number): number | undefined {
    const ord = this.origin + this.checked(position);
    return ord >= this.exactFrom ? this.bases[ord - this.exactFrom]! : undefined;
  }

  /** The batch's last offset; undefined below the exact window. */
  lastOffset(position: number): number | undefined {
    this.checked(position);
    if (position === this.count - 1) return this.lastOfLast;
    const next = this.origin + position + 1;
    return next >= this.exactFrom ? this.bases[next - this.exactFrom]! - 1 : undefined;
  }

  /** The batch at `position` if its first offset is exact, else the closest sampled one before it. */
  nearest(position: number): KnownBatch {
    const ord = this.origin + this.checked(position);
    if (ord >= this.exactFrom) return { position, baseOffset: this.bases[ord - this.exactFrom]! };
    const i = lastAtOrBelow(this.sampleOrds, this.sampleOrds.length, ord);
    return { position: this.sampleOrds[i]! - this.origin, baseOffset: this.sampleBases[i]! };
  }

  /**
   * Where the batch holding `offset` is: in the exact window, that batch (`exact`); below it, the
   * closest sampled batch starting at or before `offset` (the one holding it is that or a later
   * one). Null when no stored batch holds it.
   */
  find(offset: number): (KnownBatch & { exact: boolean }) | null {
    if (this.count === 0 || offset > this.lastOfLast) return null;
    const window = this.window;
    if (window > 0 && offset >= this.bases[0]!) {
      // The last batch starting at or before `offset`: batches leave no gaps, so it holds it.
      const i = lastAtOrBelow(this.bases, window, offset);
      return { position: this.exactFrom - this.origin + i, baseOffset: this.bases[i]!, exact: true };
    }
    if (this.sampleOrds.length === 0 || offset < this.sampleBases[0]!) return null;
    const i = lastAtOrBelow(this.sampleBases, this.sampleBases.length, offset);
    return { position: this.sampleOrds[i]! - this.origin, baseOffset: this.sampleBases[i]!, exact: false };
  }

  /** Keep the first `n` batches (a conflicting suffix was cut); the cut must be in the exact window. */
  truncate(n: number): void {
    assert(n >= 0 && n <= this.count, `truncate to ${n} of ${this.count}`);
    if (n === this.count) return;
    if (n === 0) return this.reset();
    const end = this.origin + n;
    assert(end >= this.exactFrom, `truncate to position ${n}, below the exact window (from ${this.firstExact})`);
    this.lastOfLast = this.bases[end - this.exactFrom]! - 1;
    this.count = n;
    this.stableOrd = Math.min(this.stableOrd, end);
    while (this.runStarts.length > 0 && this.runStarts[this.runStarts.length - 1]! >= n) {
      this.runStarts.pop();
      this.runTerms.pop();
    }
  }

  /**
   * Forget the first `n` batches (retention moved the anchor past them). `newFirstBase`, the
   * first offset of the batch that becomes position 0, is needed when that batch is below the
   * exact window and not a sample.
   */
  dropFront(n: number, newFirstBase?: number): void {
    assert(n >= 0 && n <= this.count, `drop ${n} of ${this.count}`);
    if (n === 0) return;
    if (n === this.count) {
      const last = this.lastOfLast;
      this.reset();
      this.lastOfLast = last;
      return;
    }
    const origin = this.origin + n;
    if (origin >= this.exactFrom) {
      this.bases.copyWithin(0, origin - this.exactFrom, this.window);
      this.exactFrom = origin;
      this.sampleOrds = [];
      this.sampleBases = [];
    } else {
      const keep = lastAtOrBelow(this.sampleOrds, this.sampleOrds.length, origin);
      const exact = this.sampleOrds[keep] === origin;
      assert(exact || newFirstBase !== undefined, `dropping ${n} batches: the first offset of the new first batch is not known`);
      this.sampleOrds = this.sampleOrds.slice(exact ? keep : keep + 1);
      this.sampleBases = this.sampleBases.slice(exact ? keep : keep + 1);
      if (!exact) {
        this.sampleOrds.unshift(origin);
        this.sampleBases.unshift(newFirstBase!);
      }
    }
    this.origin = origin;
    this.count -= n;
    const first = this.runAt(n);
    this.runStarts = this.runStarts.slice(first).map((s) => Math.max(0, s - n));
    this.runTerms = this.runTerms.slice(first);
  }

  private reset(): void {
    this.origin = 0;
    this.count = 0;
    this.exactFrom = 0;
    this.stableOrd = 0;
    this.sampleOrds = [];
    this.sampleBases = [];
    this.stride = INITIAL_STRIDE;
    this.runStarts = [];
    this.runTerms = [];
    if (this.bases.length > INITIAL_CAPACITY * 16) this.bases = new Float64Array(INITIAL_CAPACITY);
  }

  /** Past twice exactBatches in the window, sparsen its part below the settled mark and the newest exactBatches. */
  private maybeSparsen(): void {
    if (this.window <= 2 * this.exactBatches) return;
    const end = this.origin + this.count;
    const to = Math.min(this.stableOrd, end - this.exactBatches);
    if (to <= this.exactFrom) return;
    for (let ord = this.exactFrom; ord < to; ord++) {
      if (ord === this.origin || ord % this.stride === 0) {
        this.sampleOrds.push(ord);
        this.sampleBases.push(this.bases[ord - this.exactFrom]!);
      }
    }
    this.bases.copyWithin(0, to - this.exactFrom, this.window);
    this.exactFrom = to;
    while (this.sampleOrds.length > this.maxSamples) this.thin();
    const window = this.window;
    if (this.bases.length > 4 * Math.max(window, this.exactBatches)) {
      const bases = new Float64Array(Math.max(INITIAL_CAPACITY, 2 * window));
      bases.set(this.bases.subarray(0, window));
      this.bases = bases;
    }
  }

  /** Keep the first sample and every other one by the doubled stride. */
  private thin(): void {
    this.stride *= 2;
    const ords: number[] = [];
    const bases: number[] = [];
    this.sampleOrds.forEach((ord, i) => {
      if (i === 0 || ord % this.stride === 0) {
        ords.push(ord);
        bases.push(this.sampleBases[i]!);
      }
    });
    this.sampleOrds = ords;
    this.sampleBases = bases;
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
    const bases = new Float64Array(Math.max(INITIAL_CAPACITY, capacity));
    bases.set(this.bases.subarray(0, this.window));
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
