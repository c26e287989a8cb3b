/**
 * The benchmarks' own machinery: bench/grpc-load.ts's acks and RATE arguments against a real
 * broker process (a paced producer reaches its target and no more; a bad ACKS is a usage error),
 * and bench/lib.ts's appendToSection, which bench:cluster uses to record a run in RESULTS.md.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendToSection, npmBin, REPO, runLoadProcess } from "../bench/lib.ts";
import { startBrokerProcess, type BrokerProcess } from "./support/broker-process.ts";

describe("bench/grpc-load.ts", () => {
  let dir: string;
  let broker: BrokerProcess;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tributary-bench-load-"));
    broker = await startBrokerProcess({ runtime: "bun", dataDir: dir });
    const res = await fetch(`${broker.url}/v1/topics`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "paced", partitions: 1 }),
    });
    expect(res.status).toBe(201);
  }, 60_000);

  afterAll(async () => {
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("paces a ProduceStream at RATE records per second with acks=all, every batch acknowledged", async () => {
    const ratePerS = 5_000;
    const durationMs = 2_000;
    const r = await runLoadProcess(["bench/grpc-load.ts", "stream", broker.grpcAddress, "paced", "100", "100", "16", String(durationMs), "all", String(ratePerS)]);
    expect(r.errors).toBe(0);
    const achieved = r.records / (r.elapsedMs / 1000);
    // Open loop: never ahead of the schedule; behind it only by what a loaded machine delays.
    expect(achieved).toBeLessThanOrEqual(ratePerS * 1.02);
    expect(achieved).toBeGreaterThan(ratePerS * 0.7);
    expect(r.p50).toBeGreaterThan(0);
  }, 30_000);

  it("refuses an ACKS that is not 0, 1 or all, and a RATE on unary calls", async () => {
    const exitCode = (args: string[]) =>
      new Promise<number | null>((resolve) => {
        const child = spawn(npmBin("bun"), ["bench/grpc-load.ts", ...args], { cwd: REPO, stdio: "ignore" });
        child.on("exit", (code) => resolve(code));
      });
    const common = [broker.grpcAddress, "paced", "100", "10", "1", "100"];
    expect(await exitCode(["stream", ...common, "2"])).toBe(2);
    expect(await exitCode(["unary", ...common, "1", "1000"])).toBe(2);
  }, 30_000);
});

describe("appendToSection", () => {
  const text = "# Results\n\n## A\n\n### day 1\n\nold A\n\n## B\n\nold B\n";

  it("adds the block at the end of its section, before the next one", () => {
    expect(appendToSection(text, "## A", "### day 2\n\nnew A")).toBe("# Results\n\n## A\n\n### day 1\n\nold A\n\n### day 2\n\nnew A\n\n## B\n\nold B\n");
  });

  it("adds the block at the end of the file when its section is the last", () => {
    expect(appendToSection(text, "## B", "new B")).toBe("# Results\n\n## A\n\n### day 1\n\nold A\n\n## B\n\nold B\n\nnew B\n");
  });

  it("makes the section at the end of the file when there is none", () => {
    expect(appendToSection(text, "## C", "first C")).toBe(`${text}\n## C\n\nfirst C\n`);
  });

  it("takes only the whole heading line, not one that starts or ends like it", () => {
    expect(appendToSection("## AB\n\nx\n", "## A", "y")).toBe("## AB\n\nx\n\n## A\n\ny\n");
    expect(appendToSection("### A\n\nx\n", "## A", "y")).toBe("### A\n\nx\n\n## A\n\ny\n");
  });
});
