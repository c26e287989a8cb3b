/**
 * One direction of one fault-proxy connection (see fault-proxy.ts): `Pipe` is a bounded FIFO of
 * chunks read from its source socket, pumped to its destination as the proxy's faults allow;
 * `TokenBucket` is the throttle. Split from the proxy because it is the part with the logic: the
 * proxy around it only accepts, connects and counts.
 */
import type { Socket } from "node:net";

/** "a" is the client side (who connected to the proxy), "b" the target. */
export type Direction = "a->b" | "b->a";

/**
 * The bucket holds this much of the rate: small against the seconds a test measures, large
 * against timer lateness: a pump waits for half the bucket, so a timer up to half this late (a
 * busy event loop) loses no tokens to the cap, and the rate holds.
 */
const THROTTLE_BURST_MS = 100;

/** The state of the faults, shared by every pipe of the proxy. */
export interface Faults {
  /** Directions whose bytes are held (a stall both ways holds both). */
  stalled: Set<Direction>;
  cut: boolean;
  blackholed: Set<Direction>;
  delayMs: number;
  buckets: Record<Direction, TokenBucket | null>;
}

export function noFaults(): Faults {
  return { stalled: new Set(), cut: false, blackholed: new Set(), delayMs: 0, buckets: { "a->b": null, "b->a": null } };
}

export const nowMs = (): number => performance.now();

/** Token bucket in bytes; tokens refill with elapsed time, up to `capacity`. */
export class TokenBucket {
  private readonly capacity: number;
  private tokens: number;
  private lastMs: number;

  constructor(
    private readonly bytesPerSec: number,
    now: number,
  ) {
    this.capacity = Math.max(2, Math.ceil((bytesPerSec * THROTTLE_BURST_MS) / 1000));
    this.tokens = this.capacity;
    this.lastMs = now;
  }

  /** Takes up to `wanted` bytes; 0 and how long to wait when fewer than worth a write are there. */
  take(wanted: number, now: number): { bytes: number; waitMs: number } {
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.lastMs) * this.bytesPerSec) / 1000);
    this.lastMs = now;
    const worth = Math.min(wanted, Math.ceil(this.capacity / 2));
    if (this.tokens < worth) return { bytes: 0, waitMs: Math.max(1, Math.ceil(((worth - this.tokens) * 1000) / this.bytesPerSec)) };
    const bytes = Math.min(wanted, Math.floor(this.tokens));
    this.tokens -= bytes;
    return { bytes, waitMs: 0 };
  }
}

/** Counters a pipe reports into. */
export interface PipeSink {
  delivered(direction: Direction, bytes: number): void;
  dropped(bytes: number): void;
  queued(bytes: number): void;
}

interface Chunk {
  bytes: Buffer;
  arrivedMs: number;
}

/** One direction of one connection: a bounded FIFO from `from` to `to`, pumped as faults allow. */
export class Pipe {
  /** Taken chunks before `head` are cleared (undefined) and spliced off now and then. */
  private readonly chunks: (Chunk | undefined)[] = [];
  private head = 0;
  queuedBytes = 0;
  /** The source's FIN, forwarded once the bytes before it are. */
  private endArrivedMs: number | null = null;
  private waitingDrain = false;
  private sourcePaused = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;

  constructor(
    private readonly direction: Direction,
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly faults: () => Faults,
    private readonly sink: PipeSink,
    private readonly maxQueuedBytes: number,
  ) {}

  push(bytes: Buffer): void {
    if (this.closed) return this.sink.dropped(bytes.length);
    if (this.faults().blackholed.has(this.direction)) return this.sink.dropped(bytes.length);
    this.chunks.push({ bytes, arrivedMs: nowMs() });
    this.queuedBytes += bytes.length;
    this.sink.queued(this.queuedBytes);
    if (this.queuedBytes >= this.maxQueuedBytes && !this.sourcePaused) {
      this.sourcePaused = true;
      this.from.pause();
    }
    this.pump();
  }

  pushEnd(): void {
    this.endArrivedMs = nowMs();
    this.pump();
  }

  /** Pump now, even if a timer is pending (the faults changed). */
  kick(): void {
    this.clearTimer();
    this.pump();
  }

  /** The connection is gone: drop what is held (counted), stop every timer. */
  close(): void {
    this.closed = true;
    this.clearTimer();
    this.sink.dropped(this.queuedBytes);
    this.chunks.length = 0;
    this.head = 0;
    this.queuedBytes = 0;
  }

  private pump(): void {
    if (this.closed || this.waitingDrain || this.timer !== null) return;
    for (;;) {
      const faults = this.faults();
      if (faults.stalled.has(this.direction)) break;
      if (faults.blackholed.has(this.direction)) {
        this.dropHeld();
        break;
      }
      const chunk = this.chunks[this.head];
      if (chunk === undefined) {
        this.forwardEnd(faults);
        break;
      }
      const now = nowMs();
      const dueMs = chunk.arrivedMs + faults.delayMs;
      if (dueMs > now) {
        this.schedule(dueMs - now);
        break;
      }
      const granted = this.grant(chunk.bytes.length, faults, now);
      if (granted === 0) break;
      if (!this.write(this.takeFromHead(granted))) break;
    }
    if (this.sourcePaused && this.queuedBytes <= this.maxQueuedBytes / 2) {
      this.sourcePaused = false;
      this.from.resume();
    }
  }

  /** Bytes of the head chunk that may go now; 0 when the throttle says wait (a timer is set). */
  private grant(wanted: number, faults: Faults, now: number): number {
    const bucket = faults.buckets[this.direction];
    if (bucket === null) return wanted;
    const { bytes, waitMs } = bucket.take(wanted, now);
    if (bytes === 0) this.schedule(waitMs);
    return bytes;
  }

  private takeFromHead(bytes: number): Buffer {
    const chunk = this.chunks[this.head]!;
    let out = chunk.bytes;
    if (bytes < chunk.bytes.length) {
      out = chunk.bytes.subarray(0, bytes);
      chunk.bytes = chunk.bytes.subarray(bytes);
    } else {
      this.chunks[this.head] = undefined;
      this.head++;
      // Compact now and then, so the array does not grow with every chunk ever queued.
      if (this.head > 1024 && this.head * 2 > this.chunks.length) {
        this.chunks.splice(0, this.head);
        this.head = 0;
      }
    }
    this.queuedBytes -= out.length;
    return out;
  }

  /** Writes to the destination; false when it must drain first (pumping resumes on 'drain'). */
  private write(bytes: Buffer): boolean {
    if (this.to.destroyed) {
      this.sink.dropped(bytes.length);
      return true;
    }
    this.sink.delivered(this.direction, bytes.length);
    if (this.to.write(bytes)) return true;
    this.waitingDrain = true;
    this.to.once("drain", () => {
      this.waitingDrain = false;
      this.pump();
    });
    return false;
  }

  private forwardEnd(faults: Faults): void {
    if (this.endArrivedMs === null) return;
    const dueMs = this.endArrivedMs + faults.delayMs;
    const now = nowMs();
    if (dueMs > now) return this.schedule(dueMs - now);
    this.endArrivedMs = null;
    if (!this.to.destroyed) this.to.end();
  }

  private dropHeld(): void {
    this.sink.dropped(this.queuedBytes);
    this.chunks.length = 0;
    this.head = 0;
    this.queuedBytes = 0;
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pump();
    }, Math.ceil(ms));
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

