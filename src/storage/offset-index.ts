/**
 * The sparse offset index of one segment: `<20-digit base offset>.index`.
 *
 * On disk: a flat array of 8-byte entries, big-endian, no header (the file name carries the base
 * offset, and the length alone says how many entries there are):
 *
 *   relativeOffset u32   batch base offset minus the segment's base offset
 *   position       u32   byte position of that batch in the `.log` file
 *
 * One entry is added each time at least `indexIntervalBytes` of batches were appended since the
 * previous entry (Kafka's index.interval.bytes, 4 KiB by default): a lookup then reads at most
 * about that many bytes of headers past the entry, and the index stays ~1/512 of the segment.
 * u32 fields are enough because a segment never holds more than 2^31 bytes or offsets (the log
 * rolls first), and they halve the index against u64s.
 *
 * The index lives in memory while its segment is active and is written whole (atomically) when
 * the segment is closed. An index is only a hint: on open it is sanity-checked against the log
 * and rebuilt from a scan when anything is off, so its file needs no checksum.
 */
export const OFFSET_INDEX_ENTRY_BYTES = 8;

export class OffsetIndex {
  private rel = new Uint32Array(64);
  private pos = new Uint32Array(64);
  private n = 0;

  get count(): number {
    return this.n;
  }

  relativeOffsetAt(i: number): number {
    return this.rel[i] ?? 0;
  }
  positionAt(i: number): number {
    return this.pos[i] ?? 0;
  }

  /** Add an entry; callers add them in increasing offset and position order. */
  append(relativeOffset: number, position: number): void {
    if (this.n > 0 && (relativeOffset <= this.rel[this.n - 1]! || position <= this.pos[this.n - 1]!)) return;
    if (this.n === this.rel.length) {
      const r = new Uint32Array(this.n * 2);
      r.set(this.rel);
      this.rel = r;
      const p = new Uint32Array(this.n * 2);
      p.set(this.pos);
      this.pos = p;
    }
    this.rel[this.n] = relativeOffset;
    this.pos[this.n] = position;
    this.n++;
  }

  /** Position of the last indexed batch whose relative offset is <= `relativeOffset`; 0 when none. */
  lookup(relativeOffset: number): number {
    let lo = 0;
    let hi = this.n - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.rel[mid]! <= relativeOffset) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found < 0 ? 0 : this.pos[found]!;
  }

  /** Drop entries at or past byte `position` (the log was truncated there). */
  truncateToPosition(position: number): void {
    while (this.n > 0 && this.pos[this.n - 1]! >= position) this.n--;
  }

  clear(): void {
    this.n = 0;
  }

  /** Take over another index's entries (one loaded from disk and checked). */
  replaceWith(other: OffsetIndex): void {
    this.rel = other.rel;
    this.pos = other.pos;
    this.n = other.n;
  }

  serialize(): Uint8Array {
    const out = new Uint8Array(this.n * OFFSET_INDEX_ENTRY_BYTES);
    const view = new DataView(out.buffer);
    for (let i = 0; i < this.n; i++) {
      view.setUint32(i * 8, this.rel[i]!);
      view.setUint32(i * 8 + 4, this.pos[i]!);
    }
    return out;
  }

  /**
   * Parse an index file, or null when it cannot be one: a length that is not a whole number of
   * entries, offsets or positions that do not strictly increase, or a position past `segmentBytes`.
   */
  static parse(bytes: Uint8Array, segmentBytes: number): OffsetIndex | null {
    if (bytes.length % OFFSET_INDEX_ENTRY_BYTES !== 0) return null;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const index = new OffsetIndex();
    for (let i = 0; i < bytes.length; i += OFFSET_INDEX_ENTRY_BYTES) {
      const rel = view.getUint32(i);
      const pos = view.getUint32(i + 4);
      if (pos >= segmentBytes) return null;
      if (index.n > 0 && (rel <= index.rel[index.n - 1]! || pos <= index.pos[index.n - 1]!)) return null;
      index.append(rel, pos);
    }
    return index;
  }
}
