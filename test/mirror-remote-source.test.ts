/**
 * RemotePartitions (src/mirror/remote-source.ts) over a scripted ReplicaReader and a ManualClock:
 * bounds unknown until the first poll answers, listeners told when they become known and when the
 * high watermark advances, a read's older bounds ignored (a trailing follower), a poll's taken
 * (a topic created again), long polls from the cached high watermark, a failed poll retried after a backoff, polling stopped by the last unsubscribe.
 */
import { describe, expect, it } from "vitest";
import { TributaryError } from "../src/errors.ts";
import { RemotePartitions, type ReplicaRead, type ReplicaReader } from "../src/mirror/remote-source.ts";
import { ManualClock } from "../src/runtime/clock.ts";

interface Call {
  readonly offset: number;
  readonly maxBytes: number;
  readonly waitMs: number;
  resolve(r: ReplicaRead): void;
  reject(e: unknown): void;
}

function scripted(): ReplicaReader & { calls: Call[] } {
  const calls: Call[] = [];
  return {
    calls,
    readReplica: (_topic, _partition, offset, maxBytes, waitMs) => new Promise((resolve, reject) => calls.push({ offset, maxBytes, waitMs, resolve, reject })),
  };
}

const answer = (hw: number, batches = new Uint8Array(0)): ReplicaRead => ({ batches, highWatermark: hw, logStartOffset: 0, logEndOffset: hw + 1, sizeBytes: hw * 10 });
const settle = () => new Promise((r) => setTimeout(r, 0));

describe("RemotePartitions", () => {
  it("learns the bounds, long-polls from the cached high watermark, tells listeners of advances only", async () => {
    const reader = scripted();
    const remote = new RemotePartitions(reader, new ManualClock(), 1500);
    const seen: number[] = [];
    expect(remote.bounds("t", 0)).toBeNull();
    const off = remote.onHighWatermark("t", 0, (hw) => seen.push(hw));
    expect(reader.calls).toHaveLength(1);
    expect(reader.calls[0]).toMatchObject({ offset: 0, maxBytes: 0, waitMs: 0 });
    expect(remote.bounds("t", 0)).toBeNull();
    reader.calls[0]!.resolve(answer(0));
    await settle();
    // Known at hw 0: the listener hears it (the link plans a partition it found no bounds for).
    expect(remote.bounds("t", 0)).toEqual({ logStartOffset: 0, highWatermark: 0, logEndOffset: 1, sizeBytes: 0 });
    expect(seen).toEqual([0]);
    expect(reader.calls[1]).toMatchObject({ offset: 0, maxBytes: 0, waitMs: 1500 });
    reader.calls[1]!.resolve(answer(0)); // the wait ended without news
    await settle();
    expect(seen).toEqual([0]);
    reader.calls[2]!.resolve(answer(7));
    await settle();
    expect(seen).toEqual([0, 7]);
    expect(reader.calls[3]).toMatchObject({ offset: 7, waitMs: 1500 });
    // A read goes to the reader without a wait; its bounds count when newer only (a follower that trails answered).
    const stale = remote.read("t", 0, 3, 100);
    const staleCall = reader.calls.find((c) => c.maxBytes === 100)!;
    expect(staleCall).toMatchObject({ offset: 3, waitMs: 0 });
    staleCall.resolve(answer(5, new Uint8Array([1])));
    expect(await stale).toEqual({ batches: new Uint8Array([1]), highWatermark: 5, logStartOffset: 0 });
    expect(remote.bounds("t", 0)!.highWatermark).toBe(7);
    const read = remote.read("t", 0, 3, 200);
    reader.calls.find((c) => c.maxBytes === 200)!.resolve(answer(9, new Uint8Array([1, 2])));
    expect(await read).toEqual({ batches: new Uint8Array([1, 2]), highWatermark: 9, logStartOffset: 0 });
    expect(seen).toEqual([0, 7, 9]);
    // A poll's answer is the truth, lower too (the topic was created again): no listener call, the bounds follow.
    reader.calls[3]!.resolve(answer(2));
    await settle();
    expect(remote.bounds("t", 0)!.highWatermark).toBe(2);
    expect(seen).toEqual([0, 7, 9]);
    off();
    expect(remote.bounds("t", 0)).toBeNull();
    const before = reader.calls.length;
    reader.calls.at(-1)!.resolve(answer(20)); // the poll in flight when unsubscribed: no more polls, no listener
    await settle();
    expect(reader.calls.length).toBe(before);
    expect(seen).toEqual([0, 7, 9]);
  });

  it("retries a failed poll after a backoff, and keeps one loop per partition while any listener is subscribed", async () => {
    const reader = scripted();
    const clock = new ManualClock();
    const remote = new RemotePartitions(reader, clock);
    const a: number[] = [];
    const b: number[] = [];
    const offA = remote.onHighWatermark("t", 1, (hw) => a.push(hw));
    const offB = remote.onHighWatermark("t", 1, (hw) => b.push(hw));
    expect(reader.calls).toHaveLength(1);
    reader.calls[0]!.reject(new TributaryError("PEER_UNAVAILABLE", "down"));
    await settle();
    expect(reader.calls).toHaveLength(1);
    clock.advance(49);
    await settle();
    expect(reader.calls).toHaveLength(1);
    clock.advance(1);
    await settle();
    expect(reader.calls).toHaveLength(2);
    reader.calls[1]!.resolve(answer(3));
    await settle();
    expect([a, b]).toEqual([[3], [3]]);
    offA();
    reader.calls[2]!.resolve(answer(4));
    await settle();
    expect([a, b]).toEqual([[3], [3, 4]]);
    reader.calls[3]!.reject(new TributaryError("NOT_LEADER", "election"));
    await settle();
    offB(); // while backing off: the timer is cancelled, nothing more is asked
    clock.advance(10_000);
    await settle();
    expect(reader.calls).toHaveLength(4);
  });
});
