/**
 * Rate-limits `TransportHandlers.unreachable`: a dead peer breaks a stream or drops a frame on
 * every send (many per tick), and the driver needs to hear it once in a while, not per frame.
 * Shared by both transports (gateways/peer/transport.ts and mem-transport.ts) so they report alike.
 * The notice is queued as a microtask, never made inside `send`, so the driver is not re-entered
 * in the middle of handing out its Ready.
 */
import type { Clock } from "../runtime/clock.ts";
import type { NodeId, TransportHandlers } from "./types.ts";

/** At most one `unreachable(peer)` per peer in this many milliseconds. */
export const UNREACHABLE_INTERVAL_MS = 100;

export class UnreachableNotices {
  private readonly lastMs = new Map<NodeId, number>();

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs = UNREACHABLE_INTERVAL_MS,
  ) {}

  /** Calls `handlers.unreachable(peer)` unless it was called for `peer` less than the interval ago. */
  report(peer: NodeId, handlers: TransportHandlers | undefined): void {
    if (!handlers) return;
    const now = this.clock.now();
    const last = this.lastMs.get(peer);
    if (last !== undefined && now - last < this.intervalMs) return;
    this.lastMs.set(peer, now);
    queueMicrotask(() => handlers.unreachable(peer));
  }
}
