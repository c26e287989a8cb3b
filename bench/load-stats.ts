/**
 * What the load generators (bench/vs-grpc-load.ts, bench/nats-load.ts) share to measure alike:
 *
 * - `SeqTimes`: a time per stream position (a Tributary offset, a JetStream stream sequence),
 *   grown in place. The producer stores each message's send time under the position its ack
 *   names; the consumer stores when it saw that position. End-to-end latency is the difference,
 *   computed at the end, so it needs no clock in the payload and costs the hot path one store.
 * - `Pacer`: holds a producer to a target rate (the soak runs at half the maximum) without a
 *   timer per message: it says how long to wait before the next send, 0 when behind.
 * - `loadSummary`: the one JSON line every generator prints (see `LoadResult` in bench/lib.ts),
 *   with the generator's own CPU time, to tell a saturated client from a saturated broker.
 */
import { percentile } from "./lib.ts";

/** Positions past this are ignored: a bound on the memory a long run may take (8 bytes each). */
const SEQ_TIMES_MAX = 64 * 1024 * 1024;

export class SeqTimes {
  private times = new Float64Array(1 << 16);

  set(seq: number, t: number): void {
    if (seq < 0 || seq >= SEQ_TIMES_MAX) return;
    if (seq >= this.times.length) {
      let n = this.times.length;
      while (n <= seq) n *= 2;
      const grown = new Float64Array(Math.min(n, SEQ_TIMES_MAX));
      grown.set(this.times);
      this.times = grown;
    }
    this.times[seq] = t;
  }

  get(seq: number): number {
    return seq >= 0 && seq < this.times.length ? this.times[seq]! : 0;
  }

  get capacity(): number {
    return this.times.length;
  }
}

/** For every position both sides know (0 means unknown), received minus sent, sorted. */
export function endToEnd(sent: SeqTimes, received: SeqTimes): number[] {
  const out: number[] = [];
  const n = Math.min(sent.capacity, received.capacity);
  for (let seq = 0; seq < n; seq++) {
    const s = sent.get(seq);
    const r = received.get(seq);
    if (s > 0 && r > 0) out.push(Math.max(0, r - s));
  }
  return out.sort((a, b) => a - b);
}

export class Pacer {
  private sent = 0;
  private readonly started = performance.now();

  /** `perSecond` 0: no pacing. */
  constructor(private readonly perSecond: number) {}

  /** Milliseconds to wait before the next send (0: send now); counts the send. */
  next(): number {
    if (this.perSecond <= 0) return 0;
    const due = this.started + (this.sent++ * 1000) / this.perSecond;
    return Math.max(0, due - performance.now());
  }
}

export interface LoadCounts {
  /** Acknowledged messages (a Tributary batch of `batch` records counts `batch` records). */
  records: number;
  bytes: number;
  errors: number;
  elapsedMs: number;
  /** Publish-to-ack latency of each acknowledged message or batch, in ms, unsorted. */
  ackLatencies: number[];
  /** End-to-end latencies, sorted (from `endToEnd`), or none when no consumer ran. */
  e2e: number[];
}

export function loadSummary(c: LoadCounts): string {
  const ack = c.ackLatencies.sort((a, b) => a - b);
  const cpu = process.cpuUsage();
  return JSON.stringify({
    // The generator's own CPU seconds: when it nears one core per second, it, not the broker, is the limit.
    loadCpuS: (cpu.user + cpu.system) / 1e6,
    records: c.records,
    bytes: c.bytes,
    errors: c.errors,
    elapsedMs: c.elapsedMs,
    p50: percentile(ack, 50),
    p99: percentile(ack, 99),
    p999: percentile(ack, 99.9),
    e2eP50: percentile(c.e2e, 50),
    e2eP99: percentile(c.e2e, 99),
    e2eSamples: c.e2e.length,
  });
}
