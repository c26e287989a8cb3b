/**
 * The simulated network (src/cluster/mem-transport.ts) on a ManualClock: the same seed gives the
 * same delivery trace (and another seed another); random delays reorder messages unless frames
 * are kept whole; partitions one way and both ways, isolation and heal; loss and duplication;
 * crash (in-flight messages to the dead peer lost) and restart (a fresh transport, deaf until it
 * listens); the in-flight and size bounds; unreachable at most once per 100 ms; calls through the
 * same faults, rejecting with REQUEST_TIMED_OUT exactly at their deadline.
 */
import { describe, expect, it } from "vitest";
import { MemNetwork, type MemNetworkOptions, type MemTransport, type NetEvent } from "../src/cluster/mem-transport.ts";
import type { GroupMessage, NodeId, TransportHandlers } from "../src/cluster/types.ts";
import { TributaryError } from "../src/errors.ts";
import { MessageType, type Message } from "../src/raft/index.ts";
import { ManualClock } from "../src/runtime/clock.ts";
import { codeOf } from "./support/errors.ts";
import { rng } from "./support/random.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function msg(from: NodeId, to: NodeId, index: number): Message {
  return { type: MessageType.App, from, to, term: 1, logTerm: 1, index, entries: [], commit: 0, reject: false, rejectHint: 0 };
}
const frame = (from: NodeId, to: NodeId, ...indexes: number[]): GroupMessage[] => indexes.map((i) => ({ group: "g", message: msg(from, to, i) }));

interface Heard {
  atMs: number;
  from: NodeId;
  indexes: number[];
}

class Peer implements TransportHandlers {
  heard: Heard[] = [];
  unreachables: { atMs: number; peer: NodeId }[] = [];
  calls = 0;
  constructor(
    readonly t: MemTransport,
    private readonly clock: ManualClock,
  ) {
    t.listen(this);
  }
  frame(from: NodeId, f: readonly GroupMessage[]): void {
    this.heard.push({ atMs: this.clock.now(), from, indexes: f.map((g) => g.message.index) });
  }
  async call(from: NodeId, method: string, body: Uint8Array): Promise<Uint8Array> {
    this.calls++;
    if (method === "refuse") throw new TributaryError("NOT_LEADER", "ask peer 3");
    return enc.encode(`${from}:${method}:${dec.decode(body)}`);
  }
  unreachable(peer: NodeId): void {
    this.unreachables.push({ atMs: this.clock.now(), peer });
  }
  indexes(): number[] {
    return this.heard.flatMap((h) => h.indexes);
  }
}

/** Lets handler promises and unreachable notices (microtasks) run. */
const flush = () => new Promise<void>((r) => setImmediate(r));

function net(options: Partial<MemNetworkOptions> = {}, ids: NodeId[] = [1, 2, 3]) {
  const clock = new ManualClock(0);
  const events: NetEvent[] = [];
  const network = new MemNetwork({ clock, random: rng(1), trace: (e) => events.push(e), ...options });
  const peers = new Map(ids.map((id) => [id, new Peer(network.transport(id), clock)]));
  return { clock, network, events, peer: (id: NodeId) => peers.get(id)!, peers };
}

/** A run of three peers talking over a lossy, duplicating, reordering network; its whole trace. */
async function scenario(seed: number): Promise<string[]> {
  const { clock, network, events, peers } = net({ random: rng(seed), lossRate: 0.1, duplicateRate: 0.1, minDelayMs: 1, maxDelayMs: 30 });
  const heard: string[] = [];
  const replies: string[] = [];
  for (let step = 0; step < 100; step++) {
    for (const [id, p] of peers) for (const to of peers.keys()) if (to !== id) p.t.send(to, frame(id, to, step, step + 1000));
    if (step % 10 === 0) {
      p1Call(peers.get(1)!.t, step).then(
        (r) => replies.push(`${clock.now()} ${r}`),
        (e: TributaryError) => replies.push(`${clock.now()} ${e.code}`),
      );
    }
    if (step === 40) network.partition(1, 2, "a->b");
    if (step === 60) network.crash(3);
    if (step === 70) network.heal();
    clock.advance(5);
    await flush();
  }
  clock.advance(1000);
  await flush();
  for (const [id, p] of peers) for (const h of p.heard) heard.push(`${id}<-${h.from} @${h.atMs} ${h.indexes.join(",")}`);
  return [...events.map((e) => JSON.stringify(e)), ...heard, ...replies];
}

const p1Call = (t: MemTransport, step: number) => t.call(2, "echo", enc.encode(String(step)), 1_000_000).then((b) => dec.decode(b));

describe("MemNetwork determinism", () => {
  it("the same seed gives the same trace; another seed another", async () => {
    const a = await scenario(42);
    expect(a.length).toBeGreaterThan(1000);
    expect(a.some((l) => l.includes('"lost"'))).toBe(true);
    expect(await scenario(42)).toEqual(a);
    expect(await scenario(43)).not.toEqual(a);
  });

  it("random delays reorder a frame's messages; wholeFrames keeps them together", async () => {
    const loose = net({ minDelayMs: 1, maxDelayMs: 50 });
    loose.peer(1).t.send(2, frame(1, 2, ...Array(20).keys()));
    loose.clock.advance(50);
    const order = loose.peer(2).indexes();
    expect([...order].sort((x, y) => x - y)).toEqual([...Array(20).keys()]);
    expect(order).not.toEqual([...Array(20).keys()]);
    expect(loose.peer(2).heard.every((h) => h.indexes.length === 1)).toBe(true);

    const whole = net({ minDelayMs: 1, maxDelayMs: 50, wholeFrames: true });
    whole.peer(1).t.send(2, frame(1, 2, 0, 1, 2));
    whole.clock.advance(50);
    expect(whole.peer(2).heard.map((h) => h.indexes)).toEqual([[0, 1, 2]]);
  });

  it("delivers within [minDelayMs, maxDelayMs]", () => {
    const { clock, peer } = net({ minDelayMs: 10, maxDelayMs: 20, limits: { maxInflightFrames: 50, maxFrameBytes: 1 << 20 } });
    for (let i = 0; i < 50; i++) peer(1).t.send(2, frame(1, 2, i));
    clock.advance(9);
    expect(peer(2).heard).toHaveLength(0);
    clock.advance(11);
    expect(peer(2).heard).toHaveLength(50);
  });
});

describe("MemNetwork faults", () => {
  it("a one-way partition cuts one direction only, reports unreachable to the sender, and heals", async () => {
    const { clock, network, peer } = net();
    network.partition(1, 2, "a->b");
    peer(1).t.send(2, frame(1, 2, 1));
    peer(2).t.send(1, frame(2, 1, 2));
    clock.advance(5);
    await flush();
    expect(peer(2).heard).toHaveLength(0);
    expect(peer(1).indexes()).toEqual([2]);
    expect(peer(1).unreachables.map((u) => u.peer)).toEqual([2]);
    network.heal();
    peer(1).t.send(2, frame(1, 2, 3));
    clock.advance(5);
    expect(peer(2).indexes()).toEqual([3]);
  });

  it("a partition both ways, and isolation, cut both directions (in-flight messages too)", () => {
    const { clock, network, peer } = net({ minDelayMs: 10, maxDelayMs: 10 });
    peer(1).t.send(2, frame(1, 2, 0)); // on the wire when the cut comes
    network.partition(1, 2, "both");
    peer(2).t.send(1, frame(2, 1, 1));
    peer(1).t.send(3, frame(1, 3, 2));
    clock.advance(10);
    expect(peer(2).heard).toHaveLength(0);
    expect(peer(1).heard).toHaveLength(0);
    expect(peer(3).indexes()).toEqual([2]);
    network.heal();
    network.isolate(3);
    peer(1).t.send(3, frame(1, 3, 4));
    peer(3).t.send(2, frame(3, 2, 5));
    peer(1).t.send(2, frame(1, 2, 6));
    clock.advance(10);
    expect(peer(3).indexes()).toEqual([2]);
    expect(peer(2).indexes()).toEqual([6]);
  });

  it("duplication delivers twice, loss delivers nothing, and the knobs change mid-run", () => {
    const { clock, network, peer } = net({ duplicateRate: 1 });
    peer(1).t.send(2, frame(1, 2, 7));
    clock.advance(5);
    expect(peer(2).indexes()).toEqual([7, 7]);
    network.configure({ duplicateRate: 0, lossRate: 1 });
    peer(1).t.send(2, frame(1, 2, 8));
    clock.advance(5);
    expect(peer(2).indexes()).toEqual([7, 7]);
    network.configure({ lossRate: 0 });
    peer(1).t.send(2, frame(1, 2, 9));
    clock.advance(5);
    expect(peer(2).indexes()).toEqual([7, 7, 9]);
    expect(() => network.configure({ lossRate: 2 })).toThrow(TributaryError);
  });

  it("crash drops both ways and what was in flight; restart gives a fresh transport that hears after listen", async () => {
    const { clock, network, events, peer } = net({ minDelayMs: 10, maxDelayMs: 10 });
    const old = peer(2);
    peer(1).t.send(2, frame(1, 2, 0)); // in flight when 2 dies
    network.crash(2);
    old.t.send(1, frame(2, 1, 1));
    clock.advance(10);
    expect(old.heard).toHaveLength(0);
    expect(peer(1).heard).toHaveLength(0);
    expect(events.filter((e) => e.outcome === "down")).toHaveLength(2);

    const fresh = network.restart(2);
    peer(1).t.send(2, frame(1, 2, 2)); // before listen: dropped
    clock.advance(10);
    expect(events.at(-1)).toMatchObject({ from: 1, to: 2, outcome: "not_listening" });
    const p2 = new Peer(fresh, clock);
    peer(1).t.send(2, frame(1, 2, 3));
    p2.t.send(1, frame(2, 1, 4));
    old.t.send(1, frame(2, 1, 5)); // the dead incarnation stays dead
    clock.advance(10);
    expect(p2.indexes()).toEqual([3]);
    expect(peer(1).indexes()).toEqual([4]);
    expect(old.heard).toHaveLength(0);
    expect(() => network.transport(2)).toThrow(/already has a transport/);
    await flush();
  });

  it("bounds frames in flight per peer and frame size; unreachable at most once per 100 ms", async () => {
    const { clock, network, events, peer } = net({ minDelayMs: 10, maxDelayMs: 10, limits: { maxInflightFrames: 2, maxFrameBytes: 1000 } });
    for (let i = 0; i < 5; i++) peer(1).t.send(2, frame(1, 2, i));
    peer(1).t.send(2, [{ group: "g", message: { ...msg(1, 2, 9), entries: [{ term: 1, index: 1, type: 0, data: new Uint8Array(2000) }] } }]);
    expect(events.map((e) => e.outcome)).toEqual(["inflight", "inflight", "inflight", "size"]);
    await flush();
    expect(peer(1).unreachables).toEqual([{ atMs: 0, peer: 2 }]);
    clock.advance(10);
    expect(peer(2).indexes()).toEqual([0, 1]);
    peer(1).t.send(2, frame(1, 2, 5)); // the window has room again
    clock.advance(10);
    expect(peer(2).indexes()).toEqual([0, 1, 5]);

    network.crash(3);
    for (let t = 0; t < 250; t += 10) {
      peer(1).t.send(3, frame(1, 3, t));
      await flush();
      clock.advance(10);
    }
    expect(peer(1).unreachables.filter((u) => u.peer === 3).map((u) => u.atMs)).toEqual([20, 120, 220]);
  });
});

describe("MemNetwork calls", () => {
  it("answers; a TributaryError arrives with its code and message", async () => {
    const { clock, peer } = net({ minDelayMs: 5, maxDelayMs: 5 });
    const reply = peer(1).t.call(2, "echo", enc.encode("hi"), clock.now() + 100);
    const refused = peer(1).t.call(2, "refuse", new Uint8Array(), clock.now() + 100).catch((e: unknown) => e);
    clock.advance(5);
    await flush();
    clock.advance(5);
    expect(dec.decode(await reply)).toBe("1:echo:hi");
    const e = await refused;
    expect(e).toBeInstanceOf(TributaryError);
    expect(e).toMatchObject({ code: "NOT_LEADER", message: "ask peer 3" });
  });

  it("a lost request, a lost reply or a partition rejects with REQUEST_TIMED_OUT (it may have run) at the deadline", async () => {
    const { clock, network, peer } = net({ lossRate: 1 });
    const at = (p: Promise<unknown>) => p.then(() => NaN, (e: TributaryError) => (e.code === "REQUEST_TIMED_OUT" ? clock.now() : NaN));
    const lost = at(peer(1).t.call(2, "echo", new Uint8Array(), 250));
    clock.advance(249);
    await flush();
    clock.advance(1);
    expect(await lost).toBe(250);
    expect(peer(2).calls).toBe(0);

    network.configure({ lossRate: 0 });
    network.partition(2, 1, "a->b"); // the request arrives, the reply cannot come back
    const noReply = at(peer(1).t.call(2, "echo", new Uint8Array(), 500));
    clock.advance(5);
    await flush();
    expect(peer(2).calls).toBe(1);
    clock.advance(245);
    expect(await noReply).toBe(500);
    network.crash(2);
    expect(await codeOf(peer(1).t.call(2, "echo", new Uint8Array(), clock.now() - 1))).toBe("PEER_UNAVAILABLE");
  });

  it("a duplicated request runs the handler twice; the first reply wins", async () => {
    const { clock, peer } = net({ duplicateRate: 1, minDelayMs: 1, maxDelayMs: 3 });
    const reply = peer(1).t.call(2, "echo", enc.encode("x"), 100);
    clock.advance(3);
    await flush();
    clock.advance(10);
    expect(dec.decode(await reply)).toBe("1:echo:x");
    expect(peer(2).calls).toBe(2);
  });
});
