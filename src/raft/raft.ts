/**
 * The Raft node: a state machine fed by `tick`, `step` and proposals, read through `ready` and
 * `advance`. Nothing here touches a clock, a disk or a socket; see index.ts for the contract.
 *
 * Longer than STYLE point 12 likes, as etcd's raft.go is: every role reads and resets the same
 * term/vote/progress state, so the seams are sections (time, roles, step, leader replication,
 * membership) rather than files. The parts with a state of their own (log, progress, quorum)
 * already live apart.
 */
import { assert } from "../errors.ts";
import { decodeConfChange, encodeConfChange, type ConfChange, type ConfChangeEntry } from "./conf-change.ts";
import { RaftLog } from "./log.ts";
import {
  EntryType,
  MessageType,
  NONE,
  entryBytes,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  type Ready,
  type SoftState,
  type StateRole,
} from "./messages.ts";
import { Progress } from "./progress.ts";
import { committedIndex, isQuorum, voteResult } from "./quorum.ts";
import type { Storage } from "./storage.ts";

export interface RaftConfig {
  readonly id: NodeId;
  /** The voters when the storage holds no snapshot yet (a new group); ignored otherwise. */
  readonly peers: readonly NodeId[];
  /** A follower campaigns after a random timeout in [electionTicks, 2*electionTicks). */
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** Append messages in flight to one follower in replicate state. */
  readonly maxInflightMsgs: number;
  /** Entry bytes per append message (at least one entry is always sent). */
  readonly maxSizePerMsg: number;
  /** Proposed bytes not yet committed; past it proposals are refused as "overloaded". */
  readonly maxUncommittedBytes?: number;
  /** Committed entry bytes handed out per Ready. */
  readonly maxApplyBytes?: number;
  /** The last index the application has applied (when its state survives a restart). */
  readonly applied?: number;
  /** Uniform in [0, 1): the one source of randomness (election timeouts). Seeded in tests. */
  readonly random: () => number;
  /** The last (index, term) of a log this node had and lost: it votes only for candidates at least as up to date. */
  readonly voteFloor?: { readonly index: number; readonly term: number };
}

export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | {
      readonly ok: false;
      readonly reason: "not-leader" | "transferring" | "overloaded" | "conf-change-pending" | "invalid";
      /** The leader as far as this node knows (NONE if unknown), for redirecting the client. */
      readonly leader: NodeId;
    };

type CampaignKind = "pre-election" | "election" | "transfer";

export class RaftNode {
  readonly id: NodeId;
  private termValue = 0;
  private voteValue: NodeId = NONE;
  private leadValue: NodeId = NONE;
  private roleValue: StateRole = "follower";
  readonly log: RaftLog;
  private voters: NodeId[];
  private readonly prs = new Map<NodeId, Progress>();
  private readonly votes = new Map<NodeId, boolean>();
  private msgs: Message[] = [];
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private leadTransferee: NodeId = NONE;
  /** No conf change may be proposed while one at an index above `applied` is in the log. */
  private pendingConfIndex = 0;
  private uncommittedBytes = 0;
  /** A Ready was handed out and not yet advanced: the driver must finish it before the next. */
  private awaitingAdvance = false;
  private prevHard: HardState;
  private prevSoft: SoftState;
  private readonly maxUncommittedBytes: number;

  constructor(
    private readonly config: RaftConfig,
    storage: Storage,
  ) {
    assert(config.electionTicks > config.heartbeatTicks && config.heartbeatTicks > 0, "electionTicks > heartbeatTicks > 0");
    assert(config.maxInflightMsgs > 0 && config.maxSizePerMsg > 0, "maxInflightMsgs and maxSizePerMsg are positive");
    this.id = config.id;
    this.maxUncommittedBytes = config.maxUncommittedBytes ?? 1 << 30;
    this.log = new RaftLog(storage, config.maxApplyBytes ?? 1 << 30);
    const { hardState, confState } = storage.initialState();
    this.voters = sortedIds(confState.voters.length > 0 ? confState.voters : config.peers);
    if (hardState.commit > 0) {
      assert(hardState.commit <= this.log.lastIndex(), `persisted commit ${hardState.commit} beyond the log`);
      this.log.commitTo(hardState.commit);
    }
    this.termValue = hardState.term;
    this.voteValue = hardState.vote;
    if (config.applied !== undefined && config.applied > this.log.applied) this.log.appliedTo(config.applied);
    this.becomeFollower(this.termValue, NONE);
    this.prevHard = hardState;
    this.prevSoft = this.softState();
  }

  // ---- observation ----

  get term(): number {
    return this.termValue;
  }
  get vote(): NodeId {
    return this.voteValue;
  }
  get lead(): NodeId {
    return this.leadValue;
  }
  get role(): StateRole {
    return this.roleValue;
  }
  get transferee(): NodeId {
    return this.leadTransferee;
  }
  confState(): ConfState {
    return { voters: [...this.voters] };
  }
  hardState(): HardState {
    return { term: this.termValue, vote: this.voteValue, commit: this.log.committed };
  }
  softState(): SoftState {
    return { lead: this.leadValue, role: this.roleValue };
  }
  /** The leader's view of a follower (for tests and metrics). */
  progress(id: NodeId): Readonly<Progress> | undefined {
    return this.prs.get(id);
  }

  // ---- inputs ----

  /** One unit of logical time: followers count toward an election, leaders toward a heartbeat. */
  tick(): void {
    if (this.roleValue === "leader") this.tickHeartbeat();
    else this.tickElection();
  }

  /** Start an election now (as a timeout would). */
  campaign(): void {
    this.hup("pre-or-election");
  }

  /**
   * Append `data` as a new entry if this node leads.
   * @example const r = node.propose(new TextEncoder().encode("x")); if (!r.ok) redirect(r.leader);
   */
  propose(data: Uint8Array): ProposeResult {
    return this.appendProposal(EntryType.Normal, data);
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    if (this.roleValue === "leader" && this.pendingConfIndex > this.log.applied) {
      return { ok: false, reason: "conf-change-pending", leader: this.leadValue };
    }
    const isVoter = this.voters.includes(cc.nodeId);
    if (cc.nodeId === NONE || (cc.type === "add-voter" ? isVoter : !isVoter) || (cc.type === "remove-voter" && this.voters.length === 1)) {
      return { ok: false, reason: "invalid", leader: this.leadValue };
    }
    const voters = cc.type === "add-voter" ? sortedIds([...this.voters, cc.nodeId]) : this.voters.filter((id) => id !== cc.nodeId);
    const r = this.appendProposal(EntryType.ConfChange, encodeConfChange({ ...cc, voters }));
    if (r.ok) this.pendingConfIndex = r.index;
    return r;
  }

  /** Hand leadership to `to` once its log is caught up (TimeoutNow). Proposals are refused meanwhile. */
  transferLeadership(to: NodeId): boolean {
    if (this.roleValue !== "leader" || to === this.id || !this.voters.includes(to)) return false;
    if (this.leadTransferee === to) return true;
    this.leadTransferee = to;
    // The transfer must finish within an election timeout or it is abandoned (tickHeartbeat).
    this.electionElapsed = 0;
    const pr = this.prs.get(to)!;
    if (pr.match === this.log.lastIndex()) this.send({ type: MessageType.TimeoutNow, to });
    else this.sendAppend(to);
    return true;
  }

  /** The driver could not deliver a snapshot to `to`: probe again after the next heartbeat. */
  reportSnapshotFailed(to: NodeId): void {
    const pr = this.prs.get(to);
    if (this.roleValue !== "leader" || !pr || pr.state !== "snapshot") return;
    pr.becomeProbe();
    pr.probeSent = true;
  }

  /**
   * Entries the store did not have at hand (Storage.entries answered null) now are: send `to`
   * what its progress allows. A no-op unless this node leads.
   */
  retryAppend(to: NodeId): void {
    if (this.roleValue !== "leader" || to === this.id || !this.prs.has(to)) return;
    this.maybeSendAppend(to, false);
  }

  /** The driver knows `to` is unreachable: stop pipelining into the void. */
  reportUnreachable(to: NodeId): void {
    const pr = this.prs.get(to);
    if (this.roleValue === "leader" && pr?.state === "replicate") pr.becomeProbe();
  }

  step(m: Message): void {
    if (m.to !== this.id) return;
    if (m.term > this.termValue) {
      if (!this.acceptHigherTerm(m)) return;
    } else if (m.term < this.termValue) {
      this.answerStale(m);
      return;
    }
    switch (m.type) {
      case MessageType.Vote:
      case MessageType.PreVote:
        this.handleVoteRequest(m);
        return;
      default:
        if (this.roleValue === "leader") this.stepLeader(m);
        else if (this.roleValue === "follower") this.stepFollower(m);
        else this.stepCandidate(m);
    }
  }

  // ---- outputs ----

  hasReady(): boolean {
    const soft = this.softState();
    return (
      this.msgs.length > 0 ||
      this.log.unstable().length > 0 ||
      this.log.pendingSnapshot() !== undefined ||
      this.log.hasNextCommitted() ||
      soft.lead !== this.prevSoft.lead ||
      soft.role !== this.prevSoft.role ||
      !sameHardState(this.hardState(), this.prevHard)
    );
  }

  /** The work for the driver; messages move into the Ready (send them even if advance comes late). */
  ready(): Ready {
    assert(!this.awaitingAdvance, "ready() called again before advance()");
    this.awaitingAdvance = true;
    const soft = this.softState();
    const hard = this.hardState();
    const snapshot = this.log.pendingSnapshot();
    const rd: Ready = {
      entries: [...this.log.unstable()],
      committedEntries: this.log.nextCommitted(),
      messages: this.msgs,
      ...(soft.lead !== this.prevSoft.lead || soft.role !== this.prevSoft.role ? { softState: soft } : {}),
      ...(!sameHardState(hard, this.prevHard) ? { hardState: hard } : {}),
      ...(snapshot ? { snapshot } : {}),
    };
    this.msgs = [];
    return rd;
  }

  /**
   * True for a message of the Ready being handled that the driver may send before that Ready's
   * persist completes: a leader's appends, heartbeats and snapshots in a term already durable
   * here (Raft thesis §10.2.1: the leader writes its log in parallel with replicating it; its own
   * entries count toward the commit only after `advance`). Votes, responses and anything of a
   * term not yet persisted bind this node to state it must persist first.
   */
  sendableBeforePersist(m: Message): boolean {
    const early = m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap;
    return early && m.from === this.id && m.term === this.prevHard.term;
  }

  /** The driver persisted, sent and applied `rd`. Applies conf changes among its committed entries. */
  advance(rd: Ready): void {
    this.awaitingAdvance = false;
    if (rd.softState) this.prevSoft = rd.softState;
    if (rd.hardState) this.prevHard = rd.hardState;
    if (rd.snapshot) {
      this.log.stableSnapTo(rd.snapshot.meta.index);
      this.log.appliedTo(rd.snapshot.meta.index);
    }
    const last = rd.entries[rd.entries.length - 1];
    if (last) {
      this.log.stableTo(last.index, last.term);
      this.persistedOwn(last);
    }
    for (const e of rd.committedEntries) {
      if (e.index <= this.log.applied) continue;
      this.log.appliedTo(e.index);
      this.uncommittedBytes = Math.max(0, this.uncommittedBytes - entryBytes(e));
      if (e.type === EntryType.ConfChange) this.applyConfChange(decodeConfChange(e.data));
    }
  }

  // ---- time ----

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup("pre-or-election");
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.config.electionTicks) {
      this.electionElapsed = 0;
      if (this.config.checkQuorum) this.checkQuorum();
      if (this.roleValue !== "leader") return;
      this.retryStalledSnapshots();
      this.leadTransferee = NONE; // the transfer did not finish within an election timeout
    }
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  /**
   * A snapshot unacknowledged for one to two election timeouts was lost (or its follower crashed):
   * fall back to probe, which sends it again if still needed. The driver should still call
   * reportSnapshotFailed when it knows; this covers losses nobody saw.
   */
  private retryStalledSnapshots(): void {
    for (const pr of this.prs.values()) {
      if (pr.state !== "snapshot") continue;
      if (pr.snapshotStale) pr.becomeProbe();
      else pr.snapshotStale = true;
    }
  }

  /** Check-quorum: a leader that has not heard from a majority in an election timeout steps down. */
  private checkQuorum(): void {
    let active = 0;
    for (const id of this.voters) {
      const pr = this.prs.get(id)!;
      if (id === this.id || pr.recentActive) active++;
      pr.recentActive = false;
    }
    if (!isQuorum(this.voters, active)) this.becomeFollower(this.termValue, NONE);
  }

  // ---- roles ----

  private promotable(): boolean {
    return this.voters.includes(this.id) && this.log.pendingSnapshot() === undefined;
  }

  private reset(term: number): void {
    if (term !== this.termValue) {
      this.termValue = term;
      this.voteValue = NONE;
    }
    this.leadValue = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.config.electionTicks + Math.floor(this.config.random() * this.config.electionTicks);
    this.leadTransferee = NONE;
    this.votes.clear();
    this.prs.clear();
    for (const id of this.voters) this.prs.set(id, this.newProgress(id));
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
  }

  private newProgress(id: NodeId): Progress {
    const last = this.log.lastIndex();
    // Our own match is what is durable here (see appendEntries), not what is merely appended.
    return new Progress(id === this.id ? this.log.stableLastIndex() : 0, last + 1, this.config.maxInflightMsgs);
  }

  private becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.leadValue = lead;
    this.roleValue = "follower";
  }

  private becomePreCandidate(): void {
    // A pre-candidate changes neither term nor vote: that is the point of pre-vote.
    this.votes.clear();
    this.leadValue = NONE;
    this.roleValue = "precandidate";
  }

  private becomeCandidate(): void {
    this.reset(this.termValue + 1);
    this.voteValue = this.id;
    this.roleValue = "candidate";
  }

  private becomeLeader(): void {
    this.reset(this.termValue);
    this.leadValue = this.id;
    this.roleValue = "leader";
    this.prs.get(this.id)!.becomeReplicate();
    // Conf changes wait until this term's first entry is applied: everything before it is then applied too.
    this.pendingConfIndex = this.log.lastIndex() + 1;
    // The no-op lets this leader commit earlier terms' entries (it may commit only its own term's).
    this.appendEntries([{ type: EntryType.Normal, data: new Uint8Array(0) }]);
    for (const pr of this.prs.values()) pr.recentActive = true;
  }

  private hup(kind: "pre-or-election" | "transfer"): void {
    if (this.roleValue === "leader" || !this.promotable()) return;
    // A conf change committed but not applied may change who votes: wait until it is applied.
    const pending = this.log.slice(this.log.applied + 1, this.log.committed + 1, Number.MAX_SAFE_INTEGER) ?? [];
    if (pending.some((e) => e.type === EntryType.ConfChange)) return;
    this.campaignAs(kind === "transfer" ? "transfer" : this.config.preVote ? "pre-election" : "election");
  }

  private campaignAs(kind: CampaignKind): void {
    let term: number;
    let type: MessageType;
    if (kind === "pre-election") {
      this.becomePreCandidate();
      term = this.termValue + 1;
      type = MessageType.PreVote;
    } else {
      this.becomeCandidate();
      term = this.termValue;
      type = MessageType.Vote;
    }
    this.votes.set(this.id, true);
    if (this.tallyVotes(kind === "pre-election")) return;
    for (const to of this.voters) {
      if (to === this.id) continue;
      this.send({
        type,
        to,
        term,
        index: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
        ...(kind === "transfer" ? { transfer: true } : {}),
      });
    }
  }

  /** Act on the votes so far; true if the campaign ended (won or lost). */
  private tallyVotes(pre: boolean): boolean {
    const result = voteResult(this.voters, this.votes);
    if (result === "won") {
      if (pre) this.campaignAs("election");
      else {
        this.becomeLeader();
        this.broadcastAppend();
      }
    } else if (result === "lost") {
      this.becomeFollower(this.termValue, NONE);
    }
    return result !== "pending";
  }

  // ---- step ----

  /** A message from a later term. Returns whether to go on handling it. */
  private acceptHigherTerm(m: Message): boolean {
    if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
      // The leader lease: while we hear from a leader, a disrupting candidate is ignored outright.
      const inLease = this.config.checkQuorum && this.leadValue !== NONE && this.electionElapsed < this.config.electionTicks;
      if (inLease && !m.transfer) return false;
    }
    if (m.type === MessageType.PreVote) return true; // a pre-vote never moves our term
    if (m.type === MessageType.PreVoteResp && !m.reject) return true; // granted for the term we would take
    const fromLeader = m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap;
    this.becomeFollower(m.term, fromLeader ? m.from : NONE);
    return true;
  }

  private answerStale(m: Message): void {
    if ((this.config.checkQuorum || this.config.preVote) && (m.type === MessageType.App || m.type === MessageType.Heartbeat)) {
      // A deposed leader cut off by a partition learns our term from this and steps down; without
      // it, pre-vote/check-quorum could leave it stuck (etcd's reasoning, raft.go).
      this.send({ type: MessageType.AppResp, to: m.from });
    } else if (m.type === MessageType.PreVote) {
      this.send({ type: MessageType.PreVoteResp, to: m.from, reject: true });
    }
  }

  private handleVoteRequest(m: Message): void {
    const canVote =
      this.voteValue === m.from ||
      (this.voteValue === NONE && this.leadValue === NONE) ||
      (m.type === MessageType.PreVote && m.term > this.termValue);
    const respType = m.type === MessageType.Vote ? MessageType.VoteResp : MessageType.PreVoteResp;
    if (canVote && this.log.isUpToDate(m.index, m.logTerm) && this.aboveVoteFloor(m)) {
      // The answer carries the request's term so a pre-candidate counts it (our term may be lower).
      this.send({ type: respType, to: m.from, term: m.term });
      if (m.type === MessageType.Vote) {
        this.electionElapsed = 0;
        this.voteValue = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, term: this.termValue, reject: true });
    }
  }

  /**
   * A node that lost its log (a partition replica moved off its peer and back: its files were
   * deleted) remembers how far that log went (`RaftConfig.voteFloor`), and votes only for a
   * candidate at least that up to date, as it would have with the log it had.
   */
  private aboveVoteFloor(m: Message): boolean {
    const floor = this.config.voteFloor;
    if (!floor) return true;
    return m.logTerm > floor.term || (m.logTerm === floor.term && m.index >= floor.index);
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.App:
        this.electionElapsed = 0;
        this.leadValue = m.from;
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.leadValue = m.from;
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.electionElapsed = 0;
        this.leadValue = m.from;
        this.handleSnapshot(m);
        return;
      case MessageType.TimeoutNow:
        this.hup("transfer");
        return;
      default:
        return;
    }
  }

  private stepCandidate(m: Message): void {
    const pre = this.roleValue === "precandidate";
    switch (m.type) {
      case MessageType.App:
      case MessageType.Heartbeat:
      case MessageType.Snap:
        // A leader of our term exists (a pre-candidate has not left it): follow it.
        this.becomeFollower(m.term, m.from);
        this.stepFollower(m);
        return;
      case MessageType.VoteResp:
      case MessageType.PreVoteResp:
        if ((m.type === MessageType.PreVoteResp) !== pre) return;
        this.votes.set(m.from, !m.reject);
        this.tallyVotes(pre);
        return;
      default:
        return;
    }
  }

  private stepLeader(m: Message): void {
    const pr = this.prs.get(m.from);
    if (!pr) return;
    switch (m.type) {
      case MessageType.AppResp:
        pr.recentActive = true;
        if (m.reject) this.handleAppendRejected(m.from, pr, m);
        else this.handleAppendAccepted(m.from, pr, m.index);
        return;
      case MessageType.HeartbeatResp:
        pr.recentActive = true;
        pr.probeSent = false;
        if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirst();
        if (pr.match < this.log.lastIndex()) this.sendAppend(m.from);
        return;
      default:
        return;
    }
  }

  private handleAppendRejected(from: NodeId, pr: Progress, m: Message): void {
    // Skip the whole conflicting term at once (etcd's findConflictByTerm on both ends).
    const hint = m.logTerm > 0 ? this.log.findConflictByTerm(m.rejectHint, m.logTerm)[0] : m.rejectHint;
    if (pr.maybeDecrTo(m.index, hint)) {
      if (pr.state === "replicate") pr.becomeProbe();
      this.sendAppend(from);
    }
  }

  private handleAppendAccepted(from: NodeId, pr: Progress, index: number): void {
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(index)) return;
    if (pr.state === "probe") pr.becomeReplicate();
    else if (pr.state === "snapshot" && pr.match + 1 >= this.log.firstIndex()) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === "replicate") pr.inflights.freeLE(index);

    if (this.maybeCommit()) this.broadcastAppend();
    else if (wasPaused) this.sendAppend(from);
    // Pipelining: keep filling the window while there is more to send.
    while (this.maybeSendAppend(from, false)) {}
    if (from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.send({ type: MessageType.TimeoutNow, to: from });
    }
  }

  private handleAppend(m: Message): void {
    if (m.index < this.log.committed) {
      this.send({ type: MessageType.AppResp, to: m.from, index: this.log.committed });
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send({ type: MessageType.AppResp, to: m.from, index: lastNew });
      return;
    }
    // Reject with the last index that may match: at most our last index, and skipping entries of
    // terms above the leader's prevLogTerm, which cannot match.
    const [hintIndex, hintTerm] = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send({ type: MessageType.AppResp, to: m.from, index: m.index, reject: true, rejectHint: hintIndex, logTerm: hintTerm });
  }

  private handleHeartbeat(m: Message): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    this.send({ type: MessageType.HeartbeatResp, to: m.from });
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot;
    assert(s, "a snap message carries a snapshot");
    const { index, term } = s.meta;
    if (index <= this.log.committed) {
      this.send({ type: MessageType.AppResp, to: m.from, index: this.log.committed });
      return;
    }
    if (this.log.matchTerm(index, term)) {
      // We already hold that entry: just fast-forward the commit.
      this.log.commitTo(index);
    } else {
      this.log.restore(s);
      this.voters = sortedIds(s.meta.confState.voters);
      this.prs.clear();
      for (const id of this.voters) this.prs.set(id, this.newProgress(id));
    }
    this.send({ type: MessageType.AppResp, to: m.from, index: this.log.lastIndex() });
  }

  // ---- leader: proposals and replication ----

  private appendProposal(type: EntryType, data: Uint8Array): ProposeResult {
    if (this.roleValue !== "leader") return { ok: false, reason: "not-leader", leader: this.leadValue };
    if (this.leadTransferee !== NONE) return { ok: false, reason: "transferring", leader: this.leadValue };
    const bytes = data.byteLength + 24;
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > this.maxUncommittedBytes) {
      return { ok: false, reason: "overloaded", leader: this.id };
    }
    const index = this.appendEntries([{ type, data }]);
    this.uncommittedBytes += bytes;
    this.broadcastAppend();
    return { ok: true, index, term: this.termValue };
  }

  /**
   * A leader's own entries count toward the commit only once its driver persisted them (advance),
   * not when appended: the driver may send them to followers while its own write runs (Raft
   * thesis §10.2.1), and an entry counted here before it is on this disk could be committed by
   * a quorum that includes a copy a crash loses.
   */
  private appendEntries(items: readonly { type: EntryType; data: Uint8Array }[]): number {
    let index = this.log.lastIndex();
    const entries: Entry[] = items.map((it) => ({ term: this.termValue, index: ++index, type: it.type, data: it.data }));
    this.log.append(entries);
    return index;
  }

  /** A Ready's entries up to `last` are durable here: a leader counts itself for them now. */
  private persistedOwn(last: Entry): void {
    if (this.roleValue !== "leader" || this.log.term(last.index) !== last.term) return;
    if (this.prs.get(this.id)?.maybeUpdate(last.index) && this.maybeCommit()) this.broadcastAppend();
  }

  private maybeCommit(): boolean {
    const index = committedIndex(this.voters, (id) => this.prs.get(id)?.match ?? 0);
    return this.log.maybeCommit(index, this.termValue);
  }

  private broadcastAppend(): void {
    for (const id of this.voters) if (id !== this.id) this.sendAppend(id);
  }

  private broadcastHeartbeat(): void {
    for (const id of this.voters) {
      if (id === this.id) continue;
      const pr = this.prs.get(id)!;
      this.send({ type: MessageType.Heartbeat, to: id, commit: Math.min(pr.match, this.log.committed) });
    }
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  /** Send the next batch to `to` if its progress allows; a snapshot if its next entries are compacted. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.prs.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const entries = this.log.entriesFrom(pr.next, this.config.maxSizePerMsg);
    // The store has them on disk only: the driver fetches them and calls retryAppend.
    if (entries === null) return false;
    if (entries !== undefined && entries.length === 0 && !sendIfEmpty) return false;
    if (prevTerm === undefined || entries === undefined) return this.sendSnapshot(to, pr);
    this.send({ type: MessageType.App, to, index: prevIndex, logTerm: prevTerm, entries, commit: this.log.committed });
    const last = entries[entries.length - 1];
    if (pr.state === "replicate" && last) {
      pr.optimisticUpdate(last.index);
      pr.inflights.add(last.index);
    } else if (pr.state === "probe") {
      pr.probeSent = true;
    }
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    // Only to followers we have heard from lately: a snapshot is large and the peer may be down.
    if (!pr.recentActive) return false;
    const snapshot = this.log.snapshot();
    if (snapshot.meta.index === 0) return false;
    pr.becomeSnapshot(snapshot.meta.index);
    this.send({ type: MessageType.Snap, to, snapshot });
    return true;
  }

  // ---- membership ----

  private applyConfChange(cc: ConfChangeEntry): void {
    const before = this.voters;
    this.voters = sortedIds(cc.voters);
    for (const id of before) if (!this.voters.includes(id)) this.prs.delete(id);
    for (const id of this.voters) {
      if (this.prs.has(id)) continue;
      const pr = this.newProgress(id);
      pr.recentActive = true; // give it an election timeout before check-quorum counts it missing
      this.prs.set(id, pr);
      if (this.roleValue === "leader") this.sendAppend(id);
    }
    if (this.roleValue !== "leader") return;
    if (!this.voters.includes(this.id)) {
      // A leader that removed itself steps aside; the others elect among themselves.
      this.becomeFollower(this.termValue, NONE);
      return;
    }
    if (this.leadTransferee !== NONE && !this.voters.includes(this.leadTransferee)) this.leadTransferee = NONE;
    // A smaller quorum may commit more.
    if (this.maybeCommit()) this.broadcastAppend();
  }

  private send(m: Partial<Message> & { type: MessageType; to: NodeId }): void {
    this.msgs.push({
      from: this.id,
      term: this.termValue,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      ...m,
    });
  }
}

function sortedIds(ids: readonly NodeId[]): NodeId[] {
  return [...new Set(ids)].sort((a, b) => a - b);
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
