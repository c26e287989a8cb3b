/**
 * IdleHeapCompactor (src/runtime/heap.ts) on a ManualClock with a fake allocation counter: it
 * compacts once when allocation stops after enough garbage, never while allocation goes on, not
 * again until new garbage has piled up, and not after stop(). v8HeapCompaction in a Deno process:
 * the allocation counter rises and a compaction shrinks the grown young generation; on Bun: null.
 */
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../src/runtime/clock.ts";
import { IdleHeapCompactor, type IdleCompactorLimits } from "../src/runtime/heap.ts";
import { REPO_ROOT, runtimeCommand } from "./support/broker-process.ts";

const MB = 1024 * 1024;
const LIMITS: IdleCompactorLimits = { checkMs: 1000, idleBytes: MB / 2, minGarbageBytes: 8 * MB };

function setup() {
  const clock = new ManualClock();
  let allocated = 0;
  const compactions: number[] = [];
  const c = new IdleHeapCompactor(clock, { allocatedBytes: () => allocated, compact: () => compactions.push(clock.now()) }, LIMITS);
  c.start();
  /** One check interval during which `bytes` are allocated. */
  const second = (bytes: number) => {
    allocated += bytes;
    clock.advance(1000);
  };
  return { c, compactions, second };
}

describe("IdleHeapCompactor", () => {
  it("compacts once when allocation stops after enough garbage, then stays quiet", () => {
    const { c, compactions, second } = setup();
    for (let i = 0; i < 10; i++) second(4 * MB); // busy: 4 MB/s
    expect(compactions).toHaveLength(0);
    second(0); // idle
    expect(compactions).toHaveLength(1);
    for (let i = 0; i < 30; i++) second(1024); // idle, with a trickle
    expect(c.compactions).toBe(1);
  });

  it("never compacts while allocation goes on, however much garbage there is", () => {
    const { compactions, second } = setup();
    for (let i = 0; i < 100; i++) second(MB);
    expect(compactions).toHaveLength(0);
  });

  it("does not compact an idle broker that has made little garbage since the last time", () => {
    const { compactions, second } = setup();
    second(20 * MB);
    second(0);
    expect(compactions).toHaveLength(1);
    // 6 MB more, in small steps below the idle threshold: under minGarbageBytes, so no second one.
    for (let i = 0; i < 15; i++) second(400 * 1024);
    expect(compactions).toHaveLength(1);
    second(3 * MB); // now 9 MB since: the next idle check compacts
    second(0);
    expect(compactions).toHaveLength(2);
  });

  it("stops checking after stop()", () => {
    const { c, compactions, second } = setup();
    second(20 * MB);
    c.stop();
    second(0);
    second(0);
    expect(compactions).toHaveLength(0);
  });
});

describe("v8HeapCompaction", () => {
  it("on Deno: hooks that count allocation, and a compaction that shrinks the young generation", () => {
    const script = `
      import v8 from "node:v8";
      import { v8HeapCompaction } from "./src/runtime/heap.ts";
      const young = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space").physical_space_size;
      const hooks = v8HeapCompaction();
      const before = hooks.allocatedBytes();
      let keep = [];
      for (let i = 0; i < 300000; i++) keep.push({ i, s: "x" + i });
      keep = null;
      const grown = young();
      hooks.compact();
      console.log(JSON.stringify({ allocated: hooks.allocatedBytes() - before, grown, after: young() }));`;
    const cmd = runtimeCommand("deno", []);
    const r = spawnSync(cmd.command, ["eval", script], { cwd: REPO_ROOT, env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" }, encoding: "utf8", timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim()) as { allocated: number; grown: number; after: number };
    expect(out.allocated).toBeGreaterThan(5 * MB);
    expect(out.after).toBeLessThan(out.grown / 2);
  }, 60_000);

  it("on Bun: none (JavaScriptCore; Bun runs without)", () => {
    const cmd = runtimeCommand("bun", []);
    const r = spawnSync(cmd.command, ["-e", `import { v8HeapCompaction } from "./src/runtime/heap.ts"; console.log(v8HeapCompaction() === null)`], { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000 });
    expect(r.stdout.trim(), r.stderr).toBe("true");
  }, 60_000);
});
