/**
 * `Transport`'s in-memory twin: a simulated network of peers in one process, deterministic given
 * its `random` and `Clock` (a `ManualClock` in tests): the same seed and the same sends give the
 * same deliveries at the same times. Nothing here sets a timer of its own.
 *
 * Every message (or, with `wholeFrames`, every frame) crossing the network is lost with
 * `lossRate`, delivered after a delay drawn in [minDelayMs, maxDelayMs] (so messages overtake
 * one another: reordering), and delivered a second time, after its own delay, with
 * `duplicateRate`. On top of that: partitions (`partition(a, b, "a->b")` cuts one direction,
 * `"both"` both), `isolate(id)`, and crashes: a crashed peer's transport drops everything both
 * ways, messages in flight to it included, and `restart(id)` gives that id a fresh transport (the
 * old one stays dead). A cut or a crash is checked when a message is sent and again when it
 * arrives, as a real cable cut loses what is on the wire. The knobs can change during a run
 * (`configure`).
 *
 * It keeps the real transport's contract (gateways/peer/transport.ts): `send` never throws or
 * waits; at most `maxInflightFrames` frames per (sender, receiver) are on the wire, more are
 * dropped; frames over `maxFrameBytes` (estimated: see `frameBytes`) are dropped; a frame that
 * cannot go because the link is cut or the peer is down, or is dropped at a bound, reports
 * `unreachable` to the sender (at most once per 100 ms per peer); random loss is silent, as on a
 * real network. Frames before `listen` are dropped. Unlike the real one, frames to one peer may
 * be reordered, which is the point. `call` goes through the same faults both ways: a lost
 * request or reply rejects with PEER_UNAVAILABLE at the deadline; a duplicated request runs the
 * handler twice (the first reply wins); a handler's TributaryError arrives as a new one with the
 * same code and message, as it would off the wire. The handler's promise settles in microtasks, so
 * its reply leaves at the clock's time then: a test awaits between `advance` calls.
 *
 * @example
 *   const clock = new ManualClock();
 *   const net = new MemNetwork({ clock, random: rng(seed), lossRate: 0.05, minDelayMs: 1, maxDelayMs: 20 });
 *   const t1 = net.transport(1), t2 = net.transport(2);
 *   t2.listen(handlers);
 *   t1.send(2, frame);
 *   clock.advance(20); // delivered (or lost)
 */
import { isTributaryError, TributaryError } from "../errors.ts";
import { entryBytes } from "../raft/index.ts";
import type { Clock } from "../runtime/clock.ts";
import { DEFAULT_TRANSPORT_LIMITS, type GroupMessage, type NodeId, type Transport, type TransportHandlers, type TransportLimits } from "./types.ts";
import { UnreachableNotices } from "./unreachable.ts";

export interface MemNetworkFaults {
  /** Chance in [0, 1] that a message (or frame), a call or a reply is lost. */
  readonly lossRate: number;
  /** Chance in [0, 1] that it is delivered twice. */
  readonly duplicateRate: number;
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  /** Deliver a frame's messages together, with one delay, instead of each on its own. */
  readonly wholeFrames: boolean;
}

export interface MemNetworkOptions extends Partial<MemNetworkFaults> {
  readonly clock: Clock;
  /** In [0, 1), e.g. rng(seed) from test/support/random.ts. */
  readonly random: () => number;
  readonly limits?: TransportLimits;
  /** Sees every delivery and every drop, in order: a trace for tests and for replaying a seed. */
  readonly trace?: (event: NetEvent) => void;
}

export type NetOutcome = "delivered" | "lost" | "partitioned" | "down" | "inflight" | "size" | "not_listening";

export interface NetEvent {
  readonly atMs: number;
  readonly kind: "frame" | "call" | "reply";
  readonly from: NodeId;
  readonly to: NodeId;
  readonly outcome: NetOutcome;
  /** Frames: how many messages this delivery carried. */
  readonly messages?: number;
}

const DEFAULT_FAULTS: MemNetworkFaults = { lossRate: 0, duplicateRate: 0, minDelayMs: 1, maxDelayMs: 1, wholeFrames: false };

/** A message's bytes on the wire, estimated: its fixed fields, group name, entries and snapshot. */
export function frameBytes(frame: readonly GroupMessage[]): number {
  let n = 0;
  for (const { group, message } of frame) {
    n += 64 + group.length;
    for (const e of message.entries) n += entryBytes(e);
    n += message.snapshot ? message.snapshot.data.byteLength + 8 * message.snapshot.meta.confState.voters.length : 0;
  }
  return n;
}

function checkFaults(f: MemNetworkFaults): MemNetworkFaults {
  const rate = (v: number) => v >= 0 && v <= 1;
  if (!rate(f.lossRate) || !rate(f.duplicateRate)) throw new TributaryError("INVALID_CONFIG", `lossRate and duplicateRate must be in [0, 1], not ${f.lossRate} and ${f.duplicateRate}`);
  if (!(f.minDelayMs >= 0 && f.maxDelayMs >= f.minDelayMs)) throw new TributaryError("INVALID_CONFIG", `need 0 <= minDelayMs <= maxDelayMs, not ${f.minDelayMs} and ${f.maxDelayMs}`);
  return f;
}

export class MemNetwork {
  readonly limits: TransportLimits;
  private faults: MemNetworkFaults;
  private readonly nodes = new Map<NodeId, MemTransport>();
  private readonly crashed = new Set<NodeId>();
  private readonly isolated = new Set<NodeId>();
  /** Cut directions, as "from>to". */
  private readonly cuts = new Set<string>();
  /** Frames on the wire per "from>to", for maxInflightFrames. */
  private readonly inflight = new Map<string, number>();

  constructor(private readonly options: MemNetworkOptions) {
    this.limits = options.limits ?? DEFAULT_TRANSPORT_LIMITS;
    this.faults = checkFaults({ ...DEFAULT_FAULTS, ...stripUndefined(options) });
  }

  /** The transport of peer `id`; one per id (after `crash(id)`, `restart(id)` makes the next). */
  transport(id: NodeId): MemTransport {
    if (this.nodes.has(id)) throw new Error(`invariant broken: peer ${id} already has a transport (crash and restart it for a new one)`);
    return this.make(id);
  }

  /** Changes fault knobs from now on; messages already on the wire keep their fate. */
  configure(faults: Partial<MemNetworkFaults>): void {
    this.faults = checkFaults({ ...this.faults, ...stripUndefined(faults) });
  }

  /** Cuts a→b (and b→a with "both"). */
  partition(a: NodeId, b: NodeId, direction: "both" | "a->b"): void {
    this.cuts.add(`${a}>${b}`);
    if (direction === "both") this.cuts.add(`${b}>${a}`);
  }

  /** Cuts `id` off from every peer, both ways, until `heal`. */
  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  /** Removes every partition and isolation (crashed peers stay down). */
  heal(): void {
    this.cuts.clear();
    this.isolated.clear();
  }

  /** The peer's process dies: its transport drops everything both ways from now on. */
  crash(id: NodeId): void {
    this.crashed.add(id);
    this.nodes.get(id)?.kill();
  }

  /** A fresh transport for a crashed peer (listen on it again). */
  restart(id: NodeId): MemTransport {
    if (!this.crashed.delete(id)) throw new Error(`invariant broken: peer ${id} is not crashed`);
    return this.make(id);
  }

  /** @internal MemTransport.send */
  sendFrame(sender: MemTransport, to: NodeId, frame: readonly GroupMessage[]): void {
    const from = sender.id;
    const key = `${from}>${to}`;
    const refused = this.blocked(sender, to) ?? (frameBytes(frame) > this.limits.maxFrameBytes ? "size" : (this.inflight.get(key) ?? 0) >= this.limits.maxInflightFrames ? "inflight" : null);
    if (refused) return this.dropAtSender(sender, to, "frame", refused, frame.length);
    const pieces = this.faults.wholeFrames ? [frame] : frame.map((m) => [m]);
    let pending = pieces.length;
    const settled = () => {
      if (--pending === 0) this.inflight.set(key, (this.inflight.get(key) ?? 1) - 1);
    };
    if (pending === 0) return;
    this.inflight.set(key, (this.inflight.get(key) ?? 0) + 1);
    const target = this.nodes.get(to)!;
    for (const piece of pieces) {
      this.carry(sender, target, "frame", piece.length, settled, () => {
        const handlers = target.handlers();
        if (!handlers) return "not_listening";
        handlers.frame(from, piece);
        return "delivered";
      });
    }
  }

  /** @internal MemTransport.call */
  sendCall(caller: MemTransport, to: NodeId, method: string, body: Uint8Array, deadlineMs: number): Promise<Uint8Array> {
    const clock = this.options.clock;
    if (deadlineMs <= clock.now()) return Promise.reject(new TributaryError("PEER_UNAVAILABLE", `the deadline of ${method} to peer ${to} has passed`));
    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        cancel();
        fn();
      };
      const cancel = clock.setTimer(deadlineMs - clock.now(), () =>
        settle(() => reject(new TributaryError("REQUEST_TIMED_OUT", `peer ${to} did not answer ${method} before the deadline; it may have run`))),
      );
      const refused = this.blocked(caller, to);
      if (refused) return this.dropAtSender(caller, to, "call", refused);
      const target = this.nodes.get(to)!;
      this.carry(caller, target, "call", undefined, () => {}, () => {
        void this.answer(target, caller.id, method, body).then((reply) => {
          if (this.blocked(target, caller.id)) return this.trace("reply", to, caller.id, "partitioned");
          this.carry(target, caller, "reply", undefined, () => {}, () => {
            settle(() => (reply.ok ? resolve(reply.body) : reject(reply.error)));
            return "delivered";
          });
        });
        return "delivered";
      });
    });
  }

  private async answer(target: MemTransport, from: NodeId, method: string, body: Uint8Array): Promise<{ ok: true; body: Uint8Array } | { ok: false; error: Error }> {
    const handlers = target.handlers();
    if (!handlers) return { ok: false, error: new TributaryError("NOT_READY", `peer ${target.id} is not listening yet`) };
    try {
      return { ok: true, body: await handlers.call(from, method, body) };
    } catch (e) {
      // Rebuilt, as off the wire: the caller never shares an object with the callee.
      if (isTributaryError(e)) return { ok: false, error: new TributaryError(e.code, e.message) };
      return { ok: false, error: new Error(`peer ${target.id} failed ${method}: ${(e as Error).message}`) };
    }
  }

  /** Why nothing can go from `sender` to `to` now, or null. */
  private blocked(sender: MemTransport, to: NodeId): NetOutcome | null {
    const target = this.nodes.get(to);
    if (sender.isDead() || !target || target.isDead() || this.crashed.has(to)) return "down";
    if (this.isolated.has(sender.id) || this.isolated.has(to) || this.cuts.has(`${sender.id}>${to}`)) return "partitioned";
    return null;
  }

  /**
   * Puts one message on the wire: lost, or delivered after a delay (and maybe again). `arrive`
   * runs at delivery unless the link was cut or a side died meanwhile; `done` runs once when
   * the original copy's fate is known.
   */
  private carry(sender: MemTransport, target: MemTransport, kind: NetEvent["kind"], messages: number | undefined, done: () => void, arrive: () => NetOutcome): void {
    const f = this.faults;
    const random = this.options.random;
    const from = sender.id;
    if (random() < f.lossRate) {
      this.trace(kind, from, target.id, "lost", messages);
      return done();
    }
    const copies = random() < f.duplicateRate ? 2 : 1;
    for (let copy = 0; copy < copies; copy++) {
      // Whole milliseconds: a ManualClock moved by fractions would hand the broker fractional times.
      const delayMs = Math.round(f.minDelayMs + random() * (f.maxDelayMs - f.minDelayMs));
      this.options.clock.setTimer(delayMs, () => {
        // A later copy meets the same checks; a target restarted meanwhile is another process.
        const refused = this.nodes.get(target.id) === target ? this.blocked(sender, target.id) : "down";
        if (refused) {
          this.trace(kind, from, target.id, refused, messages);
          if (kind === "frame") this.reportUnreachable(sender, target.id);
        } else {
          this.trace(kind, from, target.id, arrive(), messages);
        }
        if (copy === 0) done();
      });
    }
  }

  private dropAtSender(sender: MemTransport, to: NodeId, kind: NetEvent["kind"], outcome: NetOutcome, messages?: number): void {
    this.trace(kind, sender.id, to, outcome, messages);
    this.reportUnreachable(sender, to);
  }

  private reportUnreachable(sender: MemTransport, to: NodeId): void {
    if (!sender.isDead()) sender.notices.report(to, sender.handlers());
  }

  private trace(kind: NetEvent["kind"], from: NodeId, to: NodeId, outcome: NetOutcome, messages?: number): void {
    this.options.trace?.({ atMs: this.options.clock.now(), kind, from, to, outcome, ...(messages === undefined ? {} : { messages }) });
  }

  private make(id: NodeId): MemTransport {
    const t = new MemTransport(this, id, new UnreachableNotices(this.options.clock));
    this.nodes.set(id, t);
    return t;
  }
}

/** One peer's end of a MemNetwork. */
export class MemTransport implements Transport {
  private listening: TransportHandlers | undefined;
  private dead = false;

  /** @internal made by MemNetwork */
  constructor(
    private readonly network: MemNetwork,
    readonly id: NodeId,
    /** @internal */ readonly notices: UnreachableNotices,
  ) {}

  send(to: NodeId, frame: readonly GroupMessage[]): void {
    this.network.sendFrame(this, to, frame);
  }

  call(to: NodeId, method: string, body: Uint8Array, deadlineMs: number): Promise<Uint8Array> {
    if (this.dead) return Promise.reject(new TributaryError("NOT_READY", "the peer transport is closed"));
    return this.network.sendCall(this, to, method, body, deadlineMs);
  }

  /** The simulated network reaches every peer it holds: nothing to do. */
  setPeers(): void {}

  listen(handlers: TransportHandlers): void {
    if (this.listening) throw new Error("invariant broken: listen is called once");
    this.listening = handlers;
  }

  async close(): Promise<void> {
    this.dead = true;
  }

  /** @internal */
  handlers(): TransportHandlers | undefined {
    return this.dead ? undefined : this.listening;
  }

  /** @internal */
  isDead(): boolean {
    return this.dead;
  }

  /** @internal the network crashed this peer */
  kill(): void {
    this.dead = true;
  }
}

function stripUndefined<T extends object>(o: T): Partial<MemNetworkFaults> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(DEFAULT_FAULTS)) {
    const v = (o as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = v;
  }
  return out as Partial<MemNetworkFaults>;
}
