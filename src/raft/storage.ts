/**
 * What the core may read of the persisted state. The driver owns the real store (later: the
 * partition log, with the term in each batch's partitionLeaderEpoch) and writes to it only what a
 * `Ready` asks; the core never writes through this view.
 *
 * `MemoryStorage` is the in-memory twin: the tests' disk, and the reference for what a driver's
 * store must do (truncate a conflicting suffix on append, discard entries a snapshot covers).
 */
import { assert } from "../errors.ts";
import type { ConfState, Entry, HardState, Snapshot } from "./messages.ts";
import { EntryType, entryBytes } from "./messages.ts";

export interface Storage {
  initialState(): { hardState: HardState; confState: ConfState };
  /** The first index still held as an entry (snapshot index + 1). */
  firstIndex(): number;
  lastIndex(): number;
  /** The term at `index`, for firstIndex-1 (the snapshot's) to lastIndex; undefined outside. */
  term(index: number): number | undefined;
  /**
   * Entries in [lo, hi), at least one when lo < hi, then as many as fit in maxBytes. A store that
   * keeps only part of its entries in memory may answer null: "not at hand now". The core then
   * sends nothing (or applies nothing) for now; the store fetches them from its disk, and the
   * driver calls `RaftNode.retryAppend` (and drives `ready` again) once they are at hand.
   */
  entries(lo: number, hi: number, maxBytes: number): Entry[] | null;
  snapshot(): Snapshot;
}

export const EMPTY_SNAPSHOT: Snapshot = { meta: { index: 0, term: 0, confState: { voters: [] } }, data: new Uint8Array(0) };

/** Cut `ents` to the longest prefix within `maxBytes`, keeping at least one entry. */
export function limitSize(ents: Entry[], maxBytes: number): Entry[] {
  let size = 0;
  for (let i = 0; i < ents.length; i++) {
    size += entryBytes(ents[i]!);
    if (i > 0 && size > maxBytes) return ents.slice(0, i);
  }
  return ents;
}

export class MemoryStorage implements Storage {
  private hard: HardState = { term: 0, vote: 0, commit: 0 };
  private snap: Snapshot = EMPTY_SNAPSHOT;
  /** ents[0] is a dummy standing for the snapshot's (index, term). */
  private ents: Entry[] = [{ term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) }];

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hard, confState: this.snap.meta.confState };
  }

  hardState(): HardState {
    return this.hard;
  }

  firstIndex(): number {
    return this.ents[0]!.index + 1;
  }

  lastIndex(): number {
    return this.ents[0]!.index + this.ents.length - 1;
  }

  term(index: number): number | undefined {
    const offset = this.ents[0]!.index;
    if (index < offset || index > this.lastIndex()) return undefined;
    return this.ents[index - offset]!.term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    assert(lo >= this.firstIndex() && hi <= this.lastIndex() + 1 && lo <= hi, `storage entries [${lo}, ${hi}) out of range`);
    const offset = this.ents[0]!.index;
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxBytes);
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  setHardState(hs: HardState): void {
    this.hard = hs;
  }

  /** Append, first dropping any suffix from the first new index on (the conflicting tail). */
  append(entries: readonly Entry[]): void {
    const first = entries[0];
    if (!first) return;
    const offset = this.ents[0]!.index;
    // Entries the snapshot already covers are skipped: they are committed and equal.
    const skip = Math.max(0, this.firstIndex() - first.index);
    const fresh = entries.slice(skip);
    const head = fresh[0];
    if (!head) return;
    assert(head.index <= this.lastIndex() + 1, `append at ${head.index} leaves a gap after ${this.lastIndex()}`);
    this.ents = this.ents.slice(0, head.index - offset).concat(fresh);
  }

  /** Replace everything with a snapshot received from a leader. Older snapshots are ignored. */
  applySnapshot(s: Snapshot): boolean {
    if (s.meta.index <= this.snap.meta.index) return false;
    this.snap = s;
    this.ents = [{ term: s.meta.term, index: s.meta.index, type: EntryType.Normal, data: new Uint8Array(0) }];
    return true;
  }

  /** Record the application's state at `index` (applied, so held here) as the snapshot. */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    const term = this.term(index);
    assert(term !== undefined && index > this.snap.meta.index, `snapshot at ${index} outside the stored log`);
    this.snap = { meta: { index, term, confState }, data };
    return this.snap;
  }

  /** Drop entries before `index` (which stays as the new dummy). Only ever up to the snapshot. */
  compact(index: number): void {
    const offset = this.ents[0]!.index;
    if (index <= offset) return;
    assert(index <= this.snap.meta.index, `compact to ${index} beyond the snapshot at ${this.snap.meta.index}`);
    const dummy = this.ents[index - offset]!;
    this.ents = [{ term: dummy.term, index, type: EntryType.Normal, data: new Uint8Array(0) }, ...this.ents.slice(index - offset + 1)];
  }
}
