/**
 * TLS against real broker processes, with a throwaway PKI made by `openssl` in a temp dir: HTTPS
 * and gRPC over TLS with the right CA, a plain-text client refused; mutual TLS refusing a client
 * certificate from another CA (and none at all) and accepting the right one, whose CN is the
 * principal the ACL decides for; SIGHUP with a new certificate picked up by new connections
 * without the process exiting, and a bad file on SIGHUP leaving the old certificate in force (also
 * on the peer listener of a one-peer cluster);
 * Deno serving HTTPS, and mutual TLS with the certificate's CN as the principal on HTTP too (both
 * runtimes: node:http2 serves HTTP then); the MQTT bridge reaching Mosquitto over
 * mqtts:// with a CA.
 */
import { spawnSync } from "node:child_process";
import { request } from "node:https";
import { connect as http2Connect } from "node:http2";
import { X509Certificate } from "node:crypto";
import { connect as tlsConnect } from "node:tls";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveConfig } from "../src/config.ts";
import { exposureVerdict } from "../src/security/exposure.ts";
import { REPO_ROOT, runtimeCommand, startBrokerProcess, type BrokerProcess } from "./support/broker-process.ts";
import { methodDefinition, type Msg } from "./support/grpc-client.ts";
import { readPartition, startMosquitto, waitFor, writeBridgeConfig } from "./support/mosquitto.ts";
import { makeCa, makeLeaf } from "./support/pki.ts";
import { freePort } from "./support/ports.ts";

// ---- a throwaway PKI ------------------------------------------------------------------------

interface Pki {
  dir: string;
  file(name: string): string;
  pem(name: string): Buffer;
}

async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-tls-"));
  const server = "subjectAltName=DNS:localhost,IP:127.0.0.1";
  const client = "extendedKeyUsage=clientAuth";
  makeCa(dir, "ca");
  makeCa(dir, "ca2");
  makeCa(dir, "other-ca");
  makeLeaf(dir, "server", "localhost", "ca", server);
  makeLeaf(dir, "server2", "localhost", "ca2", server);
  makeLeaf(dir, "server-b", "localhost", "ca", server);
  makeLeaf(dir, "writer", "writer", "ca", client);
  makeLeaf(dir, "rogue", "writer", "other-ca", client);
  return { dir, file: (n) => join(dir, n), pem: (n) => readFileSync(join(dir, n)) };
}

// ---- clients --------------------------------------------------------------------------------

interface TlsClient {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** One HTTPS request (GET, or POST of `body`) on a fresh connection (no agent): resolves with the status, rejects on a refused handshake. */
function httpsGet(url: string, tls: TlsClient, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const method = body === undefined ? "GET" : "POST";
    const req = request(url, { ...tls, agent: false, method, headers: body === undefined ? headers : { "content-type": "application/json", ...headers } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.setTimeout(10_000, () => req.destroy(new Error("timeout")));
    req.end(body);
  });
}

const clients: grpc.Client[] = [];

function grpcClient(address: string, tls: TlsClient | null): grpc.Client {
  const creds = tls ? grpc.credentials.createSsl(tls.ca, tls.key ?? null, tls.cert ?? null) : grpc.credentials.createInsecure();
  const c = new grpc.Client(address, creds);
  clients.push(c);
  return c;
}

function unary(client: grpc.Client, service: "AdminService", method: string, request: Msg): Promise<Msg> {
  const m = methodDefinition(service, method);
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, request, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) =>
      err ? reject(err) : resolve(res as Msg),
    );
  });
}

async function failure(p: Promise<unknown>): Promise<Error & { code?: number }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: number };
  }
  throw new Error("succeeded; a refusal was expected");
}

let pki: Pki;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  pki = await makePki();
}, 60_000);

afterAll(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
  if (pki) await rm(pki.dir, { recursive: true, force: true });
});

async function broker(runtime: "bun" | "deno", args: string[]): Promise<BrokerProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), "tributary-tls-data-"));
  const b = await startBrokerProcess({ runtime, dataDir, args });
  cleanups.push(async () => {
    await b.stop();
    await rm(dataDir, { recursive: true, force: true });
  });
  return b;
}

describe("TLS settings", () => {
  it("off by default; certificate and key go together; a client CA needs them", () => {
    expect(resolveConfig({}).tls).toBeNull();
    expect(resolveConfig({ flags: { "tls.cert.file": "c.pem", "tls.key.file": "k.pem" } }).tls).toEqual({ certFile: "c.pem", keyFile: "k.pem", caFile: "" });
    expect(() => resolveConfig({ flags: { "tls.cert.file": "c.pem" } })).toThrow(/tls.cert.file and tls.key.file go together/);
    expect(() => resolveConfig({ flags: { "tls.ca.file": "ca.pem" } })).toThrow(/needs tls.cert.file/);
  });

  it("mutual TLS counts as authentication for listening beyond loopback; TLS alone does not", () => {
    const wide = { httpHost: "0.0.0.0", grpcHost: "0.0.0.0", insecure: false };
    expect(exposureVerdict({ ...wide, authOn: true, mutualTls: true }).error).toBeUndefined();
    expect(exposureVerdict({ ...wide, authOn: false }).error).toMatch(/tls.ca.file/);
  });
});

describe("TLS on a Bun broker", () => {
  let b: BrokerProcess;
  let certFile: string;
  let keyFile: string;

  beforeAll(async () => {
    // Copies the test may overwrite for the reload.
    certFile = pki.file("live-cert.pem");
    keyFile = pki.file("live-key.pem");
    await copyFile(pki.file("server.pem"), certFile);
    await copyFile(pki.file("server.key"), keyFile);
    b = await broker("bun", ["--tls-cert-file", certFile, "--tls-key-file", keyFile]);
  }, 60_000);

  it("serves HTTPS with the right CA and refuses a plain-HTTP client", async () => {
    expect(b.url).toMatch(/^https:\/\/127\.0\.0\.1:/);
    expect(await httpsGet(`${b.url}/healthz`, { ca: pki.pem("ca.pem") })).toMatchObject({ status: 200 });
    await failure(httpsGet(`${b.url}/healthz`, { ca: pki.pem("other-ca.pem") }));
    const plain = await fetch(`http://127.0.0.1:${b.port}/healthz`).then((r) => r.status, (e: Error) => e);
    expect(plain).toBeInstanceOf(Error);
  });

  it("serves gRPC over TLS with the right CA and refuses a plain-text client", async () => {
    const ok = await unary(grpcClient(b.grpcAddress, { ca: pki.pem("ca.pem") }), "AdminService", "DescribeCluster", {});
    expect(ok).toMatchObject({ ready: true });
    const plain = await failure(unary(grpcClient(b.grpcAddress, null), "AdminService", "DescribeCluster", {}));
    expect(plain.code).toBe(grpc.status.UNAVAILABLE);
  });

  it("SIGHUP: new connections get the new certificate, the process stays; a bad file keeps the old one", async () => {
    await copyFile(pki.file("server2.pem"), certFile);
    await copyFile(pki.file("server2.key"), keyFile);
    b.child.kill("SIGHUP");
    await waitFor("the reload log line", () => (b.stderrLines().some((l) => l.includes('"tls: reloaded"')) ? true : undefined));
    expect(await httpsGet(`${b.url}/healthz`, { ca: pki.pem("ca2.pem") })).toMatchObject({ status: 200 });
    await failure(httpsGet(`${b.url}/healthz`, { ca: pki.pem("ca.pem") }));
    expect(await unary(grpcClient(b.grpcAddress, { ca: pki.pem("ca2.pem") }), "AdminService", "DescribeCluster", {})).toMatchObject({ ready: true });
    const oldCa = await failure(unary(grpcClient(b.grpcAddress, { ca: pki.pem("ca.pem") }), "AdminService", "DescribeCluster", {}));
    expect(oldCa.code).toBe(grpc.status.UNAVAILABLE);

    await writeFile(certFile, "not a certificate\n");
    b.child.kill("SIGHUP");
    await waitFor("the failed-reload log line", () => (b.stderrLines().some((l) => l.includes("tls: could not reload")) ? true : undefined));
    expect(await httpsGet(`${b.url}/healthz`, { ca: pki.pem("ca2.pem") })).toMatchObject({ status: 200 });
    expect(await unary(grpcClient(b.grpcAddress, { ca: pki.pem("ca2.pem") }), "AdminService", "DescribeCluster", {})).toMatchObject({ ready: true });
    expect(b.child.exitCode).toBeNull();
  }, 60_000);
});

describe("mutual TLS on a Bun broker", () => {
  let b: BrokerProcess;
  const writer = () => ({ ca: pki.pem("ca.pem"), cert: pki.pem("writer.pem"), key: pki.pem("writer.key") });
  const rogue = () => ({ ca: pki.pem("ca.pem"), cert: pki.pem("rogue.pem"), key: pki.pem("rogue.key") });

  beforeAll(async () => {
    const aclFile = pki.file("acl.json");
    await writeFile(aclFile, JSON.stringify({ acls: [{ principal: "writer", resource: "topic:tls-*", operations: ["create", "describe", "consume"] }] }));
    // No token file: mutual TLS alone authenticates.
    b = await broker("bun", ["--tls-cert-file", pki.file("server.pem"), "--tls-key-file", pki.file("server.key"), "--tls-ca-file", pki.file("ca.pem"), "--auth-acl-file", aclFile]);
  }, 60_000);

  it("says at start that mutual TLS is on", () => {
    expect(b.stderrLines().some((l) => l.includes("mutual TLS is on"))).toBe(true);
  });

  it("HTTPS: a client certificate from the CA is accepted; one from another CA, or none, is refused", async () => {
    expect(await httpsGet(`${b.url}/healthz`, writer())).toMatchObject({ status: 200 });
    await failure(httpsGet(`${b.url}/healthz`, rogue()));
    await failure(httpsGet(`${b.url}/healthz`, { ca: pki.pem("ca.pem") }));
  });

  it("HTTPS: without a token, the certificate's CN is the principal the ACL decides for", async () => {
    expect(await httpsGet(`${b.url}/v1/topics`, writer(), {}, JSON.stringify({ name: "tls-h", partitions: 1 }))).toMatchObject({ status: 201 });
    expect(await httpsGet(`${b.url}/v1/topics/tls-h`, writer())).toMatchObject({ status: 200 });
    const denied = await httpsGet(`${b.url}/v1/topics`, writer(), {}, JSON.stringify({ name: "elsewhere", partitions: 1 }));
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body).error).toMatchObject({ code: "PERMISSION_DENIED", message: expect.stringMatching(/writer/) });
  });

  it("HTTP/2 too: a Server-Sent Events stream opens for the certificate's principal", async () => {
    const session = http2Connect(b.url, { ...writer(), servername: "localhost" });
    try {
      const stream = session.request({ ":path": "/v1/topics/tls-h/partitions/0/stream?offset=0" });
      const head = await new Promise<Record<string, unknown>>((resolve, reject) => (stream.once("response", resolve), stream.once("error", reject)));
      expect(head[":status"]).toBe(200);
      const first = await new Promise<string>((resolve, reject) => (stream.once("data", (d: Buffer) => resolve(d.toString())), stream.once("error", reject)));
      expect(first).toContain(": open");
      stream.close();
    } finally {
      session.close();
    }
  });

  it("gRPC: the certificate's CN is the principal the ACL decides for; another CA's certificate is refused", async () => {
    const client = grpcClient(b.grpcAddress, writer());
    await unary(client, "AdminService", "CreateTopic", { name: "tls-t", partitions: 1 });
    const denied = await failure(unary(client, "AdminService", "CreateTopic", { name: "elsewhere", partitions: 1 }));
    expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied.message).toMatch(/writer/);
    const refused = await failure(unary(grpcClient(b.grpcAddress, rogue()), "AdminService", "DescribeCluster", {}));
    expect(refused.code).toBe(grpc.status.UNAVAILABLE);
    const none = await failure(unary(grpcClient(b.grpcAddress, { ca: pki.pem("ca.pem") }), "AdminService", "DescribeCluster", {}));
    expect(none.code).toBe(grpc.status.UNAVAILABLE);
  });
});

describe("peer TLS on a Bun broker", () => {
  /** The fingerprint of the certificate served on `port` to a client with a certificate from the CA. */
  function servedCertificate(port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = tlsConnect({ host: "127.0.0.1", port, servername: "localhost", ALPNProtocols: ["h2"], ca: pki.pem("ca.pem"), cert: pki.pem("writer.pem"), key: pki.pem("writer.key") }, () => {
        resolve(s.getPeerCertificate().fingerprint256);
        s.destroy();
      });
      s.on("error", reject);
    });
  }
  const fingerprint = (name: string) => new X509Certificate(pki.pem(name)).fingerprint256;

  it("SIGHUP: the peer listener serves the new certificate to new connections; a bad file keeps the old one", async () => {
    const certFile = pki.file("peer-live-cert.pem");
    const keyFile = pki.file("peer-live-key.pem");
    await copyFile(pki.file("server.pem"), certFile);
    await copyFile(pki.file("server.key"), keyFile);
    const peerPort = await freePort();
    const b = await broker("bun", ["--cluster-node-id", "1", "--cluster-peers", `1@127.0.0.1:${peerPort}`, "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-file", pki.file("ca.pem")]);
    expect(await servedCertificate(peerPort)).toBe(fingerprint("server.pem"));

    await copyFile(pki.file("server-b.pem"), certFile);
    await copyFile(pki.file("server-b.key"), keyFile);
    b.child.kill("SIGHUP");
    await waitFor("the reload log line naming the peer listener", () => (b.stderrLines().some((l) => l.includes('"tls: reloaded"') && l.includes('"peer"')) ? true : undefined));
    expect(await servedCertificate(peerPort)).toBe(fingerprint("server-b.pem"));

    await writeFile(certFile, "not a certificate\n");
    b.child.kill("SIGHUP");
    await waitFor("the failed-reload log line", () => (b.stderrLines().some((l) => l.includes("tls: could not reload")) ? true : undefined));
    expect(await servedCertificate(peerPort)).toBe(fingerprint("server-b.pem"));
    expect(b.child.exitCode).toBeNull();
  }, 60_000);
});

describe("TLS on a Deno broker", () => {
  it("serves HTTPS and gRPC over TLS with the certificate", async () => {
    const b = await broker("deno", ["--tls-cert-file", pki.file("server.pem"), "--tls-key-file", pki.file("server.key")]);
    expect(await httpsGet(`${b.url}/healthz`, { ca: pki.pem("ca.pem") })).toMatchObject({ status: 200 });
    expect(await unary(grpcClient(b.grpcAddress, { ca: pki.pem("ca.pem") }), "AdminService", "DescribeCluster", {})).toMatchObject({ ready: true });
  }, 60_000);

  it("mutual TLS on both listeners: the certificate's CN is the principal on HTTP and gRPC; another CA's certificate, or none, is refused; SIGHUP reloads HTTP too", async () => {
    const aclFile = pki.file("acl-deno.json");
    await writeFile(aclFile, JSON.stringify({ acls: [{ principal: "writer", resource: "topic:tls-*", operations: ["create", "describe"] }] }));
    const certFile = pki.file("deno-live-cert.pem");
    const keyFile = pki.file("deno-live-key.pem");
    await copyFile(pki.file("server.pem"), certFile);
    await copyFile(pki.file("server.key"), keyFile);
    const b = await broker("deno", ["--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-file", pki.file("ca.pem"), "--auth-acl-file", aclFile]);
    const writer = { ca: pki.pem("ca.pem"), cert: pki.pem("writer.pem"), key: pki.pem("writer.key") };
    expect(await httpsGet(`${b.url}/v1/topics`, writer, {}, JSON.stringify({ name: "tls-d", partitions: 1 }))).toMatchObject({ status: 201 });
    expect(await httpsGet(`${b.url}/v1/topics`, writer, {}, JSON.stringify({ name: "elsewhere", partitions: 1 }))).toMatchObject({ status: 403 });
    await failure(httpsGet(`${b.url}/healthz`, { ...writer, cert: pki.pem("rogue.pem"), key: pki.pem("rogue.key") }));
    await failure(httpsGet(`${b.url}/healthz`, { ca: pki.pem("ca.pem") }));
    const client = grpcClient(b.grpcAddress, writer);
    expect(await unary(client, "AdminService", "DescribeTopic", { name: "tls-d" })).toMatchObject({ topic: { name: "tls-d" } });
    expect((await failure(unary(client, "AdminService", "DescribeTopic", { name: "elsewhere" }))).code).toBe(grpc.status.PERMISSION_DENIED);

    await copyFile(pki.file("server-b.pem"), certFile);
    await copyFile(pki.file("server-b.key"), keyFile);
    b.child.kill("SIGHUP");
    await waitFor("the reload log line", () => (b.stderrLines().some((l) => l.includes('"tls: reloaded"')) ? true : undefined));
    const served = await new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: "127.0.0.1", port: b.port, servername: "localhost", ...writer }, () => {
        resolve(s.getPeerCertificate().fingerprint256);
        s.destroy();
      });
      s.on("error", reject);
    });
    expect(served).toBe(new X509Certificate(pki.pem("server-b.pem")).fingerprint256);
  }, 60_000);
});

describe("MQTT bridge over TLS", () => {
  it("connects to Mosquitto with mqtts:// and the CA, and carries messages", async () => {
    const mq = await startMosquitto({ extraConfig: [`cafile ${pki.file("ca.pem")}`, `certfile ${pki.file("server.pem")}`, `keyfile ${pki.file("server.key")}`] });
    cleanups.push(() => mq.stop());
    const mqtts = `mqtts://127.0.0.1:${mq.port}`;
    const configPath = await writeBridgeConfig(pki.dir, {
      connections: [{ name: "tls", url: mqtts, clientId: "bridge-tls", tls: { ca: pki.file("ca.pem") }, subscribe: [{ filter: "devices/#", qos: 1 }] }],
      ingress: [{ filter: "devices/+deviceId/telemetry", qos: 1, topic: "telemetry", key: "{deviceId}" }],
    });
    const b = await broker("bun", ["--mqtt-config", configPath, "--topics-auto-create"]);
    const mqtt = await import("mqtt");
    const device = await mqtt.connectAsync(mqtts, { ca: pki.pem("ca.pem"), reconnectPeriod: 0 });
    try {
      // Published until the bridge has subscribed and the record shows (the topic is auto-created).
      const records = await waitFor("the record in the log", async () => {
        await device.publishAsync("devices/d1/telemetry", "hello", { qos: 1 });
        const res = await fetch(`${b.url}/v1/topics/telemetry`);
        if (res.status !== 200) return undefined;
        const rs = await readPartition(b.url, "telemetry", 0);
        return rs.length > 0 ? rs : undefined;
      });
      expect(records[0]).toMatchObject({ key: "d1", value: "hello" });
    } finally {
      await device.endAsync(true);
    }
  }, 60_000);
});
