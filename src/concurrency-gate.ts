/**
 * A counting gate for work that holds a request open (long polls, live tails, SSE streams), shared
 * by every gateway. It never queues: past `max` the caller is refused with OVERLOADED at once
 * (HTTP 503, gRPC UNAVAILABLE), so waiting requests are bounded.
 *
 * @example
 *   const release = gate.acquire(); // throws OVERLOADED when full
 *   try { await longPoll(); } finally { release(); }
 */
import { TributaryError } from "./errors.ts";

export class ConcurrencyGate {
  private active = 0;

  constructor(
    readonly max: number,
    private readonly what: string,
    private readonly onChange: (active: number) => void = () => {},
  ) {}

  get size(): number {
    return this.active;
  }

  /** A release function (safe to call twice), or OVERLOADED when the gate is full. */
  acquire(): () => void {
    if (this.active >= this.max) {
      throw new TributaryError("OVERLOADED", `too many concurrent ${this.what} (limit ${this.max}); retry later`);
    }
    this.active++;
    this.onChange(this.active);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.onChange(this.active);
    };
  }
}
