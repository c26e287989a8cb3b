/**
 * The clock of the cluster simulation (test/support/cluster-sim.ts): a manual clock, like
 * `ManualClock` (src/runtime/clock.ts), that can also say when its next timer is due, so a
 * simulation steps timer by timer and lets the event loop drain after each.
 */
import type { Clock } from "../../src/runtime/clock.ts";

/**
 * The simulation's clock: a `ManualClock` that can also say when its next timer is due, so the
 * simulation steps timer by timer, with a heap instead of a sorted list (a run holds thousands of
 * timers: every message in flight and every call's deadline). Timers may be due at fractional
 * milliseconds (the simulated network draws real-valued delays), but `now()` answers whole
 * milliseconds, as `Date.now()` does: the broker stores it in records that must be integers.
 */
export class SimClock implements Clock {
  private current: number;
  private heap: { at: number; seq: number; fn: (() => void) | null }[] = [];
  private seq = 0;

  constructor(startMs = 1_700_000_000_000) {
    this.current = startMs;
  }

  now(): number {
    return Math.floor(this.current);
  }

  setTimer(ms: number, fn: () => void): () => void {
    const t: { at: number; seq: number; fn: (() => void) | null } = { at: this.current + Math.max(0, ms), seq: this.seq++, fn };
    heapPush(this.heap, t);
    return () => {
      t.fn = null;
    };
  }

  /** When the next pending timer is due, or null when none is. */
  nextTimerAt(): number | null {
    while (this.heap.length > 0 && this.heap[0]!.fn === null) heapPop(this.heap);
    return this.heap[0]?.at ?? null;
  }

  /** Fire every timer due up to `target` in time order (timers they set included); then stand at `target`. */
  advanceTo(target: number): void {
    for (;;) {
      const at = this.nextTimerAt();
      if (at === null || at > target) break;
      const t = this.heap[0]!;
      heapPop(this.heap);
      this.current = Math.max(this.current, t.at);
      const fn = t.fn!;
      t.fn = null;
      fn();
    }
    this.current = Math.max(this.current, target);
  }

  advance(ms: number): void {
    this.advanceTo(this.current + ms);
  }

  /** The exact time, fractions included. */
  get exactNow(): number {
    return this.current;
  }
}

type HeapItem = { at: number; seq: number };
const before = (a: HeapItem, b: HeapItem) => a.at < b.at || (a.at === b.at && a.seq < b.seq);

function heapPush<T extends HeapItem>(h: T[], x: T): void {
  h.push(x);
  let i = h.length - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (!before(h[i]!, h[p]!)) break;
    [h[i], h[p]] = [h[p]!, h[i]!];
    i = p;
  }
}

function heapPop<T extends HeapItem>(h: T[]): void {
  const last = h.pop()!;
  if (h.length === 0) return;
  h[0] = last;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let m = i;
    if (l < h.length && before(h[l]!, h[m]!)) m = l;
    if (r < h.length && before(h[r]!, h[m]!)) m = r;
    if (m === i) return;
    [h[i], h[m]] = [h[m]!, h[i]!];
    i = m;
  }
}

/** One macrotask: every microtask queued before it (and every one those queue) has run. */
export function macrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
