/**
 * The sparse time index of one segment: `<20-digit base offset>.timeindex`.
 *
 * On disk: a flat array of 12-byte entries, big-endian, no header:
 *
 *   maxTimestampMs  i64   the largest record timestamp in the segment up to and including the batch
 *   relativeOffset  u32   that batch's base offset minus the segment's base offset
 *
 * Entries are added at the same batches as offset-index entries (every `indexIntervalBytes`),
 * plus one for the segment's last batch when the segment is closed, so the last entry always
 * holds the segment's newest timestamp: retention reads it instead of scanning the segment.
 * Because each entry holds a running maximum, timestamps never decrease along the file; a lookup
 * for time T finds the last entry below T and knows that no batch up to it reaches T.
 *
 * An i64 because timestamps are epoch milliseconds; a u32 offset because the segment rolls
 * before relative offsets could overflow it. Like the offset index, it is rebuilt from a scan
 * when the sanity check on open fails.
 */
export const TIME_INDEX_ENTRY_BYTES = 12;

export class TimeIndex {
  private ts = new Float64Array(64);
  private rel = new Uint32Array(64);
  private n = 0;

  get count(): number {
    return this.n;
  }

  /** Newest timestamp recorded in the index, or -1 when empty. */
  get lastTimestamp(): number {
    return this.n === 0 ? -1 : this.ts[this.n - 1]!;
  }
  get lastRelativeOffset(): number {
    return this.n === 0 ? -1 : this.rel[this.n - 1]!;
  }

  /**
   * Record that batches up to and including the one at `relativeOffset` have timestamps <=
   * `maxTimestampMs`. A repeated offset updates the last entry instead of adding one.
   */
  append(maxTimestampMs: number, relativeOffset: number): void {
    if (this.n > 0) {
      const lastRel = this.rel[this.n - 1]!;
      if (relativeOffset < lastRel) return;
      if (relativeOffset === lastRel) {
        this.ts[this.n - 1] = Math.max(this.ts[this.n - 1]!, maxTimestampMs);
        return;
      }
      if (maxTimestampMs < this.ts[this.n - 1]!) maxTimestampMs = this.ts[this.n - 1]!;
    }
    if (this.n === this.ts.length) {
      const t = new Float64Array(this.n * 2);
      t.set(this.ts);
      this.ts = t;
      const r = new Uint32Array(this.n * 2);
      r.set(this.rel);
      this.rel = r;
    }
    this.ts[this.n] = maxTimestampMs;
    this.rel[this.n] = relativeOffset;
    this.n++;
  }

  /**
   * The relative offset of the last entry whose timestamp is below `timestampMs` (every batch up
   * to and including it is older), or -1 when even the first entry reaches it.
   */
  lastBefore(timestampMs: number): number {
    let lo = 0;
    let hi = this.n - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ts[mid]! < timestampMs) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found < 0 ? -1 : this.rel[found]!;
  }

  clear(): void {
    this.n = 0;
  }

  /** Take over another index's entries (one loaded from disk and checked). */
  replaceWith(other: TimeIndex): void {
    this.ts = other.ts;
    this.rel = other.rel;
    this.n = other.n;
  }

  serialize(): Uint8Array {
    const out = new Uint8Array(this.n * TIME_INDEX_ENTRY_BYTES);
    const view = new DataView(out.buffer);
    for (let i = 0; i < this.n; i++) {
      view.setBigInt64(i * 12, BigInt(this.ts[i]!));
      view.setUint32(i * 12 + 8, this.rel[i]!);
    }
    return out;
  }

  /**
   * Parse a time index file, or null when it cannot be one: a partial entry, timestamps that
   * decrease, relative offsets that do not strictly increase or reach `relativeOffsetLimit`.
   */
  static parse(bytes: Uint8Array, relativeOffsetLimit: number): TimeIndex | null {
    if (bytes.length % TIME_INDEX_ENTRY_BYTES !== 0) return null;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const index = new TimeIndex();
    for (let i = 0; i < bytes.length; i += TIME_INDEX_ENTRY_BYTES) {
      const big = view.getBigInt64(i);
      if (big > BigInt(Number.MAX_SAFE_INTEGER) || big < -1n) return null;
      const ts = Number(big);
      const rel = view.getUint32(i + 8);
      if (rel >= relativeOffsetLimit) return null;
      if (index.n > 0 && (rel <= index.rel[index.n - 1]! || ts < index.ts[index.n - 1]!)) return null;
      index.append(ts, rel);
    }
    return index;
  }
}
