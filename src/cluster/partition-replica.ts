/**
 * `PartitionReplica`: one partition's replica on this peer, the state machine of its Raft group.
 * The partition log is the Raft log (see index.ts), so "applying" a committed entry is only moving
 * the high watermark to it; what this class adds is the producers waiting for their batches:
 *
 * | acks | resolved when |
 * |---|---|
 * | 0 | the leader's node accepted the proposal (no offsets: -1) |
 * | 1 | the entry is durable in the leader's log (`persisted`, before it is sent to followers) |
 * | all | the entry is committed (`apply`): durable on a quorum |
 *
 * A waiter whose entry turns out to be another one (a new leader overwrote it) is refused with
 * NOT_LEADER: the batch is not in the log, and a retry is safe. One still waiting when this peer
 * stops leading is refused with REQUEST_TIMED_OUT: the new leader may still commit it, so the
 * broker does not retry it by itself (that could write it twice); a producer that retries without
 * idempotence may, as with Kafka; an idempotent producer's retry is recognised by the leader.
 *
 * Bounded: the node refuses proposals past `maxUncommittedBytes` (OVERLOADED), so waiters are too.
 */
import { TributaryError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { EntryType, decodeConfChange, type Entry, type NodeId, type Snapshot, type SoftState } from "../raft/index.ts";
import type { AppendResult, PartitionLog } from "../storage/log.ts";
import { BATCH_LENGTH_PREFIX_BYTES, batchSizeAt, readBatchHeader, setBatchBaseOffset, verifyBatchCrc } from "../storage/record-batch.ts";
import type { GroupMachine, GroupStore, RaftGroup } from "./group.ts";

/** What a replica needs of its store beyond the core's: moving the high watermark with the commit. */
export interface ReplicaStore extends GroupStore {
  commitTo(index: number): void;
  /** Write what is pending (the applied index) and wait for it. */
  close(): Promise<void>;
  /** The persisted commit index at open: entries up to it are applied already. */
  readonly appliedHint: number;
  /** Record the voters of a membership change being applied (before commitTo passes it). */
  setVoters(voters: readonly NodeId[]): Promise<void>;
  /** `batch` (these very bytes) passed its CRC check on this peer: persisting it need not check again. */
  trustCrc?(batch: Uint8Array): void;
}

export type ReplicaAcks = 0 | 1 | -1;

interface Waiter {
  term: number;
  acks: 1 | -1;
  batch: Uint8Array;
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

export class PartitionReplica implements GroupMachine {
  private groupRef: RaftGroup | null = null;
  private readonly waiters = new Map<number, Waiter>();
  private failure: unknown = null;
  /** Called with the new leader whenever it changes (metrics, forwarding, coordinators). */
  onLeaderChange: ((leader: NodeId, term: number) => void) | null = null;

  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly log: PartitionLog,
    readonly store: ReplicaStore,
    private readonly logger: Logger,
  ) {}

  /** The Raft group; set once by the cluster right after the group is created. */
  set group(g: RaftGroup) {
    this.groupRef = g;
  }
  get group(): RaftGroup {
    if (!this.groupRef) throw new Error(`invariant broken: replica ${this.topic}/${this.partition} has no group`);
    return this.groupRef;
  }

  get leader(): NodeId {
    return this.groupRef?.leader ?? 0;
  }
  get isLeader(): boolean {
    return this.groupRef?.isLeader ?? false;
  }

  /**
   * Propose one RecordBatch v2 (this peer must lead). The batch is checked as the log would check
   * it, so a bad batch is refused here rather than after it is in the Raft log.
   * @example const { baseOffset } = await replica.append(encodeBatch(records, { timestamp }), -1);
   */
  append(batch: Uint8Array, acks: ReplicaAcks, maxMessageBytes: number, options: { crcVerified?: boolean } = {}): Promise<AppendResult> {
    if (this.failure) return Promise.reject(new TributaryError("STORAGE_ERROR", `replica ${this.topic}/${this.partition} stopped: its disk failed`));
    try {
      checkBatch(batch, maxMessageBytes, options.crcVerified === true);
    } catch (e) {
      return Promise.reject(e);
    }
    // The leader's log stamps the offsets when it persists the batch; a batch that carries a stamp
    // (a retry of one an earlier leader persisted) is copied, so bytes in flight elsewhere stay as they are.
    if (readBatchHeader(batch).baseOffset !== 0) {
      batch = batch.slice();
      setBatchBaseOffset(batch, 0);
    }
    this.store.trustCrc?.(batch);
    const r = this.group.propose(batch);
    if (!r.ok) {
      if (r.reason === "overloaded") return Promise.reject(new TributaryError("OVERLOADED", `${this.topic}/${this.partition} has too many uncommitted bytes; retry later`));
      return Promise.reject(notLeader(this.topic, this.partition, r.leader));
    }
    if (acks === 0) return Promise.resolve({ baseOffset: -1, lastOffset: -1 });
    return new Promise((resolve, reject) => this.waiters.set(r.index, { term: r.term, acks, batch, resolve, reject }));
  }

  // ---- GroupMachine ----

  persisted(entries: readonly Entry[]): void {
    for (const e of entries) {
      const w = this.waiters.get(e.index);
      if (!w) continue;
      if (w.term !== e.term) {
        this.waiters.delete(e.index);
        w.reject(overwritten(this.topic, this.partition));
      } else if (w.acks === 1) {
        this.waiters.delete(e.index);
        w.resolve(offsetsOf(w.batch));
      }
    }
  }

  async apply(_snapshot: Snapshot | undefined, committed: readonly Entry[]): Promise<void> {
    // A reassignment's membership changes: raft.json must name the new voters before the commit
    // passes the change, so a restart (and a snapshot sent to a new replica) has them.
    for (const e of committed) if (e.type === EntryType.ConfChange) await this.store.setVoters(decodeConfChange(e.data).voters);
    const last = committed[committed.length - 1];
    if (last) this.store.commitTo(last.index);
    for (const e of committed) {
      const w = this.waiters.get(e.index);
      if (!w) continue;
      this.waiters.delete(e.index);
      if (w.term === e.term) w.resolve(offsetsOf(w.batch));
      else w.reject(overwritten(this.topic, this.partition));
    }
  }

  softState(state: SoftState, term: number): void {
    if (state.role !== "leader") this.rejectAll(unknownOutcome(this.topic, this.partition, state.lead));
    this.onLeaderChange?.(state.lead, term);
  }

  failed(error: unknown): void {
    this.failure = error;
    this.rejectAll(new TributaryError("STORAGE_ERROR", `replica ${this.topic}/${this.partition} stopped: its disk failed`, { cause: error }));
  }

  /** Refuse every waiting producer (shutdown, step-down). */
  rejectAll(error: unknown): void {
    const ws = [...this.waiters.values()];
    this.waiters.clear();
    for (const w of ws) w.reject(error);
  }
}

export function notLeader(topic: string, partition: number, leader: NodeId): TributaryError {
  return new TributaryError("NOT_LEADER", leader ? `peer ${leader} leads ${topic}/${partition}; retry there` : `${topic}/${partition} has no leader yet (an election is running); retry`);
}

/** A batch proposed here whose leader stepped down before it committed: a new leader may still commit it. */
export function unknownOutcome(topic: string, partition: number, leader: NodeId): TributaryError {
  return new TributaryError("REQUEST_TIMED_OUT", `the leader of ${topic}/${partition} changed${leader ? ` (now peer ${leader})` : ""} before the batch was committed: it may or may not be in the log`);
}

/** The entry at the batch's index is another one: the batch is not in the log. */
function overwritten(topic: string, partition: number): TributaryError {
  return new TributaryError("NOT_LEADER", `a new leader of ${topic}/${partition} replaced the batch before it was committed: it is not in the log; retry`);
}

/** The offsets a persisted batch got: its log stamped them into the bytes in place. */
function offsetsOf(batch: Uint8Array): AppendResult {
  const h = readBatchHeader(batch);
  return { baseOffset: h.baseOffset, lastOffset: h.baseOffset + h.lastOffsetDelta };
}

/** `crcVerified`: the CRC is known good (see PartitionLog.append), the rest is checked all the same. */
function checkBatch(batch: Uint8Array, maxMessageBytes: number, crcVerified: boolean): void {
  if (batch.length > maxMessageBytes) throw new TributaryError("RECORD_TOO_LARGE", `batch of ${batch.length} bytes is over max.message.bytes ${maxMessageBytes}`);
  const h = readBatchHeader(batch);
  if (batchSizeAt(batch) !== batch.length) throw new TributaryError("CORRUPT_RECORD", `batch length field says ${h.batchLength + BATCH_LENGTH_PREFIX_BYTES} bytes, got ${batch.length}`);
  if (!crcVerified && !verifyBatchCrc(batch)) throw new TributaryError("CORRUPT_RECORD", "batch CRC-32C does not match its bytes");
  if (h.isControl) throw new TributaryError("INVALID_REQUEST", "control batches are written by the broker only");
}
