/**
 * Groups MQTT messages bound for the same log topic into few produce calls. A message's promise
 * resolves once its record is durable (acks=1), and only then is the MQTT message acknowledged.
 *
 * No timer waits to fill a batch: a topic dispatches at once while fewer than
 * `maxInflightProduces` produce calls are running, and whatever arrives meanwhile forms the next
 * batch (up to `maxRecords` / `maxBytes`) — the same shape as the log's group commit, so batches
 * grow exactly when the log is the bottleneck. Queues are bounded by the callers' unacknowledged
 * windows (each connection stops reading once its window is full), not here.
 *
 * Refusals: retriable ones (OVERLOADED, NOT_READY, STORAGE_ERROR) and TOPIC_NOT_FOUND (the
 * operator has not created the topic yet) put the batch back at the head of its queue and pause
 * that topic with exponential backoff; nothing is acknowledged meanwhile, so the MQTT broker
 * keeps the messages. Any other refusal is about one record (too large, bad partition): the batch
 * is retried record by record and only the offending records fail, with `Rejected`.
 */
import type { Broker, ProduceRecord } from "../../src/broker.ts";
import { TributaryError, isTributaryError, type ErrorCode } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import type { BridgeMetrics } from "./metrics.ts";

export class Rejected extends Error {
  constructor(readonly code: ErrorCode | "INTERNAL", message: string) {
    super(message);
  }
}

/** A record's size as batches (maxBytes) and the produce quota count it: key, value, headers, and a per-record overhead. */
export function recordBytes(record: ProduceRecord): number {
  return 32 + (record.key?.length ?? 0) + (record.value?.length ?? 0) + (record.headers ?? []).reduce((a, h) => a + h.key.length + (h.value?.length ?? 0) + 8, 0);
}

interface Item {
  record: ProduceRecord;
  bytes: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

interface TopicQueue {
  items: Item[];
  inflight: number;
  pausedUntilMs: number;
  backoffMs: number;
  timer: ReturnType<typeof setTimeout> | null;
}

export interface BatchLimits {
  maxRecords: number;
  maxBytes: number;
  maxInflightProduces: number;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5_000;
const RETRY_CODES: ReadonlySet<string> = new Set(["OVERLOADED", "NOT_READY", "STORAGE_ERROR", "NOT_LEADER", "PEER_UNAVAILABLE", "REQUEST_TIMED_OUT", "TOPIC_NOT_FOUND"]);

export class Batcher {
  private readonly queues = new Map<string, TopicQueue>();
  private stopped = false;
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly broker: Broker,
    private readonly limits: BatchLimits,
    private readonly metrics: BridgeMetrics,
    private readonly logger: Logger,
  ) {}

  /** Resolves once the record is durable; rejects with Rejected (drop it) or on stop (keep it unacknowledged). */
  add(topic: string, record: ProduceRecord): Promise<void> {
    if (this.stopped) return Promise.reject(new TributaryError("NOT_READY", "the MQTT bridge is stopping"));
    let q = this.queues.get(topic);
    if (!q) {
      q = { items: [], inflight: 0, pausedUntilMs: 0, backoffMs: BACKOFF_MIN_MS, timer: null };
      this.queues.set(topic, q);
    }
    const bytes = recordBytes(record);
    const done = new Promise<void>((resolve, reject) => q.items.push({ record, bytes, resolve, reject }));
    this.dispatch(topic, q);
    return done;
  }

  private dispatch(topic: string, q: TopicQueue): void {
    while (!this.stopped && q.items.length > 0 && q.inflight < this.limits.maxInflightProduces && q.timer === null) {
      let n = 0;
      let bytes = 0;
      while (n < q.items.length && n < this.limits.maxRecords && (n === 0 || bytes + q.items[n]!.bytes <= this.limits.maxBytes)) {
        bytes += q.items[n]!.bytes;
        n++;
      }
      const batch = q.items.splice(0, n);
      q.inflight++;
      const run = this.produce(topic, q, batch).finally(() => {
        q.inflight--;
        this.running.delete(run);
        this.dispatch(topic, q);
      });
      this.running.add(run);
    }
  }

  private async produce(topic: string, q: TopicQueue, batch: Item[]): Promise<void> {
    try {
      await this.broker.produce(topic, batch.map((i) => i.record), 1);
      q.backoffMs = BACKOFF_MIN_MS;
      this.metrics.produced.inc({ topic }, batch.length);
      for (const i of batch) i.resolve();
    } catch (e) {
      const code = isTributaryError(e) ? e.code : "INTERNAL";
      if (RETRY_CODES.has(code)) {
        this.metrics.produceRetries.inc({ topic, code });
        if (q.backoffMs === BACKOFF_MIN_MS || code !== "TOPIC_NOT_FOUND") {
          this.logger.warn("MQTT bridge: produce refused, retrying", { topic, code, retryInMs: q.backoffMs, error: e });
        }
        q.items.unshift(...batch);
        this.pause(topic, q);
      } else if (batch.length > 1) {
        // One bad record must not sink the others: try them one by one.
        await Promise.all(batch.map((i) => this.produce(topic, q, [i])));
      } else {
        batch[0]!.reject(new Rejected(code, (e as Error).message));
      }
    }
  }

  private pause(topic: string, q: TopicQueue): void {
    if (q.timer !== null || this.stopped) return;
    const delay = q.backoffMs * (0.5 + Math.random() / 2);
    q.backoffMs = Math.min(q.backoffMs * 2, BACKOFF_MAX_MS);
    q.timer = setTimeout(() => {
      q.timer = null;
      this.dispatch(topic, q);
    }, delay);
  }

  /** Refuse new records, fail queued ones (they stay unacknowledged), and wait for produces in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    const err = new TributaryError("NOT_READY", "the MQTT bridge is stopping");
    for (const q of this.queues.values()) {
      if (q.timer !== null) clearTimeout(q.timer);
      q.timer = null;
      for (const i of q.items.splice(0)) i.reject(err);
    }
    await Promise.allSettled([...this.running]);
    for (const q of this.queues.values()) for (const i of q.items.splice(0)) i.reject(err);
  }
}
