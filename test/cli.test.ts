/**
 * The `tributary` client commands as a user runs them (`bun bin/tributary ...`), against a broker
 * process: topic administration, produce from stdin (with --key and with key<TAB>value lines),
 * consume from the beginning, from an offset, and --follow reading records produced after it
 * started. One produce/consume round trip also runs under Deno (`deno run -A cli/main.ts`).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, runtimeCommand, startBrokerProcess, type BrokerProcess, type Runtime } from "./support/broker-process.ts";

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cliCommand(runtime: Runtime, args: string[]): { command: string; args: string[] } {
  if (runtime === "bun") return { command: join(REPO_ROOT, "node_modules/.bin/bun"), args: ["bin/tributary", ...args] };
  return runtimeCommand("deno", args);
}

function startCli(runtime: Runtime, args: string[], url: string): ChildProcess {
  const cmd = cliCommand(runtime, args);
  return spawn(cmd.command, cmd.args, {
    cwd: REPO_ROOT,
    env: { ...process.env, TRIBUTARY_URL: url, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    stdio: ["pipe", "pipe", "pipe"],
  });
}

function runCli(args: string[], url: string, stdin?: string | Uint8Array, runtime: Runtime = "bun"): Promise<CliResult> {
  const child = startCli(runtime, args, url);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on("data", (b: Buffer) => out.push(b));
  child.stderr!.on("data", (b: Buffer) => err.push(b));
  child.stdin!.end(stdin ?? "");
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") }));
  });
}

/** Expect a command to succeed; a failure shows what it printed, and the broker's last log lines. */
async function ok(run: Promise<CliResult>): Promise<CliResult> {
  const r = await run;
  expect(r.code, `stderr: ${r.stderr}\nbroker: ${broker.stderrLines().slice(-5).join("\n")}`).toBe(0);
  return r;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let dataDir: string;
let broker: BrokerProcess;
let url: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "tributary-cli-"));
  broker = await startBrokerProcess({ runtime: "bun", dataDir });
  url = broker.url;
});
afterAll(async () => {
  await broker?.kill("SIGKILL");
  await rm(dataDir, { recursive: true, force: true });
});

async function fetchValues(topic: string, partition = 0): Promise<{ key: string | null; value: unknown; valueBase64?: string }[]> {
  const res = await fetch(`${url}/v1/topics/${topic}/partitions/${partition}/records?offset=0`);
  return ((await res.json()) as { records: { key: string | null; value: unknown }[] }).records;
}

describe("tributary topic", () => {
  it("creates, lists, describes and deletes topics", async () => {
    const created = await runCli(["topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=3600000", "--config", "cleanup.policy=delete"], url);
    expect(created).toMatchObject({ code: 0, stdout: "created topic orders with 3 partitions\n" });
    await ok(runCli(["topic", "create", "audit"], url));

    const list = await runCli(["topic", "list", "--url", url], "http://127.0.0.1:1");
    expect(list).toMatchObject({ code: 0, stdout: "audit\norders\n" });

    const described = await runCli(["topic", "describe", "orders"], url);
    expect(described.code).toBe(0);
    expect(described.stdout).toContain("topic: orders");
    expect(described.stdout).toContain("partitions: 3");
    expect(described.stdout).toContain("retention.ms=3600000");
    expect(described.stdout).toMatch(/^\s+2\s+0\s+0\s+0\s+0$/m);
    const asJson = await runCli(["topic", "describe", "orders", "--json"], url);
    expect((JSON.parse(asJson.stdout) as { partitions: unknown[] }).partitions).toHaveLength(3);

    expect(await runCli(["topic", "delete", "audit"], url)).toMatchObject({ code: 0, stdout: "deleted topic audit\n" });
    expect((await runCli(["topic", "list"], url)).stdout).toBe("orders\n");
  });

  it("prints the broker's error code and exits 1, and usage with exit 2", async () => {
    expect(await runCli(["topic", "create", "orders"], url)).toMatchObject({ code: 1, stderr: expect.stringMatching(/^error: TOPIC_EXISTS: /) });
    expect(await runCli(["topic", "describe", "missing"], url)).toMatchObject({ code: 1, stderr: expect.stringMatching(/^error: TOPIC_NOT_FOUND: /) });
    expect(await runCli(["topic", "create", "bad name"], url)).toMatchObject({ code: 1, stderr: expect.stringMatching(/^error: INVALID_TOPIC_NAME: /) });
    expect(await runCli(["topic", "list"], "http://127.0.0.1:1")).toMatchObject({ code: 1, stderr: expect.stringMatching(/^error: UNREACHABLE: /) });
    for (const args of [["help"], ["frobnicate"], [], ["topic", "create"], ["topic", "create", "x", "--partitions", "many"], ["consume", "t", "--bogus"], ["produce", "t", "--acks", "2"]]) {
      const r = await runCli(args, url);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stdout + r.stderr, args.join(" ")).toContain("usage: tributary");
    }
  });
});

describe("tributary produce and consume", () => {
  it("produces one record per line, with --key or key<TAB>value, as raw bytes", async () => {
    await ok(runCli(["topic", "create", "lines"], url));
    const keyed = await runCli(["produce", "lines", "--key", "fixed", "--acks", "all"], url, '{"temp": 21.5}\nplain text\twith a tab\n');
    expect(keyed).toMatchObject({ code: 0, stderr: "" });
    const tabbed = await runCli(["produce", "lines"], url, "dev-1\t42\r\nno key here\n\ndev-2\t\"quoted\"");
    expect(tabbed).toMatchObject({ code: 0, stderr: "" });
    const records = await fetchValues("lines");
    expect(records.map((r) => [r.key, r.value ?? r.valueBase64])).toEqual([
      ["fixed", { temp: 21.5 }],
      ["fixed", Buffer.from("plain text\twith a tab").toString("base64")],
      ["dev-1", 42],
      [null, Buffer.from("no key here").toString("base64")],
      [null, ""],
      ["dev-2", "quoted"],
    ]);
  });

  it("consumes from the beginning and from an offset, printing each value exactly as produced", async () => {
    const all = await runCli(["consume", "lines", "--from-beginning"], url);
    expect(all).toMatchObject({ code: 0, stderr: "" });
    expect(all.stdout).toBe('{"temp": 21.5}\nplain text\twith a tab\n42\nno key here\n\n"quoted"\n');
    const fromTwo = await runCli(["consume", "lines", "--offset", "2", "--max-records", "2", "--print-key"], url);
    expect(fromTwo).toMatchObject({ code: 0, stdout: "dev-1\t42\nnull\tno key here\n" });
    expect((await runCli(["consume", "lines"], url)).stdout).toBe("");
    expect(await runCli(["consume", "lines", "--offset", "99"], url)).toMatchObject({ code: 1, stderr: expect.stringMatching(/^error: OFFSET_OUT_OF_RANGE: /) });
    expect(await runCli(["consume", "lines", "--partition", "4"], url)).toMatchObject({ code: 1, stderr: expect.stringMatching(/^error: PARTITION_NOT_FOUND: /) });
  });

  it("batches a large input across requests and keeps its order", async () => {
    await ok(runCli(["topic", "create", "bulk", "--partitions", "2"], url));
    const lines = Array.from({ length: 2500 }, (_, i) => `line-${i}`);
    await ok(runCli(["produce", "bulk", "--partition", "1"], url, `${lines.join("\n")}\n`));
    const out = await runCli(["consume", "bulk", "--partition", "1", "--from-beginning"], url);
    expect(out.stdout).toBe(`${lines.join("\n")}\n`);
  });

  it("follows: prints records produced after it started, until killed", async () => {
    await ok(runCli(["topic", "create", "follow"], url));
    await ok(runCli(["produce", "follow"], url, "old\n"));
    const child = startCli("bun", ["consume", "follow", "--follow"], url);
    let stdout = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (s: string) => (stdout += s));
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    try {
      await waitFor("the consumer's long poll", async () => {
        const metrics = await (await fetch(`${url}/metrics`)).text();
        return /^tributary_http_long_polls_active [1-9]/m.test(metrics);
      });
      await ok(runCli(["produce", "follow"], url, "new-1\nnew-2\n"));
      await waitFor("two followed records", () => stdout === "new-1\nnew-2\n");
      await ok(runCli(["produce", "follow"], url, "new-3\n"));
      await waitFor("a third followed record", () => stdout === "new-1\nnew-2\nnew-3\n");
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
  });

  it("round-trips the same lines with the Deno build of the command", async () => {
    await ok(runCli(["topic", "create", "deno-lines"], url, undefined, "deno"));
    const produced = await runCli(["produce", "deno-lines"], url, 'k\t{"a": 1}\nraw ÿ line\n', "deno");
    expect(produced).toMatchObject({ code: 0, stderr: "" });
    const consumed = await runCli(["consume", "deno-lines", "--from-beginning", "--print-key"], url, undefined, "deno");
    expect(consumed).toMatchObject({ code: 0, stdout: 'k\t{"a": 1}\nnull\traw ÿ line\n' });
  });
});
