/**
 * Authentication and ACLs against real broker processes: the HTTP and gRPC listeners refuse no
 * token, a wrong token, a revoked token and a token without the ACL, each with its status and
 * reason, and accept the right one; tokens are made and revoked with `tributary token` on the file
 * itself; a revocation is picked up without a restart; no token ever shows in stderr or /metrics;
 * and without authentication the broker refuses to listen beyond loopback.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT, runtimeCommand, startBrokerProcess, type BrokerProcess, type Runtime } from "./support/broker-process.ts";
import { TributaryClient } from "./support/grpc-client.ts";

function cli(runtime: Runtime, args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const cmd = runtimeCommand(runtime, args);
  const r = spawnSync(cmd.command, cmd.args, { cwd: REPO_ROOT, env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", ...env }, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function createToken(tokensFile: string, name: string): string {
  const r = cli("bun", ["token", "create", name, "--file", tokensFile]);
  expect(r.code, r.stderr).toBe(0);
  const token = r.stdout.trim();
  expect(token).toMatch(/^trb_[0-9a-f]{16}_/);
  return token;
}

async function refusal(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as ServiceError;
  }
  throw new Error("the call succeeded; a refusal was expected");
}

const bearer = (token: string) => {
  const m = new Metadata();
  m.set("authorization", `Bearer ${token}`);
  return m;
};

interface Setup {
  dir: string;
  tokensFile: string;
  aclFile: string;
  tokens: { writer: string; reader: string; ops: string; revoked: string };
}

async function setup(runtime: Runtime): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), `tributary-security-${runtime}-`));
  const tokensFile = join(dir, "tokens.json");
  const aclFile = join(dir, "acl.json");
  await writeFile(
    aclFile,
    JSON.stringify({
      acls: [
        { principal: "writer", resource: "topic:sec-*", operations: ["produce", "create", "describe"] },
        { principal: "reader", resource: "topic:sec-*", operations: ["consume"] },
        { principal: "ops", resource: "cluster", operations: ["describe"] },
        { principal: "gone", resource: "*", operations: ["admin"] },
      ],
    }),
  );
  const tokens = {
    writer: createToken(tokensFile, "writer"),
    reader: createToken(tokensFile, "reader"),
    ops: createToken(tokensFile, "ops"),
    revoked: createToken(tokensFile, "gone"),
  };
  return { dir, tokensFile, aclFile, tokens };
}

/** Poll until `check` holds; a bounded wait for the token file's reload (checked once a second). */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("security on a Bun broker", () => {
  let s: Setup;
  let broker: BrokerProcess;
  let grpc: TributaryClient;

  beforeAll(async () => {
    s = await setup("bun");
    broker = await startBrokerProcess({ runtime: "bun", dataDir: join(s.dir, "data"), args: ["--auth-tokens-file", s.tokensFile, "--auth-acl-file", s.aclFile] });
    grpc = new TributaryClient(broker.grpcAddress);
  }, 120_000);

  afterAll(async () => {
    grpc?.close();
    await broker?.stop();
    if (s) await rm(s.dir, { recursive: true, force: true });
  });

  const http = (path: string, token?: string, init: RequestInit = {}) =>
    fetch(`${broker.url}${path}`, { ...init, headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.headers as Record<string, string>) } });

  async function expectError(res: Response, status: number, code: string, message: RegExp): Promise<void> {
    expect(res.status).toBe(status);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(body.error.message).toMatch(message);
  }

  it("says at start that authentication is on", () => {
    expect(broker.stderrLines().some((l) => l.includes("authentication is on"))).toBe(true);
  });

  it("HTTP: the right token is accepted, and the ACL decides what it may do", async () => {
    const created = await http("/v1/topics", s.tokens.writer, { method: "POST", body: JSON.stringify({ name: "sec-t" }) });
    expect(created.status).toBe(201);
    const produced = await http("/v1/topics/sec-t/records", s.tokens.writer, { method: "POST", body: JSON.stringify({ records: [{ value: { a: 1 } }] }) });
    expect(produced.status).toBe(200);
    const read = await http("/v1/topics/sec-t/partitions/0/records?offset=0", s.tokens.reader);
    expect(read.status).toBe(200);
    expect(((await read.json()) as { records: unknown[] }).records).toHaveLength(1);
  });

  it("HTTP: no token, a wrong one, a malformed one -> 401 UNAUTHENTICATED with the reason", async () => {
    const none = await http("/v1/topics/sec-t");
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);
    await expectError(none, 401, "UNAUTHENTICATED", /authentication required/);
    const wrong = s.tokens.writer.slice(0, -4) + (s.tokens.writer.endsWith("AAAA") ? "BBBB" : "AAAA");
    await expectError(await http("/v1/topics/sec-t", wrong), 401, "UNAUTHENTICATED", /not valid/);
    await expectError(await http("/v1/topics/sec-t", "letmein"), 401, "UNAUTHENTICATED", /not a Tributary token/);
    await expectError(await http("/v1/topics/sec-t", undefined, { headers: { authorization: "Basic YWI6Y2Q=" } }), 401, "UNAUTHENTICATED", /Bearer/);
  });

  it("HTTP: a token without the ACL -> 403 PERMISSION_DENIED naming principal, operation and resource", async () => {
    await expectError(
      await http("/v1/topics/sec-t/records", s.tokens.reader, { method: "POST", body: JSON.stringify({ records: [{ value: 1 }] }) }),
      403,
      "PERMISSION_DENIED",
      /principal reader may not produce topic:sec-t/,
    );
    await expectError(await http("/v1/topics", s.tokens.writer, { method: "POST", body: JSON.stringify({ name: "other" }) }), 403, "PERMISSION_DENIED", /may not create topic:other/);
    await expectError(await http("/v1/topics/sec-t", s.tokens.writer, { method: "DELETE" }), 403, "PERMISSION_DENIED", /may not delete topic:sec-t/);
    await expectError(await http("/v1/topics", s.tokens.reader), 403, "PERMISSION_DENIED", /may not describe cluster/);
  });

  it("HTTP: /healthz and /readyz stay open; /metrics needs describe on the cluster", async () => {
    expect((await http("/healthz")).status).toBe(200);
    expect((await http("/readyz")).status).toBe(200);
    expect((await http("/metrics")).status).toBe(401);
    expect((await http("/metrics", s.tokens.writer)).status).toBe(403);
    expect((await http("/metrics", s.tokens.ops)).status).toBe(200);
  });

  it("gRPC: right token accepted; none, wrong, and without the ACL refused with the status and reason", async () => {
    const ok = await grpc.unary("ProducerService", "Produce", { topic: "sec-t", records: [{ value: Buffer.from("x") }] }, { metadata: bearer(s.tokens.writer) });
    expect(ok.runs).toHaveLength(1);
    const fetched = await grpc.unary("ConsumerService", "Fetch", { topic: "sec-t", partition: 0, offset: "0" }, { metadata: bearer(s.tokens.reader) });
    expect((fetched.records as unknown[]).length).toBeGreaterThan(0);

    const none = await refusal(grpc.unary("AdminService", "DescribeTopic", { name: "sec-t" }));
    expect(none.code).toBe(status.UNAUTHENTICATED);
    expect(none.details).toMatch(/authentication required/);
    expect(none.metadata.get("tributary-error-code")[0]).toBe("UNAUTHENTICATED");

    const wrong = await refusal(grpc.unary("AdminService", "DescribeTopic", { name: "sec-t" }, { metadata: bearer(s.tokens.ops.slice(0, -2) + "xx") }));
    expect(wrong.code).toBe(status.UNAUTHENTICATED);
    expect(wrong.details).toMatch(/not valid/);

    const denied = await refusal(grpc.unary("ProducerService", "Produce", { topic: "sec-t", records: [{ value: Buffer.from("x") }] }, { metadata: bearer(s.tokens.reader) }));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    expect(denied.details).toMatch(/principal reader may not produce topic:sec-t/);
    expect(denied.metadata.get("tributary-error-code")[0]).toBe("PERMISSION_DENIED");

    const listed = await refusal(grpc.unary("AdminService", "ListTopics", {}, { metadata: bearer(s.tokens.writer) }));
    expect(listed.code).toBe(status.PERMISSION_DENIED);
    expect((await grpc.unary("AdminService", "ListTopics", {}, { metadata: bearer(s.tokens.ops) })).topics).toBeDefined();
  });

  it("a revoked token is refused on both listeners, without a restart", async () => {
    expect((await http("/v1/topics/sec-t", s.tokens.revoked)).status).toBe(200);
    const r = cli("bun", ["token", "revoke", "gone", "--file", s.tokensFile]);
    expect(r.code, r.stderr).toBe(0);
    await eventually(async () => (await http("/v1/topics/sec-t", s.tokens.revoked)).status === 401, "the revocation to be picked up");
    await expectError(await http("/v1/topics/sec-t", s.tokens.revoked), 401, "UNAUTHENTICATED", /revoked/);
    const e = await refusal(grpc.unary("AdminService", "DescribeTopic", { name: "sec-t" }, { metadata: bearer(s.tokens.revoked) }));
    expect(e.code).toBe(status.UNAUTHENTICATED);
    expect(e.details).toMatch(/revoked/);
    const list = cli("bun", ["token", "list", "--file", s.tokensFile]);
    expect(list.stdout).toMatch(/\tgone\t.*revoked/);
  });

  it("counts refusals by listener and reason, and never shows a token in /metrics, stderr or the token file", async () => {
    const metrics = await (await http("/metrics", s.tokens.ops)).text();
    for (const line of [
      'tributary_auth_refusals_total{listener="http",reason="missing"}',
      'tributary_auth_refusals_total{listener="http",reason="unknown"}',
      'tributary_auth_refusals_total{listener="http",reason="revoked"}',
      'tributary_auth_refusals_total{listener="http",reason="denied"}',
      'tributary_auth_refusals_total{listener="grpc",reason="missing"}',
      'tributary_auth_refusals_total{listener="grpc",reason="denied"}',
      'tributary_auth_refusals_total{listener="grpc",reason="revoked"}',
    ]) {
      expect(metrics).toContain(line);
    }
    const { readFile } = await import("node:fs/promises");
    const file = await readFile(s.tokensFile, "utf8");
    const stderr = broker.stderrLines().join("\n");
    for (const token of Object.values(s.tokens)) {
      const secret = token.slice("trb_".length + 16 + 1);
      expect(secret).toHaveLength(43);
      for (const text of [metrics, stderr, file]) {
        expect(text).not.toContain(token);
        expect(text).not.toContain(secret);
      }
    }
  });
});

describe("security: one gRPC case on a Deno broker", () => {
  it("refuses a token without the ACL and accepts the right one", async () => {
    const s = await setup("deno");
    const broker = await startBrokerProcess({ runtime: "deno", dataDir: join(s.dir, "data"), args: ["--auth-tokens-file", s.tokensFile, "--auth-acl-file", s.aclFile] });
    const grpc = new TributaryClient(broker.grpcAddress);
    try {
      await grpc.unary("AdminService", "CreateTopic", { name: "sec-d", partitions: 1 }, { metadata: bearer(s.tokens.writer) });
      const denied = await refusal(grpc.unary("AdminService", "DeleteTopic", { name: "sec-d" }, { metadata: bearer(s.tokens.writer) }));
      expect(denied.code).toBe(status.PERMISSION_DENIED);
      expect(denied.details).toMatch(/may not delete topic:sec-d/);
      const none = await refusal(grpc.unary("AdminService", "DescribeTopic", { name: "sec-d" }));
      expect(none.code).toBe(status.UNAUTHENTICATED);
    } finally {
      grpc.close();
      await broker.stop();
      await rm(s.dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("secure by default", () => {
  it("without authentication, refuses to listen beyond loopback (exit 2, INVALID_CONFIG)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tributary-exposure-"));
    try {
      const r = cli("bun", ["serve", "--data-dir", join(dir, "data"), "--http-port", "0", "--grpc-port", "0", "--http-host", "0.0.0.0"]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^error: INVALID_CONFIG: http.host 0.0.0.0 is not loopback and no authentication is configured/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("with --insecure, listens beyond loopback and says so loudly; on loopback it says loopback only", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tributary-exposure-"));
    try {
      const open = await startBrokerProcess({ runtime: "bun", dataDir: join(dir, "a"), args: ["--http-host", "0.0.0.0", "--insecure"] });
      await open.stop();
      expect(open.stderrLines().some((l) => l.includes('"level":"warn"') && l.includes("INSECURE"))).toBe(true);
      const local = await startBrokerProcess({ runtime: "bun", dataDir: join(dir, "b") });
      await local.stop();
      expect(local.stderrLines().some((l) => l.includes("listening on loopback only"))).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
