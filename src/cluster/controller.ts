/**
 * `Controller`: the state machine of the metadata Raft group (`META_GROUP`) on one peer. Every
 * peer applies the same committed commands to its `ClusterMetadata`, so every peer knows every
 * topic and where its replicas live; the broker reacts to each change (`onChange`) by opening or
 * closing its local replicas. Only the group's leader proposes; a peer that does not lead forwards
 * the command to the leader (see cluster.ts).
 *
 * The metadata log is kept short by snapshots: once `SNAPSHOT_EVERY` entries are applied past
 * the last snapshot, the state is written as a snapshot and older entries are dropped; a peer far
 * behind receives that snapshot instead of the entries.
 */
import { TributaryError, type ErrorCode } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { EntryType, type ConfChange, type Entry, type ProposeResult, type Snapshot, type SoftState } from "../raft/index.ts";
import type { GroupMachine, RaftGroup } from "./group.ts";
import type { MetaStore } from "./meta-store.ts";
import { ClusterMetadata, encodeCommand, type ApplyResult, type MetaCommand } from "./metadata.ts";

export const SNAPSHOT_EVERY = 1000;

interface Waiter {
  term: number;
  resolve: (r: ApplyResult) => void;
  reject: (e: unknown) => void;
}

export class Controller implements GroupMachine {
  metadata: ClusterMetadata;
  private groupRef: RaftGroup | null = null;
  private readonly waiters = new Map<number, Waiter>();
  private snapshotIndex: number;

  constructor(
    private readonly store: MetaStore,
    /** Runs after every applied change, before the next entry is applied. */
    private readonly onChange: (metadata: ClusterMetadata) => Promise<void>,
    private readonly logger: Logger,
  ) {
    const snap = store.snapshot();
    this.metadata = snap.meta.index > 0 ? ClusterMetadata.restore(snap.data) : new ClusterMetadata();
    this.snapshotIndex = snap.meta.index;
  }

  set group(g: RaftGroup) {
    this.groupRef = g;
  }
  get group(): RaftGroup {
    if (!this.groupRef) throw new Error("invariant broken: the controller has no group");
    return this.groupRef;
  }

  /** The state's applied index (entries up to it are in `metadata`). */
  get appliedIndex(): number {
    return this.metadata.appliedIndex;
  }

  /**
   * Propose a command here (this peer must lead the metadata group) and wait until it is applied.
   * Resolves with the command's result; rejects with NOT_LEADER when this peer does not lead.
   */
  propose(cmd: MetaCommand): Promise<ApplyResult> {
    return this.waitFor(this.group.propose(encodeCommand(cmd)));
  }

  /**
   * Add or remove a voter of the metadata group (one at a time; this peer must lead), and wait
   * until the change is applied. A change still pending refuses another with OVERLOADED (retry).
   */
  proposeConfChange(cc: ConfChange): Promise<ApplyResult> {
    let r: ProposeResult = { ok: false, reason: "not-leader", leader: 0 };
    this.group.poke((n) => {
      r = n.proposeConfChange(cc);
    });
    if (!r.ok && r.reason === "conf-change-pending") return Promise.reject(new TributaryError("OVERLOADED", "another membership change is still being applied; retry"));
    if (!r.ok && r.reason === "invalid") {
      return Promise.reject(new TributaryError("INVALID_REQUEST", cc.type === "add-voter" ? `peer ${cc.nodeId} is already a voter` : `peer ${cc.nodeId} is not a voter, or is the last one`));
    }
    return this.waitFor(r);
  }

  private waitFor(r: ProposeResult): Promise<ApplyResult> {
    if (!r.ok) {
      if (r.reason === "overloaded") return Promise.reject(new TributaryError("OVERLOADED", "the controller has too many uncommitted changes; retry later"));
      return Promise.reject(new TributaryError("NOT_LEADER", r.leader ? `peer ${r.leader} leads the controller` : "the controller has no leader yet; retry"));
    }
    return new Promise((resolve, reject) => this.waiters.set(r.index, { term: r.term, resolve, reject }));
  }

  async apply(snapshot: Snapshot | undefined, committed: readonly Entry[]): Promise<void> {
    if (snapshot && snapshot.meta.index > this.metadata.appliedIndex) {
      this.metadata = ClusterMetadata.restore(snapshot.data);
      this.snapshotIndex = snapshot.meta.index;
      this.logger.info("controller state restored from a snapshot", { index: snapshot.meta.index });
      await this.onChange(this.metadata);
    }
    let confChanged = false;
    for (const e of committed) {
      if (e.index <= this.metadata.appliedIndex) continue;
      if (e.type === EntryType.ConfChange) confChanged = true;
      // applyEntry also moves the applied index past no-ops and conf changes (no event).
      const result = this.metadata.applyEntry(e);
      if (result.ok && result.event) await this.onChange(this.metadata);
      const w = this.waiters.get(e.index);
      if (!w) continue;
      this.waiters.delete(e.index);
      if (w.term !== e.term) w.reject(new TributaryError("NOT_LEADER", "a new controller leader replaced the change before it was committed: it was not applied; retry"));
      else w.resolve(result);
    }
    // The node switches voters only in advance(), after this: a snapshot now would record the old ones.
    if (!confChanged) await this.maybeSnapshot();
  }

  softState(state: SoftState): void {
    if (state.role === "leader") return;
    const ws = [...this.waiters.values()];
    this.waiters.clear();
    for (const w of ws) w.reject(new TributaryError("REQUEST_TIMED_OUT", "this peer stopped leading the controller before the change was committed: it may or may not be applied"));
  }

  private async maybeSnapshot(): Promise<void> {
    const applied = this.metadata.appliedIndex;
    if (applied - this.snapshotIndex < SNAPSHOT_EVERY) return;
    await this.store.createSnapshot(applied, this.group.node.confState(), this.metadata.snapshot());
    this.snapshotIndex = applied;
  }
}

/** A refused command's result as the error the proposer throws. */
export function resultError(r: ApplyResult): TributaryError | null {
  return r.ok ? null : new TributaryError(r.error.code as ErrorCode, r.error.message);
}
