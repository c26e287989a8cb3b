/**
 * Consumer groups against a real broker process on Bun: two member processes poll through HTTP
 * consumer instances; one is killed with SIGKILL and, once its session times out, its partitions
 * move to the survivor, which goes on from the committed offsets. Then the CLI's group commands.
 * Waits are on conditions (what the members print, what the broker answers), never fixed sleeps.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, startBrokerProcess, type BrokerProcess } from "./support/broker-process.ts";

const MEMBER_SCRIPT = `
const url = process.env.URL, name = process.env.NAME;
async function j(method, path, body) {
  const r = await fetch(url + path, { method, headers: body ? { "content-type": "application/json" } : {}, body: body ? JSON.stringify(body) : undefined });
  const t = await r.text();
  if (!r.ok) throw new Error(t);
  return t ? JSON.parse(t) : null;
}
await j("POST", "/v1/consumers/g", { name, "auto.offset.reset": "earliest", "session.timeout.ms": 2000 });
await j("POST", "/v1/consumers/g/instances/" + name + "/subscription", { topics: ["t"] });
for (;;) {
  const r = await j("GET", "/v1/consumers/g/instances/" + name + "/records?waitMs=200");
  await j("POST", "/v1/consumers/g/instances/" + name + "/offsets");
  console.log(JSON.stringify({ assignment: r.assignment.map((a) => a.partition), values: r.records.map((x) => x.value) }));
}
`;

interface Member {
  child: ChildProcess;
  assignment: number[];
  values: number[];
  exited: boolean;
}

let dir: string;
let broker: BrokerProcess;
const members: Member[] = [];

function startMember(name: string): Member {
  const child = spawn(join(REPO_ROOT, "node_modules/.bin/bun"), ["-e", MEMBER_SCRIPT], { env: { ...process.env, URL: broker.url, NAME: name }, stdio: ["ignore", "pipe", "pipe"] });
  const m: Member = { child, assignment: [], values: [], exited: false };
  let buf = "";
  child.stdout!.on("data", (b: Buffer) => {
    buf += b.toString("utf8");
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = JSON.parse(buf.slice(0, i)) as { assignment: number[]; values: number[] };
      buf = buf.slice(i + 1);
      m.assignment = line.assignment;
      m.values.push(...line.values);
    }
  });
  child.once("exit", () => (m.exited = true));
  members.push(m);
  return m;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; broker: ${broker.stderrLines().slice(-5).join("\n")}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function api(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const r = await fetch(broker.url + path, { method, headers: body ? { "content-type": "application/json" } : {}, body: body ? JSON.stringify(body) : undefined });
  const t = await r.text();
  return (t ? JSON.parse(t) : {}) as Record<string, unknown>;
}

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(join(REPO_ROOT, "node_modules/.bin/bun"), ["bin/tributary", ...args], { cwd: REPO_ROOT, env: { ...process.env, TRIBUTARY_URL: broker.url }, stdio: ["ignore", "pipe", "pipe"] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on("data", (b: Buffer) => out.push(b));
  child.stderr!.on("data", (b: Buffer) => err.push(b));
  return new Promise((resolve) => child.once("close", (code) => resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() })));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tributary-groups-process-"));
  broker = await startBrokerProcess({
    runtime: "bun",
    dataDir: dir,
    args: ["--group-min-session-timeout-ms", "1000", "--group-initial-rebalance-delay-ms", "0"],
  });
}, 60_000);

afterAll(async () => {
  for (const m of members) if (!m.exited) m.child.kill("SIGKILL");
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("consumer group against a broker process on Bun", () => {
  it("moves a killed member's partitions to the survivor, which resumes from the committed offsets", async () => {
    await api("POST", "/v1/topics", { name: "t", partitions: 4 });
    const produce = (from: number, to: number) =>
      Promise.all([0, 1, 2, 3].map((p) => api("POST", "/v1/topics/t/records", { records: Array.from({ length: to - from }, (_, i) => ({ value: (from + i) * 10 + p, partition: p })) })));
    await produce(0, 5);
    const a = startMember("a");
    const b = startMember("b");
    await waitFor("two members with two partitions each", () => a.assignment.length === 2 && b.assignment.length === 2);
    await waitFor("all 20 records consumed", () => a.values.length + b.values.length === 20);
    const killed = b.assignment;
    b.child.kill("SIGKILL");
    await waitFor("the survivor holding all four partitions", () => a.assignment.length === 4);
    await produce(5, 8);
    await waitFor("the new records", () => a.values.length + b.values.length >= 32);
    // Each record exactly once: b committed what it read before it died, so a did not re-read it.
    const all = [...a.values, ...b.values].sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: 32 }, (_, i) => Math.floor(i / 4) * 10 + (i % 4)));
    const d = await api("GET", "/v1/groups/g");
    expect((d.members as unknown[]).length).toBe(1);
    expect(killed.length).toBe(2);

    const list = await cli(["group", "list"]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^g\t(stable|reconciling)\t1 member\n$/);
    const describe = await cli(["group", "describe", "g"]);
    expect(describe.code, describe.stderr).toBe(0);
    expect(describe.stdout).toContain("TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER");
    const busy = await cli(["group", "reset-offsets", "g", "--topic", "t", "--to-earliest"]);
    expect([busy.code, busy.stderr]).toEqual([1, expect.stringContaining("GROUP_NOT_EMPTY")]);
    a.child.kill("SIGKILL");
    await waitFor("the group to empty", async () => (await api("GET", "/v1/groups/g")).state === "empty");
    const reset = await cli(["group", "reset-offsets", "g", "--topic", "t", "--to-offset", "2", "--partition", "1"]);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout).toBe("t\t1\t2\n");
    const usage = await cli(["group", "reset-offsets", "g", "--topic", "t"]);
    expect(usage.code).toBe(2);
  }, 90_000);
});
