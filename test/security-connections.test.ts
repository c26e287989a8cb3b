/**
 * Per-principal connection limits (maxConnections): the limiter as tables on a ManualClock with a
 * scripted probe (what the kernel says is open), the /proc/net/tcp parser and address spellings,
 * and real brokers on loopback (Bun and Deno) with authentication on: a principal with
 * maxConnections 2 holds two HTTP connections and two gRPC connections, its third is refused
 * (503 OVERLOADED / UNAVAILABLE naming the limit, counted in the metric), another principal is
 * unaffected, and once one of its connections closes a new one is admitted.
 */
import { Agent, request } from "node:http";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isTributaryError } from "../src/errors.ts";
import { Metrics } from "../src/metrics.ts";
import { ManualClock } from "../src/runtime/clock.ts";
import { kernelAddress, parseProcNetTcp, procNetTcpProbe } from "../src/runtime/tcp-connections.ts";
import { canonicalAddress, connectionKey, connectionOfPeer, ConnectionLimiter, type Connection } from "../src/security/connections.ts";
import { parseQuotas, type QuotaRule } from "../src/security/quotas.ts";
import { startBrokerProcess, type BrokerProcess, type Runtime } from "./support/broker-process.ts";
import { methodDefinition } from "./support/grpc-client.ts";
import { createToken } from "./support/tokens.ts";
import { waitFor } from "./support/wait.ts";

const RULES: QuotaRule[] = [
  { principal: "*", maxConnections: 2 },
  { principal: "free", requestsPerSec: 1000 },
];

const conn = (remotePort: number, localPort = 8480): Connection => ({ localPort, remoteAddress: "127.0.0.1", remotePort });
const key = (c: Connection) => connectionKey(c.localPort, c.remoteAddress, c.remotePort);

async function refusal(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("admitted; a refusal was expected");
}

/** A limiter whose probe answers from `open` (null: the system cannot say), counting probes. */
function limiter(open: { keys: Set<string> | null }, options = {}) {
  const metrics = new Metrics();
  const clock = new ManualClock();
  const probes: number[] = [];
  const l = new ConnectionLimiter(() => RULES, metrics, clock, async (port) => (probes.push(port), open.keys === null ? null : new Set(open.keys)), options);
  return { l, metrics, clock, probes };
}

describe("the connection limiter", () => {
  it("counts a connection once for its first principal, refuses one too many, and admits again once the kernel says one closed", async () => {
    const open = { keys: new Set<string>() as Set<string> | null };
    const { l, metrics, probes } = limiter(open);
    for (const c of [conn(1), conn(2)]) {
      await l.admit("http", c, "sensor");
      open.keys!.add(key(c));
    }
    await l.admit("http", conn(1), "sensor"); // the same connection again
    await l.admit("http", conn(2), "someone-else"); // counted for its first principal only
    expect(l.held("sensor")).toBe(2);
    expect(l.held("someone-else")).toBe(0);
    expect(probes).toEqual([]); // below the limit the kernel is not asked
    const err = await refusal(l.admit("http", conn(3), "sensor"));
    expect(isTributaryError(err) && err.code).toBe("OVERLOADED");
    expect(err.message).toMatch(/principal sensor holds 2 connections, its quota \(maxConnections 2\)/);
    expect(probes).toEqual([8480]);
    expect(metrics.render()).toContain('tributary_quota_connection_refusals_total{listener="http"} 1');
    await l.admit("grpc", conn(3, 8481), "other"); // another principal's count is its own
    await l.admit("http", conn(4), "free"); // no maxConnections: not tracked at all
    expect(l.size).toBe(3);
    open.keys!.delete(key(conn(1))); // the client closed it
    await l.admit("http", conn(3), "sensor");
    expect(l.held("sensor")).toBe(2);
  });

  it("a prune forgets only connections admitted before the probe started", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const metrics = new Metrics();
    let probes = 0;
    const l = new ConnectionLimiter(() => RULES, metrics, new ManualClock(), async () => (probes++, await gate, new Set<string>()));
    await l.admit("http", conn(1), "sensor");
    await l.admit("http", conn(2), "sensor");
    const third = l.admit("http", conn(3), "sensor"); // waits for the probe
    await l.admit("http", conn(9), "other"); // admitted while the probe runs
    await l.admit("http", conn(10), "other");
    const othersThird = l.admit("http", conn(11), "other"); // joins the read in flight
    release();
    await third;
    expect(l.held("sensor")).toBe(1); // 1 and 2 were gone; 3 is counted
    expect((await refusal(othersThird)).message).toMatch(/maxConnections 2/); // 9 and 10 came after the read began
    expect(l.held("other")).toBe(2);
    expect(probes).toBe(1);
  });

  it("where the kernel cannot say, a connection counts until it has carried no request for idleMs", async () => {
    const { l, clock } = limiter({ keys: null }, { idleMs: 1000 });
    await l.admit("http", conn(1), "sensor");
    clock.advance(600);
    await l.admit("http", conn(2), "sensor");
    clock.advance(600); // conn 1 idle 1200 ms, conn 2 600 ms
    await l.admit("http", conn(2), "sensor"); // a request on 2: seen now
    await l.admit("http", conn(3), "sensor"); // 1 idled out
    expect(l.held("sensor")).toBe(2);
    expect((await refusal(l.admit("http", conn(4), "sensor"))).message).toMatch(/maxConnections 2/);
  });

  it("tracks at most maxTracked connections", async () => {
    const { l } = limiter({ keys: null }, { maxTracked: 3, idleMs: 1e9 });
    await l.admit("http", conn(1), "a");
    await l.admit("http", conn(2), "b");
    await l.admit("http", conn(3), "c");
    expect((await refusal(l.admit("http", conn(4), "d"))).message).toMatch(/3 connections are tracked/);
    expect(l.size).toBe(3);
  });

  it("maxConnections is a positive integer in the quotas section", () => {
    expect(parseQuotas([{ principal: "*", maxConnections: 3 }])).toEqual([{ principal: "*", maxConnections: 3 }]);
    for (const v of [0, -1, 1.5, "2", Infinity]) expect(() => parseQuotas([{ principal: "*", maxConnections: v }])).toThrow(/maxConnections must be a positive integer/);
  });
});

describe("connections as the kernel lists them", () => {
  const TCP = [
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
    "   0: 0100007F:2120 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0", // listening
    "   1: 0100007F:2120 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1", // 127.0.0.1:50000 on 8480
    "   2: 0100007F:2120 0100007F:C351 08 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1", // CLOSE_WAIT: gone
    "   3: 0100007F:C350 0100007F:2120 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0 20 4 30 10 -1", // the client's end
    "   4: 0101A8C0:2121 0A01A8C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 5 1 0 20 4 30 10 -1", // another port
  ].join("\n");

  it("lists the established connections on the port, by client address and port", () => {
    expect([...parseProcNetTcp(TCP, 8480, true)]).toEqual(["8480|127.0.0.1|50000"]);
    expect([...parseProcNetTcp(TCP, 8481, true)]).toEqual(["8481|192.168.1.10|54321"]);
  });

  it.each<[string, boolean, string]>([
    ["0100007F", true, "127.0.0.1"],
    ["7F000001", false, "127.0.0.1"],
    ["00000000000000000000000001000000", true, "0:0:0:0:0:0:0:1"],
    ["0000000000000000FFFF00000100007F", true, "0:0:0:0:0:ffff:7f00:1"],
  ])("kernel address %s (little-endian %s) is %s", (hex, le, text) => {
    expect(kernelAddress(hex, le)).toBe(text);
  });

  it.each<[string, string]>([
    ["127.0.0.1", "127.0.0.1"],
    ["::ffff:127.0.0.1", "127.0.0.1"],
    ["0:0:0:0:0:ffff:7f00:1", "127.0.0.1"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["FE80:0:0:0:0:0:0:AB", "fe80::ab"],
  ])("address %s is spelled %s", (address, canonical) => {
    expect(canonicalAddress(address)).toBe(canonical);
  });

  it("reads grpc-js peers", () => {
    expect(connectionOfPeer(8481, "127.0.0.1:5000")).toEqual({ localPort: 8481, remoteAddress: "127.0.0.1", remotePort: 5000 });
    expect(connectionOfPeer(8481, "::1:5000")).toEqual({ localPort: 8481, remoteAddress: "::1", remotePort: 5000 });
    expect(connectionOfPeer(8481, "unknown")).toBeNull();
  });

  it("sees this process's own loopback connection, and not once it is closed", async () => {
    const { createServer, connect } = await import("node:net");
    const server = createServer(() => {});
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const client = connect(port, "127.0.0.1");
    await new Promise((r) => client.once("connect", r));
    const k = connectionKey(port, "127.0.0.1", client.localPort!);
    expect((await procNetTcpProbe(port))?.has(k)).toBe(true);
    client.destroy();
    await waitFor("the kernel to drop the connection", async () => !(await procNetTcpProbe(port))!.has(k));
    server.close();
  });
});

// ---- real brokers -----------------------------------------------------------------------------

interface HttpReply {
  status: number;
  body: string;
}

/** One request on the connection `agent` keeps (maxSockets 1: one connection per agent). */
function get(agent: Agent, url: string, token: string): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

const describeCluster = methodDefinition("AdminService", "DescribeCluster");

/** A gRPC call on `client`'s own connection. */
function grpcCall(client: grpc.Client, token: string): Promise<unknown> {
  const meta = new grpc.Metadata();
  meta.set("authorization", `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(describeCluster.path, describeCluster.requestSerialize, describeCluster.responseDeserialize, {}, meta, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

describe.each<Runtime>(["bun", "deno"])("maxConnections on a %s broker", (runtime) => {
  let dir: string;
  let broker: BrokerProcess;
  const tokens: Record<string, string> = {};
  const agents: Agent[] = [];
  const clients: grpc.Client[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tributary-conns-"));
    const tokensFile = join(dir, "tokens.json");
    const aclFile = join(dir, "acl.json");
    await writeFile(
      aclFile,
      JSON.stringify({
        acls: [{ principal: "*", resource: "cluster", operations: ["describe"] }],
        // One principal per listener: a principal's connections are counted across both.
        quotas: [
          { principal: "capped", maxConnections: 2 },
          { principal: "capped-grpc", maxConnections: 2 },
        ],
      }),
    );
    for (const name of ["capped", "capped-grpc", "other"]) tokens[name] = createToken(tokensFile, name);
    broker = await startBrokerProcess({ runtime, dataDir: join(dir, "data"), args: ["--auth-tokens-file", tokensFile, "--auth-acl-file", aclFile] });
  }, 120_000);

  afterAll(async () => {
    for (const a of agents) a.destroy();
    for (const c of clients) c.close();
    await broker?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const agent = () => {
    const a = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(a);
    return a;
  };
  // Its own subchannel pool: each client dials its own connection.
  const client = () => {
    const c = new grpc.Client(broker.grpcAddress, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
    clients.push(c);
    return c;
  };

  it("HTTP: two connections pass, the third is refused with 503 OVERLOADED, another principal passes, and a closed one makes room", async () => {
    const url = `${broker.url}/v1/topics`;
    const [a1, a2, a3] = [agent(), agent(), agent()];
    expect((await get(a1, url, tokens.capped!)).status).toBe(200);
    expect((await get(a2, url, tokens.capped!)).status).toBe(200);
    expect((await get(a1, url, tokens.capped!)).status).toBe(200); // the same connection again
    const refused = await get(a3, url, tokens.capped!);
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body).error).toMatchObject({ code: "OVERLOADED", message: expect.stringMatching(/maxConnections 2/) });
    expect((await get(agent(), url, tokens.other!)).status).toBe(200);
    a1.destroy();
    await waitFor("a new connection admitted once one closed", async () => (await get(a3, url, tokens.capped!)).status === 200);
    const metrics = await get(agent(), `${broker.url}/metrics`, tokens.other!);
    expect(metrics.body).toMatch(/tributary_quota_connection_refusals_total\{listener="http"\} [1-9]/);
  }, 60_000);

  it("gRPC: two connections pass, the third is refused with UNAVAILABLE naming the limit, another principal passes, and a closed one makes room", async () => {
    const [c1, c2, c3] = [client(), client(), client()];
    await grpcCall(c1, tokens["capped-grpc"]!);
    await grpcCall(c2, tokens["capped-grpc"]!);
    await grpcCall(c1, tokens["capped-grpc"]!);
    const refused = (await refusal(grpcCall(c3, tokens["capped-grpc"]!))) as grpc.ServiceError;
    expect(refused.code).toBe(grpc.status.UNAVAILABLE);
    expect(refused.details).toMatch(/maxConnections 2/);
    await grpcCall(client(), tokens.other!);
    c1.close();
    await waitFor("a new gRPC connection admitted once one closed", () => grpcCall(c3, tokens["capped-grpc"]!).then(() => true, () => false));
  }, 60_000);
});
