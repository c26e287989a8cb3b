/**
 * What a leader knows of one follower (etcd's Progress). `match` is the highest index known to be
 * on the follower's disk; `next` the next index to send. Three states decide how much to send:
 *
 *   probe      one append per heartbeat round until the follower's log position is found
 *   replicate  optimistic pipelining: `next` moves ahead as appends go out, bounded by Inflights
 *   snapshot   a snapshot is on its way; send nothing until it is acknowledged
 *
 * A rejection in replicate falls back to probe; a success in probe moves to replicate.
 */
export type ProgressState = "probe" | "replicate" | "snapshot";

/** A bounded window of in-flight append messages, each remembered by its last index. */
export class Inflights {
  private readonly buffer: number[] = [];

  constructor(readonly capacity: number) {}

  full(): boolean {
    return this.buffer.length >= this.capacity;
  }

  count(): number {
    return this.buffer.length;
  }

  add(lastIndex: number): void {
    if (this.full()) throw new Error("invariant broken: adding to a full inflight window");
    this.buffer.push(lastIndex);
  }

  /** Free every message whose last index is <= `index` (they were acknowledged together). */
  freeLE(index: number): void {
    let n = 0;
    while (n < this.buffer.length && this.buffer[n]! <= index) n++;
    this.buffer.splice(0, n);
  }

  freeFirst(): void {
    this.buffer.shift();
  }

  reset(): void {
    this.buffer.length = 0;
  }
}

export class Progress {
  state: ProgressState = "probe";
  /** In probe: an append is out and unanswered, so wait for a heartbeat response before the next. */
  probeSent = false;
  pendingSnapshot = 0;
  /** In snapshot: an election timeout has passed since it was sent (see RaftNode.retryStalledSnapshots). */
  snapshotStale = false;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  readonly inflights: Inflights;

  constructor(
    public match: number,
    public next: number,
    maxInflight: number,
  ) {
    this.inflights = new Inflights(maxInflight);
  }

  private resetState(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotStale = false;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot, resume after it even if the follower has not said so yet.
    const next = this.state === "snapshot" ? Math.max(this.match + 1, this.pendingSnapshot + 1) : this.match + 1;
    this.resetState("probe");
    this.next = next;
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /** A success up to `index`. Returns whether `match` moved (an old, reordered answer does not). */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /** Pipelining: assume the append up to `lastIndex` will succeed. */
  optimisticUpdate(lastIndex: number): void {
    this.next = lastIndex + 1;
  }

  /**
   * A rejection of the append after `rejected`; `hint` is the leader's guess of the last index
   * that may match. Returns false for stale rejections (already past them).
   */
  maybeDecrTo(rejected: number, hint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    // A follower that matched up to `match` answers a probe with a hint at or above it (terms only
    // grow along a log). A hint below it means the follower no longer holds entries it acknowledged
    // (its replica was made anew, empty, after a restart during a move): believe it, or it would be
    // probed at the same index, and refuse it, forever. The commit never moves back.
    if (hint < this.match) this.match = Math.max(0, hint);
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }
}
