/**
 * TLS to an IP address (gateways/grpc/channel.ts `dial`), which grpc-js alone cannot do on Bun
 * or Deno: it sends the IP as the TLS server name and both refuse that, so every handshake failed.
 *
 * - `ipLiteral`: which targets get that treatment.
 * - The dial probe (support/tls-dial-probe.ts): `connect` and the mirror sink dialling TLS
 *   listeners, in-process on Node and as a script under Bun and Deno, give the same outcomes: a
 *   certificate with the IP as an IP SAN is taken (IPv4 and IPv6), one without it (a DNS SAN
 *   only, another IP, a DNS SAN spelling the IP) is refused for the altname, and a DNS target is
 *   checked against DNS SANs as before.
 * - Real Bun processes: a three-peer cluster with mutual TLS whose peers are `127.0.0.1:<port>`
 *   forms and replicates an acks=all write to every peer, with a certificate whose only SAN is
 *   IP:127.0.0.1; with a certificate naming only DNS:localhost, every peer's links are refused for
 *   the missing IP SAN, and the cluster never gets a controller to create a topic with.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { status, type Client, type ServiceError } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ipLiteral } from "../gateways/grpc/channel.ts";
import { connect, unary, type ClientTls } from "../gateways/grpc/client.ts";
import { ERROR_CODE_TRAILER } from "../gateways/grpc/errors.ts";
import { AdminService } from "../gateways/grpc/gen/tributary/v1/admin_pb.ts";
import { ConsumerService } from "../gateways/grpc/gen/tributary/v1/consumer_pb.ts";
import { ProducerService } from "../gateways/grpc/gen/tributary/v1/producer_pb.ts";
import { Acks } from "../gateways/grpc/gen/tributary/v1/records_pb.ts";
import { REPO_ROOT } from "./support/broker-process.ts";
import { startClusterProcess, type ClusterProcess } from "./support/cluster-process.ts";
import { makeCa, makeLeaf } from "./support/pki.ts";
import { probeDial, type DialCase, type DialResult } from "./support/tls-dial-probe.ts";
import { waitFor } from "./support/wait.ts";

const run = promisify(execFile);

let dir = "";
const pem = (name: string) => readFileSync(join(dir, name));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tributary-tls-ip-"));
  makeCa(dir, "ca");
  makeLeaf(dir, "ip", "peer", "ca", "subjectAltName=IP:127.0.0.1");
  makeLeaf(dir, "ip6", "peer", "ca", "subjectAltName=IP:::1");
  makeLeaf(dir, "dns", "localhost", "ca", "subjectAltName=DNS:localhost");
  makeLeaf(dir, "other-ip", "peer", "ca", "subjectAltName=IP:127.0.0.2");
  makeLeaf(dir, "dns-spelling-ip", "127.0.0.1", "ca", "subjectAltName=DNS:127.0.0.1");
  makeLeaf(dir, "root", "root", "ca", "extendedKeyUsage=clientAuth");
}, 60_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("ipLiteral: the targets dial treats as IP addresses", () => {
  it("host:port and [v6]:port with an IP literal; not a DNS name, nor a target with a scheme", () => {
    expect(ipLiteral("10.0.0.1:8482")).toBe("10.0.0.1");
    expect(ipLiteral("[fd00::1]:8482")).toBe("fd00::1");
    expect(ipLiteral("127.0.0.1")).toBe("127.0.0.1");
    expect(ipLiteral("localhost:8482")).toBeNull();
    expect(ipLiteral("central.example:8481")).toBeNull();
    expect(ipLiteral("10.0.0.1.example:8481")).toBeNull();
    expect(ipLiteral("dns:///10.0.0.1:8482")).toBeNull();
  });
});

describe("dial: TLS to an IP address through connect and the mirror sink", () => {
  const cases: Record<string, DialCase> = {
    ip: { leaf: "ip", host: "127.0.0.1" },
    ip6: { leaf: "ip6", host: "::1" },
    dnsByName: { leaf: "dns", host: "localhost" },
    dnsByIp: { leaf: "dns", host: "127.0.0.1" },
    otherIp: { leaf: "other-ip", host: "127.0.0.1" },
    dnsSpellingIp: { leaf: "dns-spelling-ip", host: "127.0.0.1" },
  };
  const both = (o: string | RegExp) => ({ client: expect.stringMatching(o), sink: expect.stringMatching(o) });
  const altname = /^refused: .*ERR_TLS_CERT_ALTNAME_INVALID.*IP: 127\.0\.0\.1 is not in the cert's list/;
  const expected = {
    ip: both(/^connected$/),
    ip6: both(/^connected$/),
    dnsByName: both(/^connected$/),
    dnsByIp: both(altname),
    otherIp: both(altname),
    dnsSpellingIp: both(altname),
  };

  async function probeUnder(runtime: "bun" | "deno"): Promise<Record<string, DialResult>> {
    const script = "test/support/tls-dial-probe.ts";
    const args = runtime === "bun" ? [script, dir, JSON.stringify(cases)] : ["run", "-A", script, dir, JSON.stringify(cases)];
    const { stdout } = await run(join(REPO_ROOT, "node_modules/.bin", runtime), args, { cwd: REPO_ROOT, timeout: 30_000, env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" } });
    return JSON.parse(stdout) as Record<string, DialResult>;
  }

  it("on Node (in-process)", async () => {
    expect(await probeDial(dir, cases)).toEqual(expected);
  });

  it("on Bun", async () => {
    expect(await probeUnder("bun")).toEqual(expected);
  }, 30_000);

  it("on Deno", async () => {
    expect(await probeUnder("deno")).toEqual(expected);
  }, 30_000);
});

describe("a Bun cluster with mutual TLS, peers named by IP address", () => {
  let cluster: ClusterProcess | null = null;
  const clients: Client[] = [];
  const root = (): ClientTls => ({ ca: pem("ca.pem"), cert: pem("root.pem"), key: pem("root.key") });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    // SIGKILL first: a graceful stop (leadership handover, a grace period) is not under test here, and costs seconds.
    const c = cluster;
    if (c) await Promise.all(c.nodes.map((_, i) => c.kill(i)));
    await c?.stop();
    cluster = null;
  });

  async function start(leaf: string, extra: { args?: string[]; env?: Record<string, string> } = {}): Promise<ClusterProcess> {
    const acl = join(dir, "acl.json");
    await writeFile(acl, JSON.stringify({ acls: [{ principal: "root", resource: "*", operations: ["admin"] }] }));
    const tlsArgs = ["--tls-cert-file", join(dir, `${leaf}.pem`), "--tls-key-file", join(dir, `${leaf}.key`), "--tls-ca-file", join(dir, "ca.pem"), "--auth-acl-file", acl];
    cluster = await startClusterProcess({ runtime: "bun", tickMs: 50, args: [...tlsArgs, ...(extra.args ?? [])], ...(extra.env ? { env: extra.env } : {}) });
    return cluster;
  }

  /** A gRPC client of peer i's gateway, dialled at `host` (the gateway serves the peers' certificate), as principal root. */
  function gateway(c: ClusterProcess, i: number, host: string): Client {
    const client = connect(`${host}:${c.nodes[i]!.grpcPort}`, {}, root());
    clients.push(client);
    return client;
  }

  it("forms and replicates an acks=all write to every peer (the certificate's only SAN is IP:127.0.0.1)", async () => {
    const c = await start("ip");
    expect(c.peersSetting).toMatch(/^1@127\.0\.0\.1:\d+,2@127\.0\.0\.1:\d+,3@127\.0\.0\.1:\d+$/);
    // Retried through the first elections: the controller's, then the partition's.
    await waitFor("the topic created", () => unary(gateway(c, 0, "127.0.0.1"), AdminService.method.createTopic, { name: "t", partitions: 1 }, { timeoutMs: 5_000 }).then(() => true, () => false));
    const value = new TextEncoder().encode("over TLS by IP");
    const produced = await waitFor("an acks=all produce through peer 2", () =>
      unary(gateway(c, 1, "127.0.0.1"), ProducerService.method.produce, { topic: "t", records: [{ value, partition: 0 }], acks: Acks.ALL }, { timeoutMs: 5_000 }).then(
        (r) => r,
        () => undefined,
      ),
    );
    const offset = produced.runs[0]!.baseOffset;
    for (let i = 0; i < 3; i++) {
      const res = await waitFor(`the record on peer ${i + 1}`, async () => {
        const r = await unary(gateway(c, i, "127.0.0.1"), ConsumerService.method.fetch, { topic: "t", partition: 0, offset }, { timeoutMs: 5_000 });
        return r.records.length > 0 ? r : undefined;
      });
      expect(new TextDecoder().decode(res.records[0]!.value)).toBe("over TLS by IP");
    }
  }, 60_000);

  it("refuses a peer certificate without the IP SAN (DNS:localhost only): every peer's links fail for the altname, and no topic can be created", async () => {
    // Each link logs why it cannot connect ("peer link cannot connect", with the TLS error's code and message).
    const c = await start("dns", { args: ["--cluster-request-timeout-ms", "1000"] });
    const refusal = "IP: 127.0.0.1 is not in the cert's list";
    for (let i = 0; i < 3; i++) {
      await waitFor(`peer ${i + 1} to report the refused handshake`, () => c.nodes[i]!.stderrLines().some((l) => l.includes("peer link cannot connect") && l.includes("ERR_TLS_CERT_ALTNAME_INVALID") && l.includes(refusal)));
    }
    // The gateway serves the same certificate: dialled by its DNS name it is taken, so the call
    // reaches the broker, which has no controller (the peers never heard one another) to create
    // the topic with: a retriable refusal once cluster.request.timeout.ms has passed.
    const err = await unary(gateway(c, 0, "localhost"), AdminService.method.createTopic, { name: "t", partitions: 1 }, { timeoutMs: 5_000 }).then(
      () => null,
      (e: ServiceError) => e,
    );
    expect(err?.code).toBe(status.UNAVAILABLE);
    expect(err?.metadata.get(ERROR_CODE_TRAILER)).toEqual([expect.stringMatching(/^(NOT_READY|NOT_LEADER)$/)]);
  }, 60_000);
});
