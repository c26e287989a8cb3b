/**
 * Per-principal quotas: produce bytes/s, fetch bytes/s and requests/s as token buckets, a cap
 * on the streams (SSE, long polls, Subscribe, ProduceStream) one principal holds open, and a cap
 * on its connections (`maxConnections`, counted by connections.ts).
 *
 * Throttling, not disconnection (as Kafka does it): a charge never refuses; it answers how long
 * the caller must wait so the principal stays within its rate. A bucket holds at most one second
 * of its rate (the burst) and may go into debt; the debt, divided by the rate, is the delay. So a
 * request that overdraws is delayed itself, and a principal that keeps overdrawing is held to
 * its rate however it spreads its requests. A single delay is capped at `maxDelayMs` (and the
 * debt with it), so one huge request cannot park a principal for minutes.
 *
 * Rules live in the ACL file beside the ACLs (parsed here, INVALID_CONFIG when wrong):
 *
 *   { "acls": [...],
 *     "quotas": [
 *       { "principal": "*",         "requestsPerSec": 200, "maxStreams": 10, "maxConnections": 20 },
 *       { "principal": "sensor-gw", "produceBytesPerSec": 1048576, "fetchBytesPerSec": 65536 } ] }
 *
 * A principal's limits come from its own rule when it has one, else from the `*` rule; a limit
 * left out is unlimited. Memory is bounded: buckets are kept for the `maxPrincipals` most recently
 * charged principals (least recently used forgotten first, which forgives their debt).
 *
 * Pure: time is an argument (`nowMs`), so tests drive it with a ManualClock.
 *
 * @example
 *   const q = new QuotaBuckets(() => rules);
 *   const waitMs = q.charge("sensor-gw", "produce", body.byteLength, clock.now());
 */
import { TributaryError } from "../errors.ts";
import type { Counter, Metrics } from "../metrics.ts";
import type { Clock } from "../runtime/clock.ts";
import { ConnectionLimiter, type Connection, type ConnectionLimitOptions, type ConnectionProbe } from "./connections.ts";

export type QuotaKind = "produce" | "fetch" | "request";
export const QUOTA_KINDS: readonly QuotaKind[] = ["produce", "fetch", "request"];

export interface QuotaRule {
  principal: string;
  produceBytesPerSec?: number;
  fetchBytesPerSec?: number;
  requestsPerSec?: number;
  maxStreams?: number;
  maxConnections?: number;
}

const RULE_FIELDS = ["principal", "produceBytesPerSec", "fetchBytesPerSec", "requestsPerSec", "maxStreams", "maxConnections"] as const;
/** Counts, not rates: positive integers. */
const COUNT_FIELDS: readonly string[] = ["maxStreams", "maxConnections"];
const RATE_OF: Record<QuotaKind, "produceBytesPerSec" | "fetchBytesPerSec" | "requestsPerSec"> = {
  produce: "produceBytesPerSec",
  fetch: "fetchBytesPerSec",
  request: "requestsPerSec",
};

/** Check the `quotas` section of the ACL file; anything off is INVALID_CONFIG naming the rule. */
export function parseQuotas(json: unknown): QuotaRule[] {
  const bad = (why: string) => new TributaryError("INVALID_CONFIG", `ACL file: ${why}`);
  if (!Array.isArray(json)) throw bad("quotas must be a list of rules");
  const seen = new Set<string>();
  return json.map((raw: unknown, i): QuotaRule => {
    const where = `quotas[${i}]`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw bad(`${where} must be an object`);
    const o = raw as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!(RULE_FIELDS as readonly string[]).includes(k)) throw bad(`${where}: unknown field ${k} (known: ${RULE_FIELDS.join(", ")})`);
    if (typeof o.principal !== "string" || o.principal === "") throw bad(`${where}.principal must be a non-empty string (a token name or *)`);
    if (seen.has(o.principal)) throw bad(`${where}: a second rule for principal ${o.principal}`);
    seen.add(o.principal);
    const rule: QuotaRule = { principal: o.principal };
    for (const k of RULE_FIELDS) {
      if (k === "principal" || o[k] === undefined) continue;
      const v = o[k];
      const count = COUNT_FIELDS.includes(k);
      const ok = typeof v === "number" && Number.isFinite(v) && v > 0 && (!count || Number.isInteger(v));
      if (!ok) throw bad(`${where}.${k} must be a ${count ? "positive integer" : "positive number"}`);
      rule[k] = v as number;
    }
    return rule;
  });
}

/** The rule that applies to `principal`: its own, else `*`, else none (unlimited). */
export function ruleFor(rules: readonly QuotaRule[], principal: string): QuotaRule | undefined {
  return rules.find((r) => r.principal === principal) ?? rules.find((r) => r.principal === "*");
}

interface Bucket {
  /** Tokens (bytes or requests) available; negative is debt. */
  tokens: number;
  lastMs: number;
}

export interface QuotaOptions {
  /** Principals whose buckets are remembered (LRU). */
  maxPrincipals?: number;
  /** Longest single delay; the debt is capped to match. */
  maxDelayMs?: number;
  /** Which connections are open (maxConnections, connections.ts); without one, idle time decides. */
  connectionProbe?: ConnectionProbe;
  connectionLimits?: ConnectionLimitOptions;
}

export class QuotaBuckets {
  private readonly buckets = new Map<string, Partial<Record<QuotaKind, Bucket>>>();
  private readonly streams = new Map<string, number>();
  readonly maxPrincipals: number;
  readonly maxDelayMs: number;

  constructor(
    private readonly rules: () => readonly QuotaRule[],
    options: QuotaOptions = {},
  ) {
    this.maxPrincipals = options.maxPrincipals ?? 10_000;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
  }

  /** Principals with buckets now (bounded by maxPrincipals). */
  get size(): number {
    return this.buckets.size;
  }

  /** Take `amount` from the principal's `kind` bucket; the delay (ms) that keeps it within its rate. */
  charge(principal: string, kind: QuotaKind, amount: number, nowMs: number): number {
    const rate = ruleFor(this.rules(), principal)?.[RATE_OF[kind]];
    if (rate === undefined || amount <= 0) return 0;
    let entry = this.buckets.get(principal);
    if (entry) {
      this.buckets.delete(principal); // re-inserted below: most recently used last
    } else {
      entry = {};
      if (this.buckets.size >= this.maxPrincipals) this.buckets.delete(this.buckets.keys().next().value as string);
    }
    this.buckets.set(principal, entry);
    const burst = rate; // one second of the rate
    const b = (entry[kind] ??= { tokens: burst, lastMs: nowMs });
    b.tokens = Math.min(burst, b.tokens + (rate * Math.max(0, nowMs - b.lastMs)) / 1000);
    b.lastMs = Math.max(b.lastMs, nowMs);
    b.tokens = Math.max(b.tokens - amount, (-rate * this.maxDelayMs) / 1000);
    return b.tokens >= 0 ? 0 : Math.ceil((-b.tokens * 1000) / rate);
  }

  /**
   * Count one more open stream of the principal: a release function (safe to call twice), or
   * OVERLOADED past its `maxStreams`.
   */
  openStream(principal: string): () => void {
    const max = ruleFor(this.rules(), principal)?.maxStreams;
    const open = this.streams.get(principal) ?? 0;
    if (max !== undefined && open >= max) {
      throw new TributaryError("OVERLOADED", `principal ${principal} has ${open} streams open, its quota (maxStreams ${max}); close one or retry later`);
    }
    this.streams.set(principal, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.streams.get(principal) ?? 1) - 1;
      if (n <= 0) this.streams.delete(principal);
      else this.streams.set(principal, n);
    };
  }

  ruleFor(principal: string): QuotaRule | undefined {
    return ruleFor(this.rules(), principal);
  }

  openStreams(principal: string): number {
    return this.streams.get(principal) ?? 0;
  }
}

/**
 * What the gateways hold (one per guard, shared by HTTP and gRPC, so a principal's rate is one
 * rate across listeners): the buckets, the connection limits, the clock, and the throttle metric
 * `tributary_quota_throttle_seconds_total{listener,kind}` (no principal label: names are unbounded).
 */
export class QuotaEnforcer {
  readonly buckets: QuotaBuckets;
  readonly connections: ConnectionLimiter;
  private readonly throttled: Counter;

  constructor(
    rules: () => readonly QuotaRule[],
    metrics: Metrics,
    private readonly clock: Clock,
    options: QuotaOptions = {},
  ) {
    this.buckets = new QuotaBuckets(rules, options);
    this.connections = new ConnectionLimiter(rules, metrics, clock, options.connectionProbe ?? (() => Promise.resolve(null)), options.connectionLimits);
    this.throttled = metrics.counter("tributary_quota_throttle_seconds_total", "Time replies were delayed by quotas, by listener and kind (produce, fetch, request)", ["listener", "kind"]);
  }

  /** Charge without waiting (fetch bytes after a reply: the debt delays the principal's next request). */
  charge(principal: string, kind: QuotaKind, amount: number): number {
    return this.buckets.charge(principal, kind, amount, this.clock.now());
  }

  /** Charge each (kind, amount), then wait the longest delay; resolves to it (0: not throttled). */
  async throttle(listener: string, principal: string, charges: readonly (readonly [QuotaKind, number])[], signal?: AbortSignal): Promise<number> {
    let delay = 0;
    let worst: QuotaKind = "request";
    for (const [kind, amount] of charges) {
      const d = this.charge(principal, kind, amount);
      if (d > delay) [delay, worst] = [d, kind];
    }
    if (delay <= 0) return 0;
    this.throttled.inc({ listener, kind: worst }, delay / 1000);
    await new Promise<void>((resolve) => {
      const cancel = this.clock.setTimer(delay, () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
      const onAbort = () => {
        cancel();
        resolve();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
    return delay;
  }

  openStream(principal: string): () => void {
    return this.buckets.openStream(principal);
  }

  /** A request on `conn` (absent: the listener cannot name it) counts it for `principal`; OVERLOADED past maxConnections. */
  async admitConnection(listener: string, conn: Connection | undefined, principal: string): Promise<void> {
    if (conn) await this.connections.admit(listener, conn, principal);
  }

  ruleFor(principal: string): QuotaRule | undefined {
    return this.buckets.ruleFor(principal);
  }
}
