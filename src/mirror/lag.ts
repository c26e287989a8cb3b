/**
 * Mirror lag of one source partition (pure; time is passed in): how far the central is behind, in
 * records, bytes and seconds; when the central's position last moved; the link's state; the
 * measured rates and the drain time they give; and whether the partition is stalled.
 *
 * The driver feeds it what it sees: the source growing (`sourceGrew`, with the bytes appended),
 * the central acknowledging (`acknowledged`, with the bytes that went and the timestamp of the
 * next record still unmirrored, which it has from the batch it reads next), and the link's state.
 * After a resume plan or a reconnect it starts a fresh tracker from the log's bounds.
 *
 * - records: hw - position (offsets, so a control batch counts one, as in Kafka's lag);
 * - bytes: kept from the start value, plus appended, minus acknowledged; 0 once caught up;
 * - seconds: now - the timestamp of the oldest unmirrored record (0 when caught up);
 * - rates: bytes per second acknowledged and appended, each an exponentially weighted moving
 *   average over fixed samples (`rateSampleMs`) with a half-life (`rateHalfLifeMs`), so one
 *   burst neither makes nor breaks an estimate;
 * - drain time: lag bytes / (send rate - source rate), null when the uplink does not outrun the
 *   source (the lag is not shrinking: no honest estimate exists);
 * - stalled: there is lag, the link is not paused, and the position has not moved for
 *   `stallAfterMs`, counted from the later of its last move and the moment the lag appeared (a
 *   partition idle and caught up is not stalled, nor one that just got a record).
 *
 * @example
 *   const lag = new PartitionLag({ position: 100, highWatermark: 100, lagBytes: 0, oldestUnmirroredMs: null, state: "connected" }, now);
 *   lag.sourceGrew(150, 50_000, now);
 *   lag.acknowledged(120, 20_000, tsOfOffset120, now + 200);
 *   lag.snapshot(now + 200);   // { lagRecords: 30, lagBytes: 30000, ... }
 */
import { assert } from "../errors.ts";

export type LinkState = "connected" | "backing-off" | "paused" | "throttled";

export interface LagOptions {
  /** Default 60000. */
  readonly stallAfterMs?: number;
  /** Default 30000. */
  readonly rateHalfLifeMs?: number;
  /** Default 1000. */
  readonly rateSampleMs?: number;
}

export interface LagStart {
  /** The central's position: the next source offset it expects. */
  readonly position: number;
  readonly highWatermark: number;
  /** Bytes of the source log between position and highWatermark. */
  readonly lagBytes: number;
  /** Timestamp of the record at `position`; null when caught up. */
  readonly oldestUnmirroredMs: number | null;
  readonly state: LinkState;
}

export interface LagSnapshot {
  readonly position: number;
  readonly highWatermark: number;
  readonly lagRecords: number;
  readonly lagBytes: number;
  readonly lagSeconds: number;
  /** When the central's position last moved (epoch ms); null: not since this tracker started. */
  readonly lastAdvanceMs: number | null;
  readonly state: LinkState;
  readonly sendBytesPerSec: number;
  readonly sourceBytesPerSec: number;
  /** Seconds until caught up at the measured rates; null when the lag is not shrinking. */
  readonly drainSeconds: number | null;
  readonly stalled: boolean;
}

/**
 * A rate (per second) as an exponentially weighted moving average of fixed samples: what arrives
 * within one `sampleMs` is one sample; each sample moves the average by alpha = 1 - 2^(-sampleMs /
 * halfLifeMs), so a sample's weight halves every half-life. Empty samples count as zero.
 */
export class Ewma {
  private value = 0;
  private sampleStartMs: number;
  private acc = 0;
  private readonly alpha: number;

  constructor(
    private readonly halfLifeMs: number,
    private readonly sampleMs: number,
    nowMs: number,
  ) {
    assert(halfLifeMs > 0 && sampleMs > 0, "an EWMA needs a positive half-life and sample");
    this.alpha = 1 - 2 ** (-sampleMs / halfLifeMs);
    this.sampleStartMs = nowMs;
  }

  add(amount: number, nowMs: number): void {
    this.fold(nowMs);
    this.acc += amount;
  }

  /** Per second, from the samples completed by `nowMs`. */
  rate(nowMs: number): number {
    this.fold(nowMs);
    return this.value;
  }

  private fold(nowMs: number): void {
    const samples = Math.floor((nowMs - this.sampleStartMs) / this.sampleMs);
    if (samples <= 0) return;
    this.value += this.alpha * ((this.acc * 1000) / this.sampleMs - this.value);
    // The samples after the first are empty: closed form, however long the silence was.
    this.value *= (1 - this.alpha) ** (samples - 1);
    this.acc = 0;
    this.sampleStartMs += samples * this.sampleMs;
  }
}

export class PartitionLag {
  private position: number;
  private highWatermark: number;
  private lagBytes: number;
  private oldestUnmirroredMs: number | null;
  private state: LinkState;
  private lastAdvanceMs: number | null = null;
  /** The stall clock: the later of the last advance, the moment lag appeared, and leaving "paused". */
  private progressMs: number;
  private readonly sendRate: Ewma;
  private readonly sourceRate: Ewma;
  private readonly stallAfterMs: number;

  constructor(start: LagStart, nowMs: number, options: LagOptions = {}) {
    assert(start.position >= 0 && start.highWatermark >= 0 && start.lagBytes >= 0, "lag starts from offsets and bytes >= 0");
    this.position = start.position;
    this.highWatermark = Math.max(start.highWatermark, start.position);
    this.lagBytes = this.caughtUp ? 0 : start.lagBytes;
    this.oldestUnmirroredMs = this.caughtUp ? null : start.oldestUnmirroredMs;
    this.state = start.state;
    this.progressMs = nowMs;
    this.stallAfterMs = options.stallAfterMs ?? 60_000;
    const halfLife = options.rateHalfLifeMs ?? 30_000;
    const sample = options.rateSampleMs ?? 1000;
    this.sendRate = new Ewma(halfLife, sample, nowMs);
    this.sourceRate = new Ewma(halfLife, sample, nowMs);
  }

  private get caughtUp(): boolean {
    return this.position >= this.highWatermark;
  }

  /**
   * The source's high watermark is now `highWatermark`, `appendedBytes` more than before.
   * `firstTimestampMs`: the timestamp of the first new record, when the driver has it (else now).
   */
  sourceGrew(highWatermark: number, appendedBytes: number, nowMs: number, firstTimestampMs?: number): void {
    this.sourceRate.add(appendedBytes, nowMs);
    if (highWatermark <= this.highWatermark) return; // a new edge leader's commit may trail for a moment
    if (this.caughtUp) {
      this.progressMs = Math.max(this.progressMs, nowMs);
      this.oldestUnmirroredMs = firstTimestampMs ?? nowMs;
    }
    this.highWatermark = highWatermark;
    this.lagBytes += appendedBytes;
  }

  /**
   * The central acknowledged up to `position` (its next expected offset), `bytes` newly mirrored;
   * `nextUnmirroredMs` is the timestamp of the record at `position` (ignored once caught up).
   * The central's position ends at its newest data batch (stamp.ts); when the driver has read past
   * it and found only batches without records (a new edge leader's control batch), it passes its
   * read cursor instead, so a caught-up partition shows no lag.
   */
  acknowledged(position: number, bytes: number, nextUnmirroredMs: number | null, nowMs: number): void {
    this.sendRate.add(bytes, nowMs);
    if (position <= this.position) return; // a replay acknowledged again
    this.position = position;
    this.lastAdvanceMs = nowMs;
    this.progressMs = Math.max(this.progressMs, nowMs);
    this.highWatermark = Math.max(this.highWatermark, position);
    this.lagBytes = this.caughtUp ? 0 : Math.max(0, this.lagBytes - bytes);
    this.oldestUnmirroredMs = this.caughtUp ? null : (nextUnmirroredMs ?? this.oldestUnmirroredMs);
  }

  setState(state: LinkState, nowMs: number): void {
    // Time spent paused is not time without progress.
    if (this.state === "paused" && state !== "paused") this.progressMs = Math.max(this.progressMs, nowMs);
    this.state = state;
  }

  snapshot(nowMs: number): LagSnapshot {
    const sendBytesPerSec = this.sendRate.rate(nowMs);
    const sourceBytesPerSec = this.sourceRate.rate(nowMs);
    const lagRecords = this.highWatermark - this.position;
    return {
      position: this.position,
      highWatermark: this.highWatermark,
      lagRecords,
      lagBytes: this.lagBytes,
      lagSeconds: this.oldestUnmirroredMs === null || lagRecords === 0 ? 0 : Math.max(0, nowMs - this.oldestUnmirroredMs) / 1000,
      lastAdvanceMs: this.lastAdvanceMs,
      state: this.state,
      sendBytesPerSec,
      sourceBytesPerSec,
      drainSeconds: drainSeconds(this.lagBytes, sendBytesPerSec, sourceBytesPerSec),
      stalled: lagRecords > 0 && this.state !== "paused" && nowMs - this.progressMs >= this.stallAfterMs,
    };
  }
}

function drainSeconds(lagBytes: number, sendBytesPerSec: number, sourceBytesPerSec: number): number | null {
  if (lagBytes === 0) return 0;
  const net = sendBytesPerSec - sourceBytesPerSec;
  return net > 0 ? lagBytes / net : null;
}

export interface LinkLagSummary {
  readonly partitions: number;
  readonly lagRecords: number;
  readonly lagBytes: number;
  readonly maxLagSeconds: number;
  readonly sendBytesPerSec: number;
  readonly sourceBytesPerSec: number;
  /** The whole link's backlog at its whole rate: partitions take turns on one uplink, so this is the honest one. */
  readonly drainSeconds: number | null;
  readonly stalledPartitions: number;
}

export function summarizeLag(snapshots: readonly LagSnapshot[]): LinkLagSummary {
  let lagRecords = 0;
  let lagBytes = 0;
  let maxLagSeconds = 0;
  let send = 0;
  let source = 0;
  let stalled = 0;
  for (const s of snapshots) {
    lagRecords += s.lagRecords;
    lagBytes += s.lagBytes;
    maxLagSeconds = Math.max(maxLagSeconds, s.lagSeconds);
    send += s.sendBytesPerSec;
    source += s.sourceBytesPerSec;
    if (s.stalled) stalled++;
  }
  return {
    partitions: snapshots.length,
    lagRecords,
    lagBytes,
    maxLagSeconds,
    sendBytesPerSec: send,
    sourceBytesPerSec: source,
    drainSeconds: drainSeconds(lagBytes, send, source),
    stalledPartitions: stalled,
  };
}
