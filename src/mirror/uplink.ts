/**
 * The uplink scheduler (pure; time is passed in): which source partition a link sends next, how
 * much, and when, so the link holds a bytes-per-second cap and the live tail goes first.
 *
 * The driver tells it what each partition holds unsent beyond its send cursor (`pending`: after
 * the source grew, and after it read a grant's batches and moved the cursor), asks `next(now)`,
 * sends what a grant allows (at least one whole batch, so possibly more than `maxBytes`), and
 * reports the bytes that went with `sent` (or `cancel` when the send failed; the driver then moves
 * its cursor back and says so with `pending`). One send per partition is in flight at a time
 * (order within a partition is the sink's contract) and at most `maxInflightSends` in all.
 *
 * - **Cap.** A token bucket of `bytesPerSec`, holding `burstMs` of it. A grant reserves its
 *   `maxBytes` and `sent` settles the difference, so pipelined grants cannot overdraw; a batch
 *   larger than the grant runs the bucket into debt, and the next grant waits it out. Over any
 *   long window the bytes sent stay within rate x window + burst + one send.
 * - **Two lanes.** A partition is *live* while what it holds unsent fits in one send
 *   (`liveMaxBytes`), and becomes *backlog* once it holds more than four times that (the gap
 *   between is hysteresis, so a partition does not flap). Lanes share the cap by start-time fair
 *   queuing with weights `1 - backlogShare` and `backlogShare`: when both lanes want more than
 *   their share, the backlog gets exactly `backlogShare` of the cap; what the live lane leaves
 *   unused goes to the backlog, and all of the cap when the live lane is idle. A lane that wakes
 *   starts level with the other (no credit banked while idle), and ties go to the live lane, so a
 *   live record waits at most for the send in progress: its latency is bounded by one send's
 *   share of the cap, `sendSliceMs`.
 * - **Priority.** Within a lane, partitions share by the same fair queuing with weight
 *   2^priority (priority 0 to 7 per topic, first matching pattern, default 0): a priority-3 topic
 *   gets 8 times the bytes of a priority-0 topic when both are saturated, its first send goes
 *   first, and no partition starves (each gets at least its weight's share of its lane).
 * - **Batching.** A grant allows `maxBytes` = the cap's `sendSliceMs` worth, clamped to
 *   [minSendBytes, maxSendBytes] (small sends keep live latency low on a slow link; the floor
 *   keeps compression and per-send overhead worth it), and `maxSendRecords` records.
 *
 * @example
 *   const up = new UplinkScheduler({ bytesPerSec: 125_000, backlogShare: 0.5 }, clock.now());
 *   up.pending("telemetry", 0, 4096, clock.now());
 *   const d = up.next(clock.now());   // { kind: "send", lane: "live", topic: "telemetry", partition: 0, maxBytes: 31250, ... }
 *   if (d.kind === "send") up.sent(d, bytesSent, clock.now());
 */
import { TributaryError, assert } from "../errors.ts";
import { matchesPattern, validatePattern } from "./topics.ts";

export type Lane = "live" | "backlog";

export interface PriorityRule {
  readonly pattern: string;
  /** 0 (default) to 7; a partition's weight is 2^priority. */
  readonly priority: number;
}

export interface UplinkConfig {
  readonly bytesPerSec: number;
  /** The backlog's part of the cap while the live lane wants the rest; 0 < share < 1. Default 0.5. */
  readonly backlogShare?: number;
  /** The bucket holds this much of the rate. Default 1000. */
  readonly burstMs?: number;
  /** A grant allows this much of the cap. Default 250. */
  readonly sendSliceMs?: number;
  /** Default 16 KiB. */
  readonly minSendBytes?: number;
  /** Default 1 MiB. */
  readonly maxSendBytes?: number;
  /** Default 10000. */
  readonly maxSendRecords?: number;
  /** A partition holding at most this much unsent is live. Default: one grant's maxBytes. */
  readonly liveMaxBytes?: number;
  /** Default 4. */
  readonly maxInflightSends?: number;
  /** Default 10000. */
  readonly maxPartitions?: number;
  readonly priorities?: readonly PriorityRule[];
}

export interface UplinkGrant {
  readonly kind: "send";
  readonly lane: Lane;
  readonly topic: string;
  readonly partition: number;
  readonly maxBytes: number;
  readonly maxRecords: number;
}

export type UplinkDecision =
  | UplinkGrant
  /** Data waits, the cap does not allow it yet: ask again after waitMs. */
  | { readonly kind: "wait"; readonly waitMs: number }
  /** Nothing to grant until `pending` or `sent` says otherwise. */
  | { readonly kind: "idle" };

export interface UplinkStats {
  readonly bytesSent: Readonly<Record<Lane, number>>;
  readonly sends: Readonly<Record<Lane, number>>;
  readonly inflight: number;
  /** The bucket's tokens now (negative: debt). */
  readonly tokens: number;
}

/** Past this multiple of liveMaxBytes a live partition turns backlog. */
const LIVE_EXIT_FACTOR = 4;
const MAX_PRIORITY = 7;

interface Flow {
  readonly topic: string;
  readonly partition: number;
  readonly priority: number;
  readonly weight: number;
  pendingBytes: number;
  lane: Lane;
  busy: boolean;
  /** Start tag in its lane's virtual time (bytes / weight). */
  tag: number;
}

interface LaneState {
  readonly weight: number;
  /** Start tag among lanes. */
  tag: number;
  /** Virtual time of the flows in this lane: the highest start tag served. */
  vtime: number;
  /** Flows of this lane holding data. */
  active: number;
}

function invalid(message: string): TributaryError {
  return new TributaryError("INVALID_CONFIG", `mirror uplink: ${message}`);
}

function positive(name: string, v: number | undefined, dflt: number, integer = false): number {
  const x = v ?? dflt;
  if (!(typeof x === "number" && Number.isFinite(x) && x > 0 && (!integer || Number.isInteger(x)))) throw invalid(`${name} must be a positive ${integer ? "integer" : "number"}, got ${String(x)}`);
  return x;
}

export class UplinkScheduler {
  readonly bytesPerSec: number;
  readonly burstBytes: number;
  /** What a grant allows. */
  readonly sendBytes: number;
  readonly maxSendRecords: number;
  readonly liveMaxBytes: number;
  readonly maxInflightSends: number;
  readonly maxPartitions: number;
  private readonly priorities: readonly PriorityRule[];
  private readonly flows = new Map<string, Flow>();
  private readonly lanes: Record<Lane, LaneState>;
  /** Virtual time among lanes. */
  private vtime = 0;
  private tokens: number;
  private lastMs: number;
  private readonly inflight = new Set<UplinkGrant>();
  private readonly bytesSent: Record<Lane, number> = { live: 0, backlog: 0 };
  private readonly sends: Record<Lane, number> = { live: 0, backlog: 0 };

  constructor(config: UplinkConfig, nowMs: number) {
    this.bytesPerSec = positive("bytesPerSec", config.bytesPerSec, NaN);
    const share = config.backlogShare ?? 0.5;
    if (!(share > 0 && share < 1)) throw invalid(`backlogShare must lie strictly between 0 and 1, got ${String(share)}`);
    this.burstBytes = (this.bytesPerSec * positive("burstMs", config.burstMs, 1000)) / 1000;
    const minSend = positive("minSendBytes", config.minSendBytes, 16 * 1024, true);
    const maxSend = positive("maxSendBytes", config.maxSendBytes, 1024 * 1024, true);
    if (minSend > maxSend) throw invalid(`minSendBytes ${minSend} is above maxSendBytes ${maxSend}`);
    const slice = Math.floor((this.bytesPerSec * positive("sendSliceMs", config.sendSliceMs, 250)) / 1000);
    this.sendBytes = Math.min(maxSend, Math.max(minSend, slice));
    this.maxSendRecords = positive("maxSendRecords", config.maxSendRecords, 10_000, true);
    this.liveMaxBytes = positive("liveMaxBytes", config.liveMaxBytes, this.sendBytes, true);
    this.maxInflightSends = positive("maxInflightSends", config.maxInflightSends, 4, true);
    this.maxPartitions = positive("maxPartitions", config.maxPartitions, 10_000, true);
    this.priorities = (config.priorities ?? []).map((r) => {
      validatePattern(r.pattern);
      if (!(Number.isInteger(r.priority) && r.priority >= 0 && r.priority <= MAX_PRIORITY)) throw invalid(`priority of ${r.pattern} must be an integer from 0 to ${MAX_PRIORITY}, got ${String(r.priority)}`);
      return { pattern: r.pattern, priority: r.priority };
    });
    this.lanes = {
      live: { weight: 1 - share, tag: 0, vtime: 0, active: 0 },
      backlog: { weight: share, tag: 0, vtime: 0, active: 0 },
    };
    this.tokens = this.burstBytes;
    this.lastMs = nowMs;
  }

  priorityOf(topic: string): number {
    return this.priorities.find((r) => matchesPattern(r.pattern, topic))?.priority ?? 0;
  }

  /** What `topic`/`partition` holds unsent now (bytes from its send cursor to the source's high watermark). */
  pending(topic: string, partition: number, pendingBytes: number, nowMs: number): void {
    assert(Number.isFinite(pendingBytes) && pendingBytes >= 0, `pending bytes ${pendingBytes} must be >= 0`);
    this.refill(nowMs);
    const key = `${topic}/${partition}`;
    let flow = this.flows.get(key);
    if (!flow) {
      if (this.flows.size >= this.maxPartitions) throw new TributaryError("OVERLOADED", `a mirror link schedules at most ${this.maxPartitions} partitions`);
      const priority = this.priorityOf(topic);
      flow = { topic, partition, priority, weight: 2 ** priority, pendingBytes: 0, lane: pendingBytes <= this.liveMaxBytes ? "live" : "backlog", busy: false, tag: 0 };
      this.flows.set(key, flow);
    }
    let lane = flow.lane;
    if (lane === "live" && pendingBytes > LIVE_EXIT_FACTOR * this.liveMaxBytes) lane = "backlog";
    else if (lane === "backlog" && pendingBytes <= this.liveMaxBytes) lane = "live";
    this.update(flow, pendingBytes, lane);
  }

  /** Forget a partition (its topic left the link). A send in flight for it may still be settled. */
  remove(topic: string, partition: number): void {
    const key = `${topic}/${partition}`;
    const flow = this.flows.get(key);
    if (!flow) return;
    this.update(flow, 0, flow.lane);
    this.flows.delete(key);
  }

  next(nowMs: number): UplinkDecision {
    this.refill(nowMs);
    if (this.inflight.size >= this.maxInflightSends) return { kind: "idle" };
    const best: Partial<Record<Lane, Flow>> = {};
    for (const f of this.flows.values()) {
      if (f.busy || f.pendingBytes === 0) continue;
      const b = best[f.lane];
      if (!b || before(f, b)) best[f.lane] = f;
    }
    const lane = best.live && best.backlog ? (this.lanes.backlog.tag < this.lanes.live.tag ? "backlog" : "live") : best.live ? "live" : best.backlog ? "backlog" : null;
    if (lane === null) return { kind: "idle" };
    if (this.tokens < 0) return { kind: "wait", waitMs: Math.max(1, Math.ceil((-this.tokens * 1000) / this.bytesPerSec)) };
    const flow = best[lane]!;
    const grant: UplinkGrant = { kind: "send", lane, topic: flow.topic, partition: flow.partition, maxBytes: this.sendBytes, maxRecords: this.maxSendRecords };
    const ls = this.lanes[lane];
    this.vtime = Math.max(this.vtime, ls.tag);
    ls.vtime = Math.max(ls.vtime, flow.tag);
    flow.busy = true;
    this.inflight.add(grant);
    this.charge(grant, flow, this.sendBytes);
    return grant;
  }

  /** The send of `grant` went with `bytes` bytes (possibly more than maxBytes: one whole batch). */
  sent(grant: UplinkGrant, bytes: number, nowMs: number): void {
    this.settle(grant, bytes, true, nowMs);
  }

  /** The send of `grant` failed or was not made; `bytesOnWire` of it still used the uplink. */
  cancel(grant: UplinkGrant, nowMs: number, bytesOnWire = 0): void {
    this.settle(grant, bytesOnWire, false, nowMs);
  }

  stats(nowMs: number): UplinkStats {
    this.refill(nowMs);
    return { bytesSent: { ...this.bytesSent }, sends: { ...this.sends }, inflight: this.inflight.size, tokens: this.tokens };
  }

  /** The lane a partition is in now (null: not scheduled). */
  laneOf(topic: string, partition: number): Lane | null {
    return this.flows.get(`${topic}/${partition}`)?.lane ?? null;
  }

  private settle(grant: UplinkGrant, usedBytes: number, delivered: boolean, nowMs: number): void {
    assert(this.inflight.delete(grant), `grant for ${grant.topic}/${grant.partition} settled twice, or never made`);
    assert(Number.isFinite(usedBytes) && usedBytes >= 0, `sent bytes ${usedBytes} must be >= 0`);
    this.refill(nowMs);
    const flow = this.flows.get(`${grant.topic}/${grant.partition}`);
    this.charge(grant, flow, usedBytes - grant.maxBytes);
    this.bytesSent[grant.lane] += usedBytes;
    if (delivered) this.sends[grant.lane]++;
    if (flow) flow.busy = false; // else removed meanwhile
  }

  /** Take `bytes` (negative: give back) from the bucket and advance the fair-queuing tags. */
  private charge(grant: UplinkGrant, flow: Flow | undefined, bytes: number): void {
    this.tokens = Math.min(this.burstBytes, this.tokens - bytes);
    const ls = this.lanes[grant.lane];
    ls.tag += bytes / ls.weight;
    if (flow && flow.lane === grant.lane) flow.tag += bytes / flow.weight;
  }

  /** Set a flow's pending bytes and lane, keeping the lanes' activity and the start tags of waking flows and lanes. */
  private update(flow: Flow, pendingBytes: number, lane: Lane): void {
    const wasActive = flow.pendingBytes > 0;
    const isActive = pendingBytes > 0;
    if (wasActive) this.deactivate(flow.lane);
    if (lane !== flow.lane || (!wasActive && isActive)) flow.tag = Math.max(flow.tag, this.lanes[lane].vtime);
    flow.lane = lane;
    flow.pendingBytes = pendingBytes;
    if (isActive) this.activate(lane);
  }

  private activate(lane: Lane): void {
    const ls = this.lanes[lane];
    // A lane that wakes starts level with the lanes' virtual time: no credit banked while idle.
    if (ls.active++ === 0) ls.tag = Math.max(ls.tag, this.vtime);
  }

  private deactivate(lane: Lane): void {
    this.lanes[lane].active--;
  }

  private refill(nowMs: number): void {
    if (nowMs > this.lastMs) {
      this.tokens = Math.min(this.burstBytes, this.tokens + (this.bytesPerSec * (nowMs - this.lastMs)) / 1000);
      this.lastMs = nowMs;
    }
  }
}

/** Fair-queuing order within a lane: lower start tag, then higher priority, then name. */
function before(a: Flow, b: Flow): boolean {
  if (a.tag !== b.tag) return a.tag < b.tag;
  if (a.priority !== b.priority) return a.priority > b.priority;
  if (a.topic !== b.topic) return a.topic < b.topic;
  return a.partition < b.partition;
}

