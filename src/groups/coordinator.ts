/**
 * The consumer-group coordinator: membership, target assignments, generations, and committed
 * offsets (kept in the internal compacted topic `__consumer_offsets`, see offsets-store.ts).
 *
 * Protocol: server-side assignment in the manner of Kafka's KIP-848, one call instead of
 * JoinGroup/SyncGroup.
 *
 *   member ── heartbeat {groupId, memberId?, topics?, ownedPartitions?} ──► coordinator
 *          ◄── {memberId, generationId, assignment, pendingPartitions, rebalanceInProgress}
 *
 * - Join: a heartbeat without memberId. The coordinator makes an id, and any change of membership
 *   or subscriptions (join, leave, session expiry, a new subscription, a topic created or deleted
 *   under a subscription) bumps the group's generation and computes a new target assignment with
 *   the group's assignor (a pure function, assignors.ts).
 * - Revoke before reassign: a partition that moves from A to B is withheld from B (it shows in
 *   B's `pendingPartitions`) until A heartbeats without it in `ownedPartitions` (or omits
 *   ownedPartitions, meaning "I hold what you told me"), or A leaves or expires. So at every moment
 *   each partition is held by at most one member, and in each generation's target exactly one.
 * - Generations fence commits: a commit must carry the current generation and a member id that
 *   holds the partition (ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID otherwise), so a member that was
 *   expired, or lost the partition, cannot overwrite its new owner's progress.
 * - Sessions: every heartbeat restarts the member's session timer on the injected Clock; on
 *   expiry the member is removed as if it had left. A group going from empty to its first member
 *   waits group.initial.rebalance.delay.ms (members hear rebalanceInProgress and no partitions)
 *   so members starting together do not cause a rebalance each.
 * - A heartbeat from an unknown member id gets UNKNOWN_MEMBER_ID: it joins again without an id.
 *
 * Bounds: MAX_GROUPS groups (with members or committed offsets), MAX_MEMBERS_PER_GROUP members;
 * beyond either a join gets OVERLOADED.
 *
 * @example
 *   const hb = await broker.groups.heartbeat({ groupId: "g", topics: ["telemetry"] });
 *   await broker.groups.commitOffsets({ groupId: "g", memberId: hb.memberId, generationId: hb.generationId,
 *     offsets: [{ topic: "telemetry", partition: 0, offset: 42 }] });
 */
import { TributaryError } from "../errors.ts";
import type { Clock } from "../runtime/clock.ts";
import type { Logger } from "../logger.ts";
import { assign, compareTopicPartitions, planReconciliation, tpKey, type Assignment, type Reconciliation } from "./assignors.ts";
import { decodeOffsetRecord, encodeOffsetKey, encodeOffsetValue, type StoredOffset } from "./offsets-store.ts";
import {
  ASSIGNOR_NAMES,
  type AssignorName,
  type AutoOffsetReset,
  type CommitOffsetsRequest,
  type CommittedOffset,
  type GroupDescription,
  type GroupHeartbeatRequest,
  type GroupHeartbeatResponse,
  type GroupListing,
  type GroupState,
  type OffsetResetTarget,
  type PartitionLag,
  type TopicPartition,
} from "./types.ts";

export const MAX_GROUPS = 10_000;
export const MAX_MEMBERS_PER_GROUP = 100;
/** Topics one member may subscribe to. */
export const MAX_SUBSCRIBED_TOPICS = 1000;
/** Kafka's default session.timeout.ms, clamped into the broker's [min, max]. */
export const DEFAULT_SESSION_TIMEOUT_MS = 45_000;
export const MAX_METADATA_CHARS = 4096;
const DEFAULT_ASSIGNOR: AssignorName = "cooperative-sticky";
/** Group ids go into URL paths and keys: Kafka-topic-like characters only. */
const GROUP_ID = /^[a-zA-Z0-9._-]{1,249}$/;

/** What the coordinator needs of the broker: topic shapes and the offsets topic. */
export interface GroupBrokerView {
  /** Partition count of a topic, or undefined when it does not exist. */
  partitionCount(topic: string): number | undefined;
  /** Stored range of a partition now. */
  bounds(topic: string, partition: number): { logStartOffset: number; highWatermark: number };
  offsetForTimestamp(topic: string, partition: number, timestampMs: number): Promise<number | null>;
  /** Append records to __consumer_offsets; resolves with the first offset once durable. */
  appendOffsets(records: { key: Uint8Array; value: Uint8Array | null }[]): Promise<number>;
  /** Every record of __consumer_offsets in offset order. */
  readOffsets(): AsyncIterable<{ key: Uint8Array | null; value: Uint8Array | null }>;
  /**
   * In a cluster: throws NOT_COORDINATOR (naming the coordinator) unless this peer coordinates the
   * groups, that is leads __consumer_offsets and has loaded it. Absent on a single node.
   */
  checkCoordinator?(): void;
}

export interface GroupSettings {
  minSessionTimeoutMs: number;
  maxSessionTimeoutMs: number;
  initialRebalanceDelayMs: number;
}

interface Member {
  memberId: string;
  clientId: string;
  topics: string[];
  sessionTimeoutMs: number;
  lastHeartbeatMs: number;
  cancelSession: () => void;
  /** What the member may be consuming: what it was given, less what it reported giving up. */
  held: TopicPartition[];
  /** The assignment of the last reply. */
  lastAssignment: TopicPartition[];
}

interface Committed extends StoredOffset {
  /** Offset of the commit record in __consumer_offsets: a later record always wins. */
  logOffset: number;
}

interface Group {
  groupId: string;
  assignor: AssignorName | null;
  generation: number;
  members: Map<string, Member>;
  target: Assignment;
  /** Partition counts the target was computed for, to notice topics created, deleted or grown. */
  countsKey: string;
  cancelDelay: (() => void) | null;
  offsets: Map<string, Committed & TopicPartition>;
}

export class GroupCoordinator {
  private readonly groups = new Map<string, Group>();
  private nextMember = 0;
  private closed = false;

  constructor(
    private readonly view: GroupBrokerView,
    private readonly settings: GroupSettings,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /** Replay __consumer_offsets (the broker calls this once on open). */
  async load(): Promise<void> {
    let logOffset = 0;
    let skipped = 0;
    for await (const r of this.view.readOffsets()) {
      const rec = decodeOffsetRecord(r.key, r.value);
      logOffset++;
      if (!rec) {
        skipped++;
        continue;
      }
      const k = tpKey(rec);
      if (rec.value === null) {
        const g = this.groups.get(rec.groupId);
        g?.offsets.delete(k);
        if (g && g.offsets.size === 0) this.groups.delete(rec.groupId);
      } else {
        const g = this.groups.get(rec.groupId) ?? this.newGroup(rec.groupId);
        g.offsets.set(k, { topic: rec.topic, partition: rec.partition, ...rec.value, logOffset: -1 });
      }
    }
    if (skipped > 0) this.logger.warn("skipped records of __consumer_offsets that are not commits", { count: skipped });
    this.logger.info("consumer group offsets loaded", { groups: this.groups.size, records: logOffset });
  }

  /** Stop every timer (the broker calls this on close). */
  close(): void {
    this.closed = true;
    this.forget();
  }

  /**
   * In a cluster: this peer no longer leads __consumer_offsets. Members and offsets are forgotten
   * (the new coordinator replays the same offsets; members join it again).
   */
  resign(): void {
    this.forget();
  }

  /** In a cluster: this peer now leads __consumer_offsets: start again from its records. */
  async takeOver(): Promise<void> {
    this.forget();
    await this.load();
  }

  private forget(): void {
    for (const g of this.groups.values()) {
      g.cancelDelay?.();
      for (const m of g.members.values()) m.cancelSession();
    }
    this.groups.clear();
  }

  /**
   * Join (no memberId) or heartbeat; see the protocol above.
   * @example const { memberId, generationId, assignment } = await groups.heartbeat({ groupId: "g", topics: ["t"] });
   */
  async heartbeat(req: GroupHeartbeatRequest): Promise<GroupHeartbeatResponse> {
    this.checkOpen();
    checkGroupId(req.groupId);
    const topics = req.topics === undefined ? undefined : checkTopics(req.topics);
    let g = this.groups.get(req.groupId);
    let m: Member;
    if (!req.memberId) {
      if (topics === undefined) throw new TributaryError("INVALID_REQUEST", "joining a group needs a subscription (topics)");
      const assignor = req.assignor ?? g?.assignor ?? DEFAULT_ASSIGNOR;
      if (!ASSIGNOR_NAMES.includes(assignor)) throw new TributaryError("INVALID_REQUEST", `assignor must be one of ${ASSIGNOR_NAMES.join(", ")}, got ${JSON.stringify(assignor)}`);
      const sessionTimeoutMs = this.sessionTimeout(req.sessionTimeoutMs);
      if (!g) {
        if (this.groups.size >= MAX_GROUPS) throw new TributaryError("OVERLOADED", `the broker holds ${MAX_GROUPS} groups, its limit`);
        g = this.newGroup(req.groupId);
      }
      if (g.members.size >= MAX_MEMBERS_PER_GROUP) throw new TributaryError("OVERLOADED", `group ${g.groupId} has ${MAX_MEMBERS_PER_GROUP} members, its limit`);
      if (g.assignor !== null && g.members.size > 0 && g.assignor !== assignor) {
        throw new TributaryError("INVALID_REQUEST", `group ${g.groupId} uses the ${g.assignor} assignor; a member cannot join with ${assignor}`);
      }
      const wasEmpty = g.members.size === 0;
      g.assignor = assignor;
      const memberId = `${req.clientId ? `${req.clientId}-` : ""}${(this.nextMember++).toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
      m = { memberId, clientId: req.clientId ?? "", topics, sessionTimeoutMs, lastHeartbeatMs: this.clock.now(), cancelSession: () => {}, held: [], lastAssignment: [] };
      g.members.set(memberId, m);
      this.logger.info("member joined group", { group: g.groupId, member: memberId, topics });
      if (wasEmpty && this.settings.initialRebalanceDelayMs > 0) this.startInitialDelay(g);
      else this.rebalance(g, "join");
    } else {
      m = this.member(req.groupId, req.memberId);
      g = this.groups.get(req.groupId)!;
      if (req.sessionTimeoutMs !== undefined) m.sessionTimeoutMs = this.sessionTimeout(req.sessionTimeoutMs);
      if (req.clientId !== undefined) m.clientId = req.clientId;
      if (req.ownedPartitions !== undefined) {
        const owned = new Set(req.ownedPartitions.map(tpKey));
        m.held = m.held.filter((tp) => owned.has(tpKey(tp)));
      } else {
        m.held = [...m.lastAssignment];
      }
      if (topics !== undefined && !sameTopics(topics, m.topics)) {
        m.topics = topics;
        this.rebalance(g, "subscription");
      }
    }
    m.lastHeartbeatMs = this.clock.now();
    this.restartSession(g, m);
    if (g.cancelDelay === null && this.countsKey(g) !== g.countsKey) this.rebalance(g, "topics changed");
    const plan = this.plan(g).get(m.memberId) ?? { assigned: [], pending: [], revoke: [] };
    const heldKeys = new Set(m.held.map(tpKey));
    for (const tp of plan.assigned) if (!heldKeys.has(tpKey(tp))) m.held.push(tp);
    m.held.sort(compareTopicPartitions);
    m.lastAssignment = plan.assigned;
    return {
      memberId: m.memberId,
      generationId: g.generation,
      assignment: plan.assigned,
      pendingPartitions: plan.pending,
      rebalanceInProgress: this.state(g) !== "stable",
      heartbeatIntervalMs: Math.max(1, Math.floor(m.sessionTimeoutMs / 3)),
      sessionTimeoutMs: m.sessionTimeoutMs,
    };
  }

  /**
   * Leave the group at once (its partitions move without waiting for the session timeout).
   * @example await groups.leave("g", memberId);
   */
  async leave(groupId: string, memberId: string): Promise<void> {
    this.checkOpen();
    checkGroupId(groupId);
    this.member(groupId, memberId);
    this.removeMember(this.groups.get(groupId)!, memberId, "left");
  }

  /**
   * Commit offsets durably, fenced by generation (see CommitOffsetsRequest).
   * @example await groups.commitOffsets({ groupId: "g", memberId, generationId, offsets: [{ topic: "t", partition: 0, offset: 10 }] });
   */
  async commitOffsets(req: CommitOffsetsRequest): Promise<void> {
    this.checkOpen();
    checkGroupId(req.groupId);
    if (!Array.isArray(req.offsets) || req.offsets.length > 100_000) throw new TributaryError("INVALID_REQUEST", "offsets must be a list of at most 100000 commits");
    for (const o of req.offsets) {
      if (typeof o.topic !== "string" || !Number.isSafeInteger(o.partition) || o.partition < 0) throw new TributaryError("INVALID_REQUEST", "each commit needs a topic and a partition index");
      if (!Number.isSafeInteger(o.offset) || o.offset < 0) throw new TributaryError("INVALID_REQUEST", `offset must be a non-negative integer, got ${String(o.offset)}`);
      if (o.metadata !== undefined && (typeof o.metadata !== "string" || o.metadata.length > MAX_METADATA_CHARS)) {
        throw new TributaryError("INVALID_REQUEST", `commit metadata must be a string of at most ${MAX_METADATA_CHARS} characters`);
      }
    }
    const g = this.groups.get(req.groupId);
    if (!g || g.members.size === 0) {
      if (req.memberId !== "" || req.generationId !== -1) {
        throw new TributaryError("UNKNOWN_MEMBER_ID", `group ${req.groupId} has no member ${req.memberId}; an empty group takes commits with memberId "" and generationId -1`);
      }
      for (const o of req.offsets) this.checkPartitionExists(o.topic, o.partition);
      if (!g && this.groups.size >= MAX_GROUPS) throw new TributaryError("OVERLOADED", `the broker holds ${MAX_GROUPS} groups, its limit`);
    } else {
      if (req.memberId === "") throw new TributaryError("UNKNOWN_MEMBER_ID", `group ${req.groupId} has active members: commit as one of them`);
      const m = this.member(req.groupId, req.memberId);
      if (req.generationId !== g.generation) {
        throw new TributaryError("ILLEGAL_GENERATION", `group ${g.groupId} is at generation ${g.generation}, the commit carries ${req.generationId}: heartbeat and commit again`);
      }
      const held = new Set(m.held.map(tpKey));
      const pending = new Set((this.plan(g).get(m.memberId)?.pending ?? []).map(tpKey));
      for (const o of req.offsets) {
        const k = tpKey(o);
        if (held.has(k)) continue;
        if (pending.has(k)) throw new TributaryError("REBALANCE_IN_PROGRESS", `${o.topic}/${o.partition} is promised to member ${m.memberId} but another member still holds it`);
        throw new TributaryError("ILLEGAL_GENERATION", `member ${m.memberId} does not hold ${o.topic}/${o.partition} in generation ${g.generation}`);
      }
    }
    await this.writeOffsets(req.groupId, req.offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset, metadata: o.metadata ?? "" })));
  }

  private async writeOffsets(groupId: string, offsets: { topic: string; partition: number; offset: number; metadata: string }[]): Promise<CommittedOffset[]> {
    if (offsets.length === 0) return [];
    const now = this.clock.now();
    const values = offsets.map((o) => ({ ...o, commitTimestampMs: now }));
    const base = await this.view.appendOffsets(values.map((v) => ({ key: encodeOffsetKey(groupId, v.topic, v.partition), value: encodeOffsetValue(v) })));
    const g = this.groups.get(groupId) ?? this.newGroup(groupId);
    values.forEach((v, i) => {
      const k = tpKey(v);
      const prev = g.offsets.get(k);
      // Commits land in log order; a commit resolving late never undoes a later one.
      if (!prev || prev.logOffset < base + i) g.offsets.set(k, { ...v, logOffset: base + i });
    });
    return values.map(committedView);
  }

  /**
   * Committed offsets of a group, all or for the given partitions (those without a commit are left out).
   * @example groups.fetchCommittedOffsets("g", [{ topic: "t", partition: 0 }]) // [{ topic, partition, offset, metadata, commitTimestampMs }]
   */
  fetchCommittedOffsets(groupId: string, partitions?: TopicPartition[]): CommittedOffset[] {
    checkGroupId(groupId);
    const g = this.groups.get(groupId);
    if (!g) return [];
    const list = partitions ? partitions.map((tp) => g.offsets.get(tpKey(tp))).filter((x) => x !== undefined) : [...g.offsets.values()];
    return list.map(committedView).sort(compareTopicPartitions);
  }

  /**
   * Where a member of the group starts reading a partition: the committed offset when it lies in
   * the log, else the log start ("earliest") or the high watermark ("latest").
   * @example const offset = groups.startOffset("g", "t", 0, "earliest");
   */
  startOffset(groupId: string, topic: string, partition: number, reset: AutoOffsetReset): number {
    const c = this.groups.get(groupId)?.offsets.get(tpKey({ topic, partition }));
    const { logStartOffset, highWatermark } = this.view.bounds(topic, partition);
    if (c && c.offset >= logStartOffset && c.offset <= highWatermark) return c.offset;
    return reset === "earliest" ? logStartOffset : highWatermark;
  }

  /**
   * Every group with members or committed offsets, sorted by id.
   * @example groups.listGroups() // [{ groupId: "g", state: "stable", members: 3, assignor: "range" }]
   */
  listGroups(): GroupListing[] {
    return [...this.groups.values()]
      .sort((a, b) => (a.groupId < b.groupId ? -1 : 1))
      .map((g) => ({ groupId: g.groupId, state: this.state(g), members: g.members.size, assignor: g.members.size > 0 ? g.assignor : null }));
  }

  /**
   * Members, their assignments, committed offsets and lag per partition. GROUP_NOT_FOUND if unknown.
   * @example groups.describeGroup("g").partitions[0].lag
   */
  describeGroup(groupId: string): GroupDescription {
    checkGroupId(groupId);
    const g = this.groups.get(groupId);
    if (!g) throw new TributaryError("GROUP_NOT_FOUND", `group ${groupId} does not exist (no members, no committed offsets)`);
    const plan = this.plan(g);
    const holder = new Map<string, string>();
    for (const m of g.members.values()) for (const tp of m.held) holder.set(tpKey(tp), m.memberId);
    const keys = new Map<string, TopicPartition>();
    for (const m of g.members.values()) {
      for (const topic of m.topics) {
        const n = this.view.partitionCount(topic) ?? 0;
        for (let p = 0; p < n; p++) keys.set(tpKey({ topic, partition: p }), { topic, partition: p });
      }
    }
    for (const o of g.offsets.values()) keys.set(tpKey(o), { topic: o.topic, partition: o.partition });
    const partitions: PartitionLag[] = [...keys.values()].sort(compareTopicPartitions).map((tp) => {
      const k = tpKey(tp);
      const c = g.offsets.get(k);
      const { logStartOffset, highWatermark } = this.view.bounds(tp.topic, tp.partition);
      return {
        ...tp,
        committedOffset: c?.offset ?? null,
        highWatermark,
        logStartOffset,
        lag: c ? Math.max(0, highWatermark - c.offset) : null,
        memberId: holder.get(k) ?? null,
      };
    });
    return {
      groupId,
      state: this.state(g),
      generationId: g.generation,
      assignor: g.members.size > 0 ? g.assignor : null,
      members: [...g.members.values()].map((m) => ({
        memberId: m.memberId,
        clientId: m.clientId,
        topics: [...m.topics],
        assignment: plan.get(m.memberId)?.assigned ?? [],
        pendingPartitions: plan.get(m.memberId)?.pending ?? [],
        sessionTimeoutMs: m.sessionTimeoutMs,
        lastHeartbeatMs: m.lastHeartbeatMs,
      })),
      partitions,
      totalLag: partitions.reduce((a, p) => a + (p.lag ?? 0), 0),
    };
  }

  /**
   * Move a group's committed offsets for a topic (all partitions, or the given ones); only while the
   * group has no members (GROUP_NOT_EMPTY otherwise), as Kafka requires. Returns the new offsets.
   * Offsets outside the log are clamped into [logStartOffset, highWatermark], as Kafka's tool does.
   * @example await groups.resetOffsets("g", "t", { to: "earliest" });
   */
  async resetOffsets(groupId: string, topic: string, target: OffsetResetTarget, partitions?: number[]): Promise<CommittedOffset[]> {
    this.checkOpen();
    checkGroupId(groupId);
    const g = this.groups.get(groupId);
    if (g && g.members.size > 0) throw new TributaryError("GROUP_NOT_EMPTY", `group ${groupId} has ${g.members.size} active members: stop them before resetting offsets`);
    const n = this.view.partitionCount(topic);
    if (n === undefined) throw new TributaryError("TOPIC_NOT_FOUND", `topic ${topic} does not exist`);
    const list = partitions ?? Array.from({ length: n }, (_, i) => i);
    for (const p of list) this.checkPartitionExists(topic, p);
    if (!g && this.groups.size >= MAX_GROUPS) throw new TributaryError("OVERLOADED", `the broker holds ${MAX_GROUPS} groups, its limit`);
    const offsets = [];
    for (const partition of list) {
      const { logStartOffset, highWatermark } = this.view.bounds(topic, partition);
      let offset: number;
      switch (target.to) {
        case "earliest":
          offset = logStartOffset;
          break;
        case "latest":
          offset = highWatermark;
          break;
        case "offset":
          if (!Number.isSafeInteger(target.offset) || target.offset < 0) throw new TributaryError("INVALID_REQUEST", `offset must be a non-negative integer, got ${String(target.offset)}`);
          offset = Math.min(Math.max(target.offset, logStartOffset), highWatermark);
          break;
        case "timestamp":
          offset = (await this.view.offsetForTimestamp(topic, partition, target.timestampMs)) ?? highWatermark;
          break;
        default:
          throw new TributaryError("INVALID_REQUEST", "reset target must be earliest, latest, offset or timestamp");
      }
      offsets.push({ topic, partition, offset, metadata: "" });
    }
    const again = this.groups.get(groupId);
    if (again && again.members.size > 0) throw new TributaryError("GROUP_NOT_EMPTY", `group ${groupId} gained members while resetting offsets`);
    const written = await this.writeOffsets(groupId, offsets);
    this.logger.info("group offsets reset", { group: groupId, topic, target: target.to });
    return written;
  }

  /**
   * Delete a group without members and its committed offsets (GROUP_NOT_EMPTY / GROUP_NOT_FOUND).
   * @example await groups.deleteGroup("g");
   */
  async deleteGroup(groupId: string): Promise<void> {
    this.checkOpen();
    checkGroupId(groupId);
    const g = this.groups.get(groupId);
    if (!g) throw new TributaryError("GROUP_NOT_FOUND", `group ${groupId} does not exist`);
    if (g.members.size > 0) throw new TributaryError("GROUP_NOT_EMPTY", `group ${groupId} has ${g.members.size} active members`);
    const tombstones = [...g.offsets.values()].map((o) => ({ key: encodeOffsetKey(groupId, o.topic, o.partition), value: null }));
    if (tombstones.length > 0) await this.view.appendOffsets(tombstones);
    const now = this.groups.get(groupId);
    if (now && now.members.size === 0) this.groups.delete(groupId);
    else now?.offsets.clear();
    this.logger.info("group deleted", { group: groupId });
  }

  // ---- membership -----------------------------------------------------------------------------

  private newGroup(groupId: string): Group {
    const g: Group = { groupId, assignor: null, generation: 0, members: new Map(), target: new Map(), countsKey: "", cancelDelay: null, offsets: new Map() };
    this.groups.set(groupId, g);
    return g;
  }

  private member(groupId: string, memberId: string): Member {
    const m = this.groups.get(groupId)?.members.get(memberId);
    if (!m) throw new TributaryError("UNKNOWN_MEMBER_ID", `member ${memberId} is not in group ${groupId} (it left, or its session expired): join again`);
    return m;
  }

  private restartSession(g: Group, m: Member): void {
    m.cancelSession();
    m.cancelSession = this.clock.setTimer(m.sessionTimeoutMs, () => {
      if (g.members.get(m.memberId) === m) this.removeMember(g, m.memberId, "session expired");
    });
  }

  private removeMember(g: Group, memberId: string, why: string): void {
    const m = g.members.get(memberId);
    if (!m) return;
    m.cancelSession();
    g.members.delete(memberId);
    this.logger.info("member removed from group", { group: g.groupId, member: memberId, why });
    if (g.members.size === 0) {
      g.cancelDelay?.();
      g.cancelDelay = null;
      g.target = new Map();
      g.generation++;
      if (g.offsets.size === 0) this.groups.delete(g.groupId);
      return;
    }
    if (g.cancelDelay === null) this.rebalance(g, why);
  }

  private startInitialDelay(g: Group): void {
    g.generation++;
    g.target = new Map();
    g.cancelDelay = this.clock.setTimer(this.settings.initialRebalanceDelayMs, () => {
      g.cancelDelay = null;
      if (g.members.size > 0 && this.groups.get(g.groupId) === g) this.rebalance(g, "initial delay over");
    });
  }

  /** A new generation with a new target; partitions move as their holders release them (plan). */
  private rebalance(g: Group, why: string): void {
    if (g.cancelDelay !== null) {
      g.generation++;
      return;
    }
    const counts: Record<string, number> = {};
    for (const m of g.members.values()) {
      for (const t of m.topics) {
        const n = this.view.partitionCount(t);
        if (n !== undefined) counts[t] = n;
      }
    }
    g.target = assign(
      g.assignor ?? DEFAULT_ASSIGNOR,
      [...g.members.values()].map((m) => ({ memberId: m.memberId, topics: m.topics, owned: m.held })),
      counts,
    );
    g.countsKey = this.countsKey(g);
    g.generation++;
    this.logger.info("group rebalanced", { group: g.groupId, generation: g.generation, members: g.members.size, why });
  }

  private countsKey(g: Group): string {
    const topics = new Set<string>();
    for (const m of g.members.values()) for (const t of m.topics) topics.add(t);
    return [...topics].sort().map((t) => `${t}:${this.view.partitionCount(t) ?? -1}`).join(",");
  }

  private plan(g: Group): Map<string, Reconciliation> {
    const held = new Map([...g.members.values()].map((m) => [m.memberId, m.held] as const));
    const target: Assignment = new Map([...g.members.keys()].map((id) => [id, g.target.get(id) ?? []]));
    return planReconciliation(target, held);
  }

  private state(g: Group): GroupState {
    if (g.members.size === 0) return "empty";
    if (g.cancelDelay !== null) return "assigning";
    for (const r of this.plan(g).values()) if (r.pending.length > 0 || r.revoke.length > 0) return "reconciling";
    return "stable";
  }

  /**
   * The session timeout a member asking for `ms` gets (the default when undefined), or
   * INVALID_SESSION_TIMEOUT outside the configured range. Gateways call it before they create
   * anything that lives as long as a session.
   *
   * @example
   *   coordinator.sessionTimeout(10_000) // 10000 with the default settings
   */
  sessionTimeout(ms: number | undefined): number {
    const { minSessionTimeoutMs: min, maxSessionTimeoutMs: max } = this.settings;
    if (ms === undefined) return Math.min(Math.max(DEFAULT_SESSION_TIMEOUT_MS, min), max);
    if (!Number.isSafeInteger(ms) || ms < min || ms > max) {
      throw new TributaryError("INVALID_SESSION_TIMEOUT", `session timeout must be from group.min.session.timeout.ms (${min}) to group.max.session.timeout.ms (${max}), got ${String(ms)}`);
    }
    return ms;
  }

  private checkPartitionExists(topic: string, partition: number): void {
    const n = this.view.partitionCount(topic);
    if (n === undefined) throw new TributaryError("TOPIC_NOT_FOUND", `topic ${topic} does not exist`);
    if (!Number.isSafeInteger(partition) || partition < 0 || partition >= n) {
      throw new TributaryError("PARTITION_NOT_FOUND", `topic ${topic} has partitions 0 to ${n - 1}, not ${String(partition)}`);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new TributaryError("NOT_READY", "the broker is closing");
    this.view.checkCoordinator?.();
  }
}

function committedView(o: StoredOffset & TopicPartition): CommittedOffset {
  return { topic: o.topic, partition: o.partition, offset: o.offset, metadata: o.metadata, commitTimestampMs: o.commitTimestampMs };
}

function checkGroupId(groupId: unknown): asserts groupId is string {
  if (typeof groupId !== "string" || !GROUP_ID.test(groupId)) {
    throw new TributaryError("INVALID_GROUP_ID", `group ids are 1 to 249 characters of letters, digits, '.', '_' and '-': ${JSON.stringify(groupId)}`);
  }
}

function checkTopics(topics: unknown): string[] {
  if (!Array.isArray(topics) || topics.length > MAX_SUBSCRIBED_TOPICS || !topics.every((t) => typeof t === "string" && t.length > 0 && t.length <= 249)) {
    throw new TributaryError("INVALID_REQUEST", `topics must be a list of at most ${MAX_SUBSCRIBED_TOPICS} topic names`);
  }
  return [...new Set(topics as string[])].sort();
}

function sameTopics(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}
