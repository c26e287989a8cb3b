/**
 * Gives the V8 heap back when the broker goes idle (Deno). Why: V8 grows its young generation
 * (and the old one, with start-up garbage: module compilation, recovery windows, topic creation)
 * while the broker starts and works, and shrinks it only in a memory-reducing full GC, which
 * Deno never asks for (Node and Chrome drive V8's memory reducer; Deno's idle broker simply
 * allocates nothing and so collects nothing). Measured on Deno 2.9.6 with the broker's modules
 * loaded: the young generation held 7.5 MB of RSS with 0.4 MB in use; one such GC took RSS from
 * 73 to 66 MB.
 *
 * `IdleHeapCompactor` polls the heap's cumulative allocation counter every `checkMs`: when less
 * than `idleBytes` was allocated since the last check (nothing is going on), and at least
 * `minGarbageBytes` since the last compaction (there is something to give back), it compacts
 * once. Under load it never runs (the hot path does not pay), and an idle broker compacts once and
 * then stays quiet. The collection pauses the process (tens to a few hundred ms on a busy
 * 2-core machine), which is why it waits for idleness.
 *
 * `v8HeapCompaction` gets the hooks from the runtime: V8's `gc` (exposed at run time through
 * `--expose-gc`, taken from a fresh vm context, which is where V8 installs it) with a major,
 * synchronous collection, and `total_allocated_bytes` from node:v8. Null where that is missing:
 * Bun (JavaScriptCore; its `Bun.gc(true)` gave back under 1 MB, so Bun runs without) and Node
 * (no allocation counter).
 *
 * @example
 *   const hooks = v8HeapCompaction();
 *   const compactor = hooks && new IdleHeapCompactor(systemClock, hooks);
 *   compactor?.start(); ... compactor?.stop();
 */
import v8 from "node:v8";
import vm from "node:vm";
import type { Clock } from "./clock.ts";

export interface HeapHooks {
  /** Bytes allocated on the heap since the process started (monotonic). */
  allocatedBytes(): number;
  /** A full collection that also shrinks the heap's spaces. */
  compact(): void;
}

export interface IdleCompactorLimits {
  checkMs: number;
  /** Allocated between two checks below this: idle. */
  idleBytes: number;
  /** Allocated since the last compaction at least this: worth a compaction. */
  minGarbageBytes: number;
}

// 32 MiB of garbage between compactions: a broker with a trickle of traffic (idle by the 512 KiB/s test)
// pauses for one full collection every minute or two at most, not every few seconds.
export const DEFAULT_IDLE_COMPACTOR_LIMITS: IdleCompactorLimits = { checkMs: 1_000, idleBytes: 512 * 1024, minGarbageBytes: 32 * 1024 * 1024 };

export class IdleHeapCompactor {
  private lastBytes: number;
  private compactedAtBytes = 0;
  private cancel: (() => void) | null = null;
  /** Compactions so far (for the log and tests). */
  compactions = 0;

  constructor(
    private readonly clock: Clock,
    private readonly hooks: HeapHooks,
    private readonly limits: IdleCompactorLimits = DEFAULT_IDLE_COMPACTOR_LIMITS,
  ) {
    this.lastBytes = hooks.allocatedBytes();
  }

  start(): void {
    if (this.cancel) return;
    this.cancel = this.clock.setTimer(this.limits.checkMs, () => this.check());
  }

  stop(): void {
    this.cancel?.();
    this.cancel = null;
  }

  private check(): void {
    const now = this.hooks.allocatedBytes();
    const idle = now - this.lastBytes < this.limits.idleBytes;
    if (idle && now - this.compactedAtBytes >= this.limits.minGarbageBytes) {
      this.hooks.compact();
      this.compactions++;
      this.compactedAtBytes = this.hooks.allocatedBytes();
    }
    this.lastBytes = this.hooks.allocatedBytes();
    this.cancel = this.clock.setTimer(this.limits.checkMs, () => this.check());
  }
}

/** The hooks on a V8 runtime that has them (Deno); null elsewhere (see the file comment). */
export function v8HeapCompaction(): HeapHooks | null {
  if (typeof (globalThis as { Bun?: unknown }).Bun !== "undefined") return null;
  const allocated = (): number => Number((v8.getHeapStatistics() as { total_allocated_bytes?: number }).total_allocated_bytes ?? NaN);
  if (!Number.isFinite(allocated())) return null;
  let gc: unknown;
  try {
    v8.setFlagsFromString("--expose-gc");
    gc = vm.runInNewContext("typeof gc === 'function' ? gc : undefined");
  } catch {
    return null;
  }
  if (typeof gc !== "function") return null;
  const collect = gc as (options: { type: string; execution: string }) => void;
  return { allocatedBytes: allocated, compact: () => collect({ type: "major", execution: "sync" }) };
}
