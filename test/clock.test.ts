/**
 * The system clock's zero timers: "after this turn" must not cost a millisecond each (runtimes
 * clamp setTimeout(0) to >= 1 ms, and the Raft host defers every outgoing frame by one), and they
 * can still be cancelled.
 */
import { describe, expect, it } from "vitest";
import { systemClock } from "../src/runtime/clock.ts";

const HOPS = 200;

describe("systemClock.setTimer", () => {
  it("runs a chain of zero timers without a millisecond clamp per hop", async () => {
    const started = performance.now();
    await new Promise<void>((resolve) => {
      let left = HOPS;
      const hop = () => (--left === 0 ? resolve() : systemClock.setTimer(0, hop));
      systemClock.setTimer(0, hop);
    });
    // With setTimeout(0) the chain takes at least HOPS ms; with the next-macrotask path a few.
    expect(performance.now() - started).toBeLessThan(HOPS / 2);
  });

  it("runs zero timers after the current turn, in the order they were set", async () => {
    const order: string[] = [];
    await new Promise<void>((resolve) => {
      systemClock.setTimer(0, () => order.push("a"));
      systemClock.setTimer(0, () => {
        order.push("b");
        resolve();
      });
      order.push("sync");
    });
    expect(order).toEqual(["sync", "a", "b"]);
  });

  it("cancels a zero timer and a timed one", async () => {
    let fired = 0;
    systemClock.setTimer(0, () => fired++)();
    systemClock.setTimer(5, () => fired++)();
    await new Promise<void>((resolve) => systemClock.setTimer(20, resolve));
    expect(fired).toBe(0);
  });
});
