/**
 * `MirrorLink`: the driver of one mirror link (see index.ts, "The data path"). It owns a sink
 * connection, one `UplinkScheduler` and, per source partition, a read cursor and a `PartitionLag`.
 * Time and randomness come in (Clock, random): no raw timers, so a ManualClock runs it in tests.
 *
 * One session is one sink connection: open (the hello routes the edge's topics, topics.ts), plan
 * every partition (resume.ts: the central's position is the truth), then pump the scheduler:
 * each grant reads whole batches from the cursor (never past the high watermark; batches without
 * records are skipped), stamps a copy (stamp.ts), sends it, settles the grant, and on the ack
 * moves the cursor and tells the checkpoints. New data wakes the pump through the partitions'
 * high-watermark listeners; a `wait` decision sets one timer (the link is throttled). Any sink
 * failure ends the session: the sink is closed, in-flight grants are cancelled as they return,
 * and the link reconnects after an exponential backoff (500 ms doubling to 30 s, 50-100 % of it
 * by the injected random source), then plans again. A topic created or deleted re-routes: the
 * session is replaced at once with a new hello. A partition whose bounds the source does not know
 * (yet: one read from a replica on another peer) is `unavailable` until its high-watermark
 * listener fires with them known; it is planned then, from the welcome's position.
 *
 * Bounds: at most `maxInflightSends` sends in flight (the scheduler), one per partition, each
 * read bounded by its grant's maxBytes and maxRecords (one batch more only when a single batch is
 * larger); at most MAX_READS_PER_GRANT reads per grant (partitions dense with control batches).
 *
 * Bytes for the cap are the bytes on the wire: each ack's `wireBytes` (the sink's compressed
 * payload), or the stamped batch bytes when the sink does not say. A send that fails is charged
 * its batch bytes times the last measured wire/batch ratio (it may have gone out whole).
 * Bytes between offsets (lag, pending) are estimated from the partition's size per offset.
 *
 * @example
 *   const link = new MirrorLink({ name: "to-dc", cluster: "site7", mapping, uplink: { bytesPerSec: 125_000 },
 *     source, connect: () => central.connect(), checkpoints, clock, random: Math.random, logger });
 *   link.start();
 */
import { assert, isTributaryError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { Clock } from "../runtime/clock.ts";
import { readBatchHeader, splitBatches } from "../storage/record-batch.ts";
import { PartitionLag, summarizeLag, type LagOptions, type LagSnapshot, type LinkLagSummary, type LinkState } from "./lag.ts";
import { planResume, type ResumeNote } from "./resume.ts";
import { stampBatch } from "./stamp.ts";
import { routeTopics, type TopicMapping } from "./topics.ts";
import type { DroppedRange, Gap, LinkHello, MirrorAck, MirrorSink, SourcePartition, TopicBinding, TopicWelcome } from "./types.ts";
import { UplinkScheduler, type Lane, type UplinkConfig, type UplinkGrant, type UplinkStats } from "./uplink.ts";
import type { MirrorSourceLog, SourceTopic } from "./source.ts";

/** Makes one connection to the central (a fresh sink per session). */
export type MirrorSinkFactory = () => MirrorSink;

/** What a link asks of the edge's checkpoint store (checkpoints.ts). */
export interface LinkCheckpoints {
  /** The stored position of this link for a partition, or null. */
  checkpoint(link: string, topic: string, partition: number): number | null;
  /** The drop ledger of a partition. */
  dropped(topic: string, partition: number): readonly DroppedRange[];
  /** The central holds everything below `position` (an ack, or a plan that resumes at the central's position). */
  acknowledged(link: string, topic: string, partition: number, position: number, ids: { sourceTopicId: string; targetTopicId: string }): void;
}

export interface MirrorLinkOptions {
  readonly name: string;
  readonly cluster: string;
  readonly mapping: TopicMapping;
  readonly uplink: UplinkConfig;
  readonly source: MirrorSourceLog;
  readonly connect: MirrorSinkFactory;
  readonly checkpoints: LinkCheckpoints;
  readonly clock: Clock;
  readonly random: () => number;
  readonly logger: Logger;
  readonly lag?: LagOptions;
  /** Told of every acknowledged send's bytes on the wire (the edge's bytes-sent counter). */
  readonly onSent?: (lane: Lane, bytes: number) => void;
}

export const BACKOFF_MIN_MS = 500;
export const BACKOFF_MAX_MS = 30_000;
const MAX_READS_PER_GRANT = 64;
/** Bytes per offset assumed for a partition that holds nothing yet. */
const DEFAULT_BYTES_PER_OFFSET = 100;

/** The wait before reconnect attempt `attempt` (0 first): 500 ms doubling to 30 s, times 0.5-1 of `random()`. */
export function backoffDelayMs(attempt: number, random: () => number): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 16));
  return Math.round(base * (0.5 + 0.5 * random()));
}

export type LinkRunState = "connecting" | LinkState | "stopped";
export type PartitionRunState = "sending" | "waiting" | "diverged" | "refused" | "unavailable";

export interface PartitionStatus {
  readonly topic: string;
  readonly partition: number;
  readonly target: string;
  readonly state: PartitionRunState;
  readonly message: string | null;
  readonly lane: Lane | null;
  readonly notes: readonly ResumeNote[];
  /** Gaps declared to the central by the last resume plan. */
  readonly gaps: readonly Gap[];
  readonly lag: LagSnapshot | null;
}

export interface LinkStatus {
  readonly name: string;
  readonly state: LinkRunState;
  readonly lastError: string | null;
  readonly reconnects: number;
  readonly uplink: UplinkStats;
  readonly summary: LinkLagSummary;
  readonly partitions: readonly PartitionStatus[];
}

interface Part {
  readonly key: string;
  readonly topic: SourceTopic;
  readonly partition: number;
  readonly target: string;
  targetTopicId: string;
  state: PartitionRunState;
  message: string | null;
  notes: readonly ResumeNote[];
  /** fromOffset of the next send: the central's position as last learnt (or the plan's resume point). */
  from: number;
  /** Gaps the next send declares: [central, from). */
  gaps: readonly Gap[];
  /** Next offset to read when nothing is in flight (at or after `from`: only empty batches between). */
  cursor: number;
  /** While a send is in flight: where its read ended. */
  readEnd: number;
  hw: number;
  /** A wait plan: the central's position the high watermark must reach. */
  waitFor: number | null;
  /** The central's position from the session's welcome: a partition unavailable then is planned from it once its bounds are known. */
  central: number | null;
  lag: PartitionLag | null;
  bytesPerOffset: number;
  lastSizeBytes: number;
}

interface Session {
  readonly id: number;
  readonly sink: MirrorSink;
  readonly hello: LinkHello;
  readonly parts: Map<string, Part>;
}

interface ReadOut {
  readonly batches: Uint8Array[];
  readonly bytes: number;
  readonly end: number;
  readonly dataEnd: number;
  /** First timestamp of the batch after the read, when the read stopped before it. */
  readonly nextTimestampMs: number | null;
}

export class MirrorLink {
  readonly name: string;
  private readonly up: UplinkScheduler;
  private state: LinkRunState = "stopped";
  private sessionSeq = 0;
  private session: Session | null = null;
  private attempts = 0;
  /** Wire bytes per batch byte of the last acknowledged send (compression), to charge failed sends. */
  private wireRatio = 1;
  private reconnects = 0;
  private lastError: string | null = null;
  private cancelTimer: (() => void) | null = null;
  private cancelWait: (() => void) | null = null;
  /** Parts of the current (or last) session, kept so status and lag survive a reconnect. */
  private parts = new Map<string, Part>();
  private readonly unsubscribes = new Map<string, () => void>();
  private unsubscribeTopics: (() => void) | null = null;

  constructor(private readonly o: MirrorLinkOptions) {
    this.name = o.name;
    this.up = new UplinkScheduler(o.uplink, o.clock.now());
  }

  start(): void {
    if (this.state !== "stopped" && this.state !== "paused") return;
    this.unsubscribeTopics ??= this.o.source.onTopicsChanged(() => this.topicsChanged());
    void this.connect();
  }

  /** Stop sending (the connection closes); positions stay. `resume` reconnects. */
  pause(): void {
    if (this.state === "stopped") return;
    this.endSession();
    this.setState("paused");
  }

  resume(): void {
    if (this.state === "paused") this.start();
  }

  async stop(): Promise<void> {
    this.endSession();
    this.setState("stopped");
    this.unsubscribeTopics?.();
    this.unsubscribeTopics = null;
    for (const u of this.unsubscribes.values()) u();
    this.unsubscribes.clear();
  }

  get runState(): LinkRunState {
    return this.state;
  }

  /** The topics this link carries now (for retention and group offsets). */
  carries(topic: string): boolean {
    return [...this.parts.values()].some((p) => p.topic.name === topic) || routeTopics(this.o.mapping, [topic]).routes.length > 0;
  }

  /** The connected session's sink, for group-offset commits; null while not connected. */
  get sink(): MirrorSink | null {
    return this.state === "connected" || this.state === "throttled" ? (this.session?.sink ?? null) : null;
  }

  status(): LinkStatus {
    const now = this.o.clock.now();
    const partitions = [...this.parts.values()]
      .sort((a, b) => a.topic.name.localeCompare(b.topic.name) || a.partition - b.partition)
      .map((p): PartitionStatus => ({
        topic: p.topic.name,
        partition: p.partition,
        target: p.target,
        state: p.state,
        message: p.message,
        lane: this.up.laneOf(p.topic.name, p.partition),
        notes: p.notes,
        gaps: p.gaps,
        lag: p.lag?.snapshot(now) ?? null,
      }));
    return {
      name: this.name,
      state: this.state,
      lastError: this.lastError,
      reconnects: this.reconnects,
      uplink: this.up.stats(now),
      summary: summarizeLag(partitions.flatMap((p) => (p.lag ? [p.lag] : []))),
      partitions,
    };
  }

  // ---- sessions -------------------------------------------------------------------------------

  private async connect(): Promise<void> {
    this.cancelTimer?.();
    this.cancelTimer = null;
    const id = ++this.sessionSeq;
    this.setState("connecting");
    let sink: MirrorSink;
    try {
      sink = this.o.connect();
    } catch (e) {
      this.fail(id, e);
      return;
    }
    try {
      const hello = this.hello();
      const welcome = await sink.open(hello);
      if (id !== this.sessionSeq) {
        void sink.close().catch(() => {});
        return;
      }
      const session: Session = { id, sink, hello, parts: new Map() };
      this.session = session;
      this.plan(session, welcome);
      this.setState("connected");
      this.pump();
      // A topic created or deleted while the open was under way: open again with it.
      this.topicsChanged();
    } catch (e) {
      void sink.close().catch(() => {});
      this.fail(id, e);
    }
  }

  private hello(): LinkHello {
    const topics = this.o.source.topics();
    const byName = new Map(topics.map((t) => [t.name, t]));
    const { routes, refused } = routeTopics(this.o.mapping, topics.map((t) => t.name));
    for (const r of refused) this.o.logger.warn("mirror: topic not mirrored, its target name is illegal", { link: this.name, topic: r.topic, error: r.message });
    const bindings: TopicBinding[] = routes.map((r) => {
      const t = byName.get(r.source)!;
      return { sourceTopic: t.name, sourceTopicId: t.id, target: r.target, partitions: t.partitions, config: t.config };
    });
    return { link: this.name, cluster: this.o.cluster, topics: bindings };
  }

  /** The session failed (or its open did): close it, back off, reconnect. Only the current session's failure counts. */
  private fail(id: number, e: unknown): void {
    if (id !== this.sessionSeq || this.state === "paused" || this.state === "stopped") return;
    this.lastError = e instanceof Error ? `${isTributaryError(e) ? `${e.code}: ` : ""}${e.message}` : String(e);
    this.o.logger.warn("mirror: link failed, backing off", { link: this.name, error: this.lastError, attempt: this.attempts });
    this.endSession();
    const delay = backoffDelayMs(this.attempts++, this.o.random);
    this.setState("backing-off");
    this.cancelTimer = this.o.clock.setTimer(delay, () => {
      this.cancelTimer = null;
      this.reconnects++;
      void this.connect();
    });
  }

  private endSession(): void {
    this.sessionSeq++;
    this.cancelTimer?.();
    this.cancelTimer = null;
    this.cancelWait?.();
    this.cancelWait = null;
    const s = this.session;
    this.session = null;
    if (s) void s.sink.close().catch(() => {});
  }

  private topicsChanged(): void {
    const s = this.session;
    if (!s) return;
    const next = this.hello();
    if (JSON.stringify(next.topics) === JSON.stringify(s.hello.topics)) return;
    this.o.logger.info("mirror: topics changed, re-opening the link", { link: this.name });
    this.endSession();
    void this.connect();
  }

  private setState(state: LinkRunState): void {
    this.state = state;
    const lagState: LinkState = state === "connecting" || state === "stopped" ? "backing-off" : state;
    const now = this.o.clock.now();
    for (const p of this.parts.values()) p.lag?.setState(lagState, now);
  }

  // ---- planning -------------------------------------------------------------------------------

  private plan(s: Session, welcome: readonly TopicWelcome[]): void {
    const byTopic = new Map(welcome.map((w) => [w.sourceTopic, w]));
    const topics = new Map(this.o.source.topics().map((t) => [t.name, t]));
    const old = this.parts;
    this.parts = new Map();
    for (const b of s.hello.topics) {
      const topic = topics.get(b.sourceTopic);
      const w = byTopic.get(b.sourceTopic);
      if (!topic) continue;
      for (let p = 0; p < b.partitions; p++) {
        const part = this.partFor(old.get(`${b.sourceTopic}/${p}`), topic, p, b.target);
        this.parts.set(part.key, part);
        s.parts.set(part.key, part);
        this.planPartition(part, w, p);
      }
    }
    for (const [key, p] of old) {
      if (this.parts.has(key)) continue;
      this.unsubscribes.get(key)?.();
      this.unsubscribes.delete(key);
      this.up.remove(p.topic.name, p.partition);
    }
  }

  private partFor(prev: Part | undefined, topic: SourceTopic, partition: number, target: string): Part {
    const key = `${topic.name}/${partition}`;
    const keep = prev && prev.topic.id === topic.id && prev.target === target ? prev : undefined;
    const part: Part = keep ?? {
      key, topic, partition, target, targetTopicId: "", state: "unavailable", message: null, notes: [], from: 0, gaps: [], cursor: 0, readEnd: 0, hw: 0, waitFor: null, central: null, lag: null, bytesPerOffset: DEFAULT_BYTES_PER_OFFSET, lastSizeBytes: 0,
    };
    if (!this.unsubscribes.has(key)) this.unsubscribes.set(key, this.o.source.onHighWatermark(topic.name, partition, (hw) => this.grew(key, hw)));
    return part;
  }

  private planPartition(part: Part, w: TopicWelcome | undefined, p: number): void {
    part.waitFor = null;
    part.gaps = [];
    if (!w || !w.ok) {
      this.setPart(part, "refused", w && !w.ok ? `${w.code}: ${w.message}` : "the central did not answer for this topic");
      return;
    }
    part.targetTopicId = w.targetTopicId;
    part.central = w.positions[p] ?? null;
    this.resumeAt(part, part.central);
  }

  /** Plan one partition from the central's position `central` (resume.ts) and schedule it. */
  private resumeAt(part: Part, central: number | null): void {
    const b = this.o.source.bounds(part.topic.name, part.partition);
    if (!b) {
      this.setPart(part, "unavailable", "the bounds of this partition are not known yet (no replica here; asking one elsewhere)");
      return;
    }
    this.noteSize(part, b.sizeBytes, b.logStartOffset, b.logEndOffset);
    part.hw = b.highWatermark;
    const { name: topic } = part.topic;
    const plan = planResume({
      checkpoint: this.o.checkpoints.checkpoint(this.name, topic, part.partition),
      central,
      logStartOffset: b.logStartOffset,
      highWatermark: b.highWatermark,
      logEndOffset: b.logEndOffset,
      dropped: this.o.checkpoints.dropped(topic, part.partition),
    });
    if (plan.kind === "diverged") {
      this.o.logger.error("mirror: partition diverged from the central, not sent", { link: this.name, topic, partition: part.partition, error: plan.message });
      this.setPart(part, "diverged", plan.message);
      return;
    }
    if (plan.kind === "wait") {
      part.waitFor = plan.central;
      this.setPart(part, "waiting", `the high watermark ${plan.highWatermark} trails the central's position ${plan.central}`);
      return;
    }
    part.from = plan.from;
    part.cursor = plan.from;
    part.readEnd = plan.from;
    part.gaps = plan.gaps;
    part.notes = plan.notes;
    if (plan.gaps.length > 0) this.o.logger.warn("mirror: offsets lost before the central got them, reported as a gap", { link: this.name, topic, partition: part.partition, gaps: plan.gaps });
    else this.o.checkpoints.acknowledged(this.name, topic, part.partition, plan.from, { sourceTopicId: part.topic.id, targetTopicId: part.targetTopicId });
    this.startLag(part, plan.from);
    this.setPart(part, "sending", null);
    this.up.pending(topic, part.partition, this.unsentBytes(part), this.o.clock.now());
  }

  private startLag(part: Part, position: number): void {
    const now = this.o.clock.now();
    const prev = part.lag?.snapshot(now);
    if (part.lag && prev && prev.position <= position) {
      part.lag.acknowledged(position, 0, null, now);
      part.lag.sourceGrew(part.hw, 0, now);
      return;
    }
    const lagBytes = Math.round((part.hw - position) * part.bytesPerOffset);
    part.lag = new PartitionLag({ position, highWatermark: part.hw, lagBytes, oldestUnmirroredMs: position < part.hw ? now : null, state: "connected" }, now, this.o.lag);
  }

  private setPart(part: Part, state: PartitionRunState, message: string | null): void {
    part.state = state;
    part.message = message;
    if (state !== "sending") this.up.remove(part.topic.name, part.partition);
  }

  private noteSize(part: Part, sizeBytes: number, start: number, end: number): void {
    part.lastSizeBytes = sizeBytes;
    if (end > start && sizeBytes > 0) part.bytesPerOffset = sizeBytes / (end - start);
  }

  private unsentBytes(part: Part): number {
    return Math.max(0, Math.round((part.hw - part.readEnd) * part.bytesPerOffset));
  }

  /** A partition's high watermark moved: lag, scheduler, a waiting plan. */
  private grew(key: string, hw: number): void {
    const part = this.parts.get(key);
    if (part?.state === "unavailable") {
      // The host learnt the bounds (a partition read from a replica elsewhere): plan it now. No
      // send of this session touched it, so the welcome's position is still the central's.
      if (this.session?.parts.get(key) === part && this.o.source.bounds(part.topic.name, part.partition)) {
        this.resumeAt(part, part.central);
        this.pump();
      }
      return;
    }
    if (!part || hw <= part.hw) return;
    const now = this.o.clock.now();
    const b = this.o.source.bounds(part.topic.name, part.partition);
    const appended = Math.round((hw - part.hw) * part.bytesPerOffset);
    if (b) this.noteSize(part, b.sizeBytes, b.logStartOffset, b.logEndOffset);
    part.hw = hw;
    part.lag?.sourceGrew(hw, appended, now);
    if (!this.session) return;
    if (part.state === "waiting" && part.waitFor !== null && hw >= part.waitFor) this.resumeAt(part, part.waitFor);
    else if (part.state === "sending") this.up.pending(part.topic.name, part.partition, this.unsentBytes(part), now);
    this.pump();
  }

  // ---- sending --------------------------------------------------------------------------------

  private pump(): void {
    const s = this.session;
    if (!s) return;
    this.cancelWait?.();
    this.cancelWait = null;
    for (;;) {
      const d = this.up.next(this.o.clock.now());
      if (d.kind === "idle") {
        if (this.state === "throttled") this.setState("connected");
        return;
      }
      if (d.kind === "wait") {
        if (this.state === "connected") this.setState("throttled");
        this.cancelWait = this.o.clock.setTimer(d.waitMs, () => {
          this.cancelWait = null;
          this.pump();
        });
        return;
      }
      if (this.state === "throttled") this.setState("connected");
      void this.sendGrant(s, d);
    }
  }

  private async sendGrant(s: Session, grant: UplinkGrant): Promise<void> {
    const part = s.parts.get(`${grant.topic}/${grant.partition}`);
    let wireBytes = 0;
    let settled = false;
    const settle = (sent: boolean) => {
      if (settled) return;
      settled = true;
      if (sent) this.up.sent(grant, wireBytes, this.o.clock.now());
      else this.up.cancel(grant, this.o.clock.now(), wireBytes);
    };
    try {
      if (!part || part.state !== "sending" || s.id !== this.sessionSeq) return settle(false);
      const read = await this.readFor(part, grant);
      if (s.id !== this.sessionSeq) return settle(false);
      part.readEnd = read.end;
      this.up.pending(part.topic.name, part.partition, this.unsentBytes(part), this.o.clock.now());
      if (read.batches.length === 0) {
        settle(false);
        this.moved(part, part.from, read.end, 0, read.nextTimestampMs);
        return;
      }
      const payload = concat(read.batches, read.bytes);
      wireBytes = Math.ceil(payload.length * this.wireRatio);
      const source: SourcePartition = { cluster: this.o.cluster, topic: part.topic.name, partition: part.partition };
      const acks = await s.sink.send([{ source, fromOffset: part.from, batches: payload, gaps: part.gaps }]);
      const reported = acks[0]?.wireBytes;
      if (reported !== undefined && Number.isFinite(reported) && reported >= 0) {
        wireBytes = reported;
        this.wireRatio = reported / payload.length;
      } else wireBytes = payload.length;
      if (s.id !== this.sessionSeq) return settle(false);
      settle(true);
      this.o.onSent?.(grant.lane, wireBytes);
      this.acked(s, part, acks[0], read);
    } catch (e) {
      settle(false);
      if (part && s.id === this.sessionSeq) {
        part.readEnd = part.cursor;
        this.up.pending(part.topic.name, part.partition, this.unsentBytes(part), this.o.clock.now());
      }
      this.fail(s.id, e);
    } finally {
      // Even for an ended session: its settled grant may free a partition the current one waits on.
      this.pump();
    }
  }

  private acked(s: Session, part: Part, ack: MirrorAck | undefined, read: ReadOut): void {
    assert(ack !== undefined, "a sink answers one ack per send");
    const p = ack.position;
    if (p < read.dataEnd || p > part.hw) {
      // The central is not where this send leaves it: plan again from what it says.
      this.fail(s.id, new Error(`the central's position ${p} after a send ending at ${read.dataEnd} (high watermark ${part.hw}): re-planning`));
      return;
    }
    this.attempts = 0;
    part.gaps = [];
    this.moved(part, p, Math.max(p, read.end), read.bytes, read.nextTimestampMs);
    this.o.checkpoints.acknowledged(this.name, part.topic.name, part.partition, p, { sourceTopicId: part.topic.id, targetTopicId: part.targetTopicId });
  }

  /** The central holds everything below `position`; the cursor is at `cursor` (past empty batches). */
  private moved(part: Part, position: number, cursor: number, bytes: number, nextTs: number | null): void {
    part.from = position;
    part.cursor = cursor;
    part.readEnd = cursor;
    // Past the last data batch only empty ones: a caught-up partition shows no lag.
    const shown = cursor >= part.hw ? cursor : position;
    part.lag?.acknowledged(shown, bytes, nextTs, this.o.clock.now());
    this.up.pending(part.topic.name, part.partition, this.unsentBytes(part), this.o.clock.now());
  }

  /** Whole batches from the cursor within the grant, stamped copies of the ones holding records. */
  private async readFor(part: Part, grant: UplinkGrant): Promise<ReadOut> {
    const batches: Uint8Array[] = [];
    let bytes = 0;
    let records = 0;
    let offset = part.cursor;
    let dataEnd = part.from;
    let nextTs: number | null = null;
    for (let reads = 0; reads < MAX_READS_PER_GRANT && offset < part.hw && nextTs === null; reads++) {
      const r = await this.o.source.read(part.topic.name, part.partition, offset, Math.max(1, grant.maxBytes - bytes));
      if (r.batches.length === 0) break;
      for (const b of splitBatches(r.batches)) {
        const h = readBatchHeader(b);
        const end = h.baseOffset + h.lastOffsetDelta + 1;
        if (end <= offset) continue;
        if (end > part.hw) break;
        const empty = h.isControl || h.recordCount === 0;
        if (!empty && batches.length > 0 && (bytes + b.length > grant.maxBytes || records + h.recordCount > grant.maxRecords)) {
          nextTs = h.firstTimestamp;
          break;
        }
        offset = end;
        if (empty) continue;
        const copy = b.slice();
        stampBatch(copy);
        batches.push(copy);
        bytes += copy.length;
        records += h.recordCount;
        dataEnd = end;
      }
      if (bytes >= grant.maxBytes || records >= grant.maxRecords) break;
    }
    return { batches, bytes, end: offset, dataEnd, nextTimestampMs: nextTs };
  }
}

function concat(parts: readonly Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
