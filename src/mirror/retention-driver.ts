/**
 * The driver of mirror-aware retention at the edge (the pure decision is retention-policy.ts):
 * one pass gathers every local partition's segments and the mirror's positions, plans, writes
 * what is about to go unmirrored to the drop ledger, and only then deletes the planned prefixes.
 * It also holds the refusal: while the last plan said `refuseWrites`, produce is refused.
 *
 * A pass, in order:
 *   1. snapshot: `segmentInfos()` of each partition, `mirroredBelow` from the source, the disk's
 *      used bytes (the sum of every local partition log's size, internal topics included: the
 *      segments are what grows; metadata files, raft.json and indexes are small and not counted);
 *   2. `planRetention`;
 *   3. per partition that deletes: `source.recordDropped(ranges)` first, resolved means durable
 *      (replicated), then `log.retainFrom(newLogStartOffset)`, which goes through the log's
 *      retention hook, so a replicated log moves its Raft anchor before any file goes, as time
 *      retention does. A ledger write that fails leaves that partition's files in place. A crash
 *      between ledger and delete leaves the ledger ahead of the files: it may name offsets still
 *      stored (a gap reported that the mirror would not have needed), never the other way round;
 *   4. the dropped ranges actually deleted are counted and logged (warn, one line per range).
 *
 * Only partitions of topics whose cleanup.policy includes `delete` and that are not internal
 * (`__consumer_offsets`, `__mirror_checkpoints`) are candidates; the others count towards the disk.
 * Passes run one at a time; a request while one runs (a position moved, the disk grew) runs one
 * more pass after it, so requests never pile up.
 *
 * When a pass runs: every maintenance interval; when the mirror says its positions moved while
 * writes are refused (`Broker.mirrorPositionsMoved`); and when bytes produced since the last pass
 * could have reached the budget (`noteProduced`), so refusal does not wait for the interval.
 *
 * In a cluster each peer plans over its own disk and its own replicas, leaders and followers
 * alike (retention on a follower moves only its own anchor; Raft sends a snapshot to a peer that
 * needs what the leader deleted). Produce is refused by the peer it enters through and by the
 * partition's leader, each by its own plan; a follower's full disk does not stop its leader.
 *
 * @example
 *   const r = new MirrorRetentionDriver(deps, { diskBudgetBytes: 8 << 30, diskFullPolicy: "refuse" });
 *   await r.request();          // one pass
 *   r.checkWrites("telemetry"); // throws OVERLOADED while the budget refuses writes
 */
import { TributaryError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { Clock } from "../runtime/clock.ts";
import type { PartitionLog } from "../storage/log.ts";
import { clipRanges } from "./ranges.ts";
import { planRetention, type DiskFullPolicy, type DroppedReport, type PartitionDeletion, type PartitionRetention, type RetentionDecision } from "./retention-policy.ts";
import type { DroppedRange, MirrorRetentionSource } from "./types.ts";

/** One local partition as the driver sees it. */
export interface RetainedPartition {
  readonly topic: string;
  readonly partition: number;
  readonly log: PartitionLog;
  /** Internal topics and compact-only topics never lose segments here; their bytes still count. */
  readonly candidate: boolean;
  readonly retentionMs: number;
  readonly retentionBytes: number;
  readonly mirrorAware: boolean;
}

export interface MirrorRetentionDeps {
  readonly source: MirrorRetentionSource;
  /** Every local partition, in a stable order (topic, then index): ties in the plan follow it. */
  readonly partitions: () => readonly RetainedPartition[];
  readonly clock: Clock;
  readonly logger: Logger;
  /** Counts each dropped offset: `tributary_mirror_dropped_offsets_total{topic,reason}`. */
  readonly countDropped: (topic: string, reason: DroppedRange["reason"], offsets: number) => void;
  /** Settles when a driver this one replaces has stopped; passes wait for it. */
  readonly previous?: Promise<void>;
}

export interface MirrorRetentionLimits {
  /** -1: no budget. */
  readonly diskBudgetBytes: number;
  readonly diskFullPolicy: DiskFullPolicy;
}

export class MirrorRetentionDriver {
  private refuse = false;
  /** Used bytes as the last pass left them, and bytes produced since (to re-plan before the next interval). */
  private usedAfterBytes = 0;
  private producedSinceBytes = 0;
  private running: Promise<void> | null = null;
  private again: Promise<void> | null = null;
  private stopped = false;
  private signalStopped!: () => void;
  /** Resolves at stop(): every request resolves then, even one whose pass still waits on the ledger. */
  private readonly stoppedSignal = new Promise<void>((resolve) => {
    this.signalStopped = resolve;
  });

  constructor(
    private readonly deps: MirrorRetentionDeps,
    readonly limits: MirrorRetentionLimits,
  ) {}

  /** True while the last plan refused writes. */
  get refusing(): boolean {
    return this.refuse;
  }

  /** Produce to a user topic throws OVERLOADED (retriable) while the budget refuses writes. */
  checkWrites(topic: string): void {
    if (!this.refuse) return;
    const { diskBudgetBytes, diskFullPolicy } = this.limits;
    const why =
      diskFullPolicy === "refuse"
        ? "mirror.disk.full.policy is refuse, so writes wait until the mirror catches up"
        : "only active or unsettled segments are left to delete";
    throw new TributaryError(
      "OVERLOADED",
      `the disk budget is reached: partition logs hold ${this.usedAfterBytes} bytes of mirror.disk.budget.bytes ${diskBudgetBytes}, and ${why}; writes to ${topic} are refused, retry later`,
    );
  }

  /**
   * Bytes appended through produce: once they could have reached the budget since the last pass,
   * a pass is requested, so refusal does not wait for the maintenance interval.
   */
  noteProduced(bytes: number): void {
    const budget = this.limits.diskBudgetBytes;
    if (budget < 0 || this.stopped) return;
    this.producedSinceBytes += bytes;
    if (this.usedAfterBytes + this.producedSinceBytes >= budget) void this.request().catch(() => {});
  }

  /**
   * Run a pass now, or once more after the one running; resolves when a pass that started after
   * this call ends, or at stop() (a ledger write stuck on an unreachable checkpoint leader must
   * not hold up the broker's maintenance or shutdown).
   */
  request(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return Promise.race([this.schedule(), this.stoppedSignal]);
  }

  private schedule(): Promise<void> {
    if (!this.running) {
      this.running = this.pass().finally(() => {
        this.running = null;
      });
      return this.running;
    }
    this.again ??= this.running.catch(() => {}).then(() => {
      this.again = null;
      return this.schedule();
    });
    return this.again;
  }

  /**
   * No more passes, and writes are no longer refused; requests resolve at once. Resolves when the
   * pass running (if any) has ended: it stops at its next step, and deletes nothing after its
   * ledger write if stopped meanwhile. A replacing driver waits for this before its first pass.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.refuse = false;
    this.signalStopped();
    await this.again?.catch(() => {});
    await this.running?.catch(() => {});
  }

  private async pass(): Promise<void> {
    await this.deps.previous;
    if (this.stopped) return;
    const parts = this.deps.partitions();
    const { decision, byKey } = this.plan(parts);
    this.producedSinceBytes = 0;
    let used = decision.usedAfterBytes;
    for (const d of decision.deletions) {
      if (this.stopped) return;
      const p = byKey.get(key(d.topic, d.partition))!;
      const dropped = decision.dropped.filter((x) => x.topic === d.topic && x.partition === d.partition);
      const freed = await this.deleteOne(p, d, dropped);
      used += d.freedBytes - freed;
    }
    this.usedAfterBytes = used;
    // A deletion that did not happen leaves the disk fuller than planned: refuse by the plan, and the next pass sees the truth.
    this.refuse = decision.refuseWrites && !this.stopped;
  }

  private plan(parts: readonly RetainedPartition[]): { decision: RetentionDecision; byKey: Map<string, RetainedPartition> } {
    let diskUsedBytes = 0;
    const byKey = new Map<string, RetainedPartition>();
    const partitions: PartitionRetention[] = [];
    for (const p of parts) {
      diskUsedBytes += p.log.sizeBytes;
      if (!p.candidate) continue;
      byKey.set(key(p.topic, p.partition), p);
      partitions.push({
        topic: p.topic,
        partition: p.partition,
        segments: p.log.segmentInfos(),
        mirroredBelow: this.deps.source.mirroredBelow(p.topic, p.partition),
        retentionMs: p.retentionMs,
        retentionBytes: p.retentionBytes,
        mirrorAware: p.mirrorAware,
      });
    }
    const { diskBudgetBytes, diskFullPolicy: policy } = this.limits;
    const decision = planRetention({ partitions, diskUsedBytes, diskBudgetBytes, policy, nowMs: this.deps.clock.now() });
    return { decision, byKey };
  }

  /** Ledger, then files, for one partition; returns the bytes actually freed. */
  private async deleteOne(p: RetainedPartition, d: PartitionDeletion, dropped: readonly DroppedReport[]): Promise<number> {
    const { logger, source } = this.deps;
    const where = { topic: d.topic, partition: d.partition };
    try {
      if (dropped.length > 0) await source.recordDropped(d.topic, d.partition, dropped.map(({ from, to, reason }) => ({ from, to, reason })));
    } catch (e) {
      logger.error("mirror retention could not record dropped ranges in the ledger: the segments stay", { ...where, error: e });
      return 0;
    }
    // Stopped while the ledger was written (the broker closing): the files stay, the ledger is merely ahead.
    if (this.stopped) return 0;
    const before = p.log.sizeBytes;
    let n: number;
    try {
      n = await p.log.retainFrom(d.newLogStartOffset);
    } catch (e) {
      logger.error("mirror retention failed", { ...where, error: e });
      return 0;
    }
    const start = p.log.logStartOffset;
    for (const r of dropped) {
      for (const gone of clipRanges([r], r.from, start)) {
        this.deps.countDropped(d.topic, r.reason, gone.to - gone.from);
        logger.warn("retention deleted records the mirror has not sent", { ...where, from: gone.from, to: gone.to, reason: r.reason, bytes: r.bytes, newestTimestampMs: r.newestTimestampMs });
      }
    }
    if (n > 0) logger.info("retention deleted segments", { ...where, segments: n, reasons: d.reasons.slice(0, n), logStartOffset: start });
    return Math.max(0, before - p.log.sizeBytes);
  }
}

function key(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}
