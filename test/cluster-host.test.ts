/**
 * RaftHost's tick timer against a clock whose timers all fire late, as on a busy event loop (a
 * 2-core box running several brokers): the ticks stay on their schedule, so an election timeout
 * of 10 ticks of 100 ms is about 1 s, not 10 times (100 ms + the lateness).
 */
import { describe, expect, it } from "vitest";
import { RaftHost } from "../src/cluster/host.ts";
import type { GroupStore } from "../src/cluster/group.ts";
import type { Transport } from "../src/cluster/types.ts";
import { silentLogger } from "../src/logger.ts";
import { MemoryStorage } from "../src/raft/storage.ts";
import { ManualClock, type Clock } from "../src/runtime/clock.ts";

/** Every timer fires `lateMs` after it was due. */
class LateClock implements Clock {
  constructor(
    private readonly base: ManualClock,
    private readonly lateMs: number,
  ) {}
  now(): number {
    return this.base.now();
  }
  setTimer(ms: number, fn: () => void): () => void {
    return this.base.setTimer(ms + this.lateMs, fn);
  }
}

/** Nothing leaves and nothing arrives: the group hears no leader and, in time, campaigns. */
const silentTransport: Transport = {
  send: () => {},
  call: () => Promise.reject(new Error("no calls here")),
  listen: () => {},
  setPeers: () => {},
  close: async () => {},
};

function memoryStore(): GroupStore {
  const mem = new MemoryStorage();
  return Object.assign(mem, {
    async persist(entries: Parameters<GroupStore["persist"]>[0], hardState: Parameters<GroupStore["persist"]>[1]) {
      mem.append(entries);
      if (hardState) mem.setHardState(hardState);
    },
  });
}

describe("RaftHost.flushNow", () => {
  it("sends what the groups queued this turn at once, instead of at the end of the turn", async () => {
    const clock = new ManualClock();
    const sent: number[] = [];
    const host = new RaftHost({
      self: 1,
      transport: { ...silentTransport, send: (to) => void sent.push(to) },
      clock,
      random: () => 0,
      logger: silentLogger,
      timing: { tickMs: 100, electionTicks: 10, heartbeatTicks: 1 },
    });
    const group = host.addGroup("g", { voters: [1, 2, 3] }, memoryStore(), { apply: () => {} });
    group.poke((n) => n.campaign());
    await group.idle(); // the Ready ran: its (pre-)vote requests wait in the outbox for the turn's end
    expect(sent).toEqual([]);
    host.flushNow();
    expect(sent.sort()).toEqual([2, 3]);
    clock.advance(0); // the end-of-turn flush that was scheduled finds nothing left to send
    expect(sent).toHaveLength(2);
  });
});

describe("RaftHost ticks", () => {
  it("keep their schedule when every timer fires 30 ms late: a 10-tick election timeout starts at about 1 s, not 1.3 s", () => {
    const manual = new ManualClock();
    const start = manual.now();
    const host = new RaftHost({
      self: 1,
      transport: silentTransport,
      clock: new LateClock(manual, 30),
      random: () => 0, // the randomized election timeout is then exactly electionTicks
      logger: silentLogger,
      timing: { tickMs: 100, electionTicks: 10, heartbeatTicks: 1 },
    });
    const group = host.addGroup("g", { voters: [1, 2, 3] }, memoryStore(), { apply: () => {} });
    host.start();
    manual.advance(1000);
    expect(group.node.role).toBe("follower");
    manual.advance(100); // the 10th tick was due at 1000 ms and fired at 1030 ms
    expect(group.node.role, `at ${manual.now() - start} ms`).not.toBe("follower");
  });
});
