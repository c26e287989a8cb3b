/**
 * The log as the core sees it: the driver's persisted entries (through the read-only `Storage`)
 * followed by `unstable` entries and perhaps a snapshot the driver has not persisted yet. New
 * entries land in `unstable`; `Ready.entries` hands them out and `stableTo` forgets them once
 * the driver says they are on disk. A conflicting suffix is cut in `unstable` (the driver mirrors
 * the cut when it persists entries starting inside its own log).
 *
 *   storage:  [snapshot] firstIndex ... offset-1
 *   unstable:                          offset ... lastIndex
 */
import { assert } from "../errors.ts";
import type { Entry, Snapshot } from "./messages.ts";
import { limitSize, type Storage } from "./storage.ts";

export class RaftLog {
  private unstableEntries: Entry[] = [];
  private unstableSnapshot: Snapshot | undefined;
  /** The index of unstableEntries[0]. */
  private offset: number;
  committed: number;
  applied: number;

  constructor(
    readonly storage: Storage,
    private readonly maxApplyBytes: number,
  ) {
    this.offset = storage.lastIndex() + 1;
    // The application's state starts from the snapshot, so entries it covers are never re-applied.
    const base = Math.max(storage.firstIndex() - 1, storage.snapshot().meta.index);
    this.committed = base;
    this.applied = base;
  }

  firstIndex(): number {
    return this.unstableSnapshot ? this.unstableSnapshot.meta.index + 1 : this.storage.firstIndex();
  }

  lastIndex(): number {
    if (this.unstableEntries.length > 0) return this.offset + this.unstableEntries.length - 1;
    if (this.unstableSnapshot) return this.unstableSnapshot.meta.index;
    return this.storage.lastIndex();
  }

  /** The term at `index` from firstIndex-1 to lastIndex; undefined if compacted away or beyond. */
  term(index: number): number | undefined {
    if (index < this.firstIndex() - 1 || index > this.lastIndex()) return undefined;
    if (index >= this.offset) return this.unstableEntries[index - this.offset]?.term;
    if (this.unstableSnapshot) return index === this.unstableSnapshot.meta.index ? this.unstableSnapshot.meta.term : undefined;
    return this.storage.term(index);
  }

  /** The last index the driver persisted (entries before the unstable ones); 0 while a snapshot waits to be. */
  stableLastIndex(): number {
    return this.unstableSnapshot ? 0 : this.offset - 1;
  }

  lastTerm(): number {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, "the last entry has a term");
    return t;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Raft §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /**
   * A follower's AppendEntries: if our entry at `index` has `logTerm`, keep what matches, cut the
   * first conflicting suffix, append the rest, and commit up to the leader's commit. Returns the
   * last index the message vouches for, or undefined when the consistency check fails.
   */
  maybeAppend(index: number, logTerm: number, commit: number, entries: readonly Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(conflict > this.committed, `entry ${conflict} conflicts with committed ${this.committed}`);
      this.append(entries.slice(conflict - (index + 1)));
    }
    this.commitTo(Math.min(commit, lastNew));
    return lastNew;
  }

  /** The first index whose term differs from ours (or that we lack); 0 if all match. */
  private findConflict(entries: readonly Entry[]): number {
    for (const e of entries) if (!this.matchTerm(e.index, e.term)) return e.index;
    return 0;
  }

  /**
   * The largest index <= `index` whose term is <= `term` (with that term, 0 if compacted). Used on
   * both sides of a rejection so the leader skips a whole conflicting term per round trip.
   */
  findConflictByTerm(index: number, term: number): [number, number] {
    for (let i = index; ; i--) {
      const t = this.term(i);
      if (t === undefined) return [i, 0];
      if (t <= term) return [i, t];
    }
  }

  append(entries: readonly Entry[]): number {
    const first = entries[0];
    if (!first) return this.lastIndex();
    const after = first.index - 1;
    assert(after >= this.committed, `append after ${after} would cut committed ${this.committed}`);
    const end = this.offset + this.unstableEntries.length;
    if (first.index === end) {
      this.unstableEntries.push(...entries);
    } else if (first.index <= this.offset) {
      // Replaces everything unstable and cuts into what the driver holds; it truncates on persist.
      this.offset = first.index;
      this.unstableEntries = [...entries];
    } else {
      this.unstableEntries = this.unstableEntries.slice(0, first.index - this.offset).concat(entries);
    }
    return this.lastIndex();
  }

  /** Entries from `lo` to the end within maxBytes; undefined if `lo` was compacted away, null if the store has them only on disk. */
  entriesFrom(lo: number, maxBytes: number): Entry[] | undefined | null {
    if (lo > this.lastIndex()) return [];
    return this.slice(lo, this.lastIndex() + 1, maxBytes);
  }

  slice(lo: number, hi: number, maxBytes: number): Entry[] | undefined | null {
    if (lo < this.firstIndex()) return undefined;
    assert(hi <= this.lastIndex() + 1, `slice to ${hi} beyond last ${this.lastIndex()}`);
    let out: Entry[] = [];
    if (lo < this.offset) {
      const stored = this.storage.entries(lo, Math.min(hi, this.offset), maxBytes);
      if (stored === null) return null;
      out = stored;
      if (out.length < Math.min(hi, this.offset) - lo) return out; // the size limit cut it short
    }
    if (hi > this.offset) {
      out = out.concat(this.unstableEntries.slice(Math.max(lo, this.offset) - this.offset, hi - this.offset));
    }
    return limitSize(out, maxBytes);
  }

  unstable(): readonly Entry[] {
    return this.unstableEntries;
  }

  pendingSnapshot(): Snapshot | undefined {
    return this.unstableSnapshot;
  }

  /** The driver persisted entries up to (index, term); forget them unless a newer leader replaced them. */
  stableTo(index: number, term: number): void {
    if (index < this.offset || this.term(index) !== term) return;
    this.unstableEntries = this.unstableEntries.slice(index + 1 - this.offset);
    this.offset = index + 1;
  }

  stableSnapTo(index: number): void {
    if (this.unstableSnapshot?.meta.index === index) this.unstableSnapshot = undefined;
  }

  /** Committed entries not yet handed out for applying; none while a snapshot waits to be persisted. */
  nextCommitted(): Entry[] {
    if (this.unstableSnapshot) return [];
    const lo = Math.max(this.applied + 1, this.firstIndex());
    if (this.committed < lo) return [];
    return this.slice(lo, this.committed + 1, this.maxApplyBytes) ?? [];
  }

  /** True while committed entries wait to be applied (even ones the store must first load: see Storage.entries). */
  hasNextCommitted(): boolean {
    return !this.unstableSnapshot && this.committed > Math.max(this.applied, this.firstIndex() - 1);
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), `commit ${index} beyond last index ${this.lastIndex()}`);
    this.committed = index;
  }

  /** The leader's rule (Raft §5.4.2): commit by counting replicas only for entries of its own term. */
  maybeCommit(index: number, term: number): boolean {
    if (index > this.committed && this.term(index) === term) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  appliedTo(index: number): void {
    if (index <= this.applied) return;
    assert(index <= this.committed, `applied ${index} beyond committed ${this.committed}`);
    this.applied = index;
  }

  /** A snapshot from the leader replaces the whole log; the driver persists it from the next Ready. */
  restore(s: Snapshot): void {
    this.committed = s.meta.index;
    this.offset = s.meta.index + 1;
    this.unstableEntries = [];
    this.unstableSnapshot = s;
  }

  snapshot(): Snapshot {
    return this.unstableSnapshot ?? this.storage.snapshot();
  }
}
