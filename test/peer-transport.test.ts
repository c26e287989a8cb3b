/**
 * GrpcTransport (gateways/peer/) on 127.0.0.1, several in one process: frames arrive whole and
 * in order (two and three peers); a burst is answered by fewer, cumulative responses; calls and
 * their refusals; a peer that is down gives PEER_UNAVAILABLE and `unreachable`, and once it is
 * back frames flow again from the same sender; the in-flight bound and the size bound drop and count; frames from an unknown sender
 * and frames before `listen` are dropped and counted; mutual TLS accepts a certificate from the
 * right CA and refuses one from another CA; reloadTls: a new certificate from the same CA keeps
 * frames flowing and is what new handshakes present, both as listener and as client; one from
 * another CA is refused by the other peer until a good one is loaded again; bad material throws
 * INVALID_CONFIG and the old certificate stays.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import * as tlsNet from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { TributaryError } from "../src/errors.ts";
import { Metrics } from "../src/metrics.ts";
import type { GroupMessage, NodeId, PeerInfo, TransportHandlers, TransportLimits } from "../src/cluster/types.ts";
import { MessageType, type Message } from "../src/raft/index.ts";
import { decoder, methodPath, serverImplementation } from "../gateways/grpc/bridge.ts";
import { PeerService, type FramesResponse } from "../gateways/grpc/gen/tributary/peer/v1/peer_pb.ts";
import { GrpcTransport, type PeerTls } from "../gateways/peer/transport.ts";
import { encodeFrame } from "../gateways/peer/codec.ts";
import { codeOf } from "./support/errors.ts";
import { waitFor } from "./support/mosquitto.ts";
import { makeCa, makeLeaf } from "./support/pki.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function message(from: NodeId, to: NodeId, index: number): Message {
  return { type: MessageType.App, from, to, term: 2, logTerm: 2, index, entries: [{ term: 2, index: index + 1, type: 0, data: enc.encode(`e${index}`) }], commit: index, reject: false, rejectHint: 0 };
}

/** A peer that accepts the Frames stream and never answers it: frames stay in flight. */
async function silentPeer(): Promise<{ port: number; stop: () => void }> {
  const silent = new grpc.Server();
  const held: (() => void)[] = [];
  silent.addService(...serverImplementation(PeerService, { frames: () => new Promise<void>((r) => held.push(r)), call: async () => ({}) }, () => {}));
  const port = await new Promise<number>((res, rej) => silent.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  return {
    port,
    stop: () => {
      held.forEach((r) => r());
      silent.forceShutdown();
    },
  };
}

function frameOf(from: NodeId, to: NodeId, index: number): GroupMessage[] {
  return [
    { group: "t/0", message: message(from, to, index) },
    { group: "__meta", message: { ...message(from, to, index), type: MessageType.Heartbeat, entries: [] } },
  ];
}

/** Handlers that record what arrives. */
class Recorder implements TransportHandlers {
  frames: { from: NodeId; frame: readonly GroupMessage[] }[] = [];
  unreachables: NodeId[] = [];
  frame(from: NodeId, frame: readonly GroupMessage[]): void {
    this.frames.push({ from, frame });
  }
  async call(from: NodeId, method: string, body: Uint8Array): Promise<Uint8Array> {
    if (method === "refuse") throw new TributaryError("TOPIC_NOT_FOUND", `no topic ${dec.decode(body)}`);
    if (method === "crash") throw new Error("a bug in the handler");
    return enc.encode(`${from}:${method}:${dec.decode(body)}`);
  }
  unreachable(peer: NodeId): void {
    this.unreachables.push(peer);
  }
  indexesFrom(from: NodeId): number[] {
    return this.frames.filter((f) => f.from === from).map((f) => f.frame[0]!.message.index);
  }
}

const open: GrpcTransport[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

async function start(self: NodeId, peers: PeerInfo[], more: { port?: number; limits?: TransportLimits; tls?: PeerTls; metrics?: Metrics } = {}): Promise<GrpcTransport> {
  const t = await GrpcTransport.start({ self, host: "127.0.0.1", port: more.port ?? 0, peers, ...more });
  open.push(t);
  return t;
}

/** Starts n transports that know each other (ids 1..n), each listening with a Recorder. */
async function cluster(n: number, limits?: TransportLimits): Promise<{ ts: GrpcTransport[]; rs: Recorder[]; metrics: Metrics[] }> {
  // Ports first, so every transport can be given the whole peer list: bind, note, close, rebind.
  const ports: number[] = [];
  for (let i = 0; i < n; i++) ports.push(await freePort());
  const peers = ports.map((p, i) => ({ id: i + 1, address: `127.0.0.1:${p}` }));
  const metrics = ports.map(() => new Metrics());
  const ts = await Promise.all(ports.map((port, i) => start(i + 1, peers, { port, metrics: metrics[i]!, ...(limits ? { limits } : {}) })));
  const rs = ts.map((t) => {
    const r = new Recorder();
    t.listen(r);
    return r;
  });
  return { ts, rs, metrics };
}

async function freePort(): Promise<number> {
  const t = await GrpcTransport.start({ self: 99, host: "127.0.0.1", port: 0, peers: [] });
  const port = t.port;
  await t.close();
  return port;
}

const counter = (m: Metrics, name: string, labels: Record<string, string>) => m.counter(name, "", Object.keys(labels)).get(labels);
const dropped = (m: Metrics, peer: NodeId, reason: string) => counter(m, "tributary_peer_frames_dropped_total", { peer: String(peer), reason });

describe("GrpcTransport frames", () => {
  it("two peers: frames arrive whole, in order, both ways", async () => {
    const { ts, rs, metrics } = await cluster(2, { maxInflightFrames: 256, maxFrameBytes: 1 << 20 });
    for (let i = 0; i < 200; i++) ts[0]!.send(2, frameOf(1, 2, i));
    for (let i = 0; i < 50; i++) ts[1]!.send(1, frameOf(2, 1, i));
    await waitFor("200 frames at peer 2", () => (rs[1]!.frames.length === 200 ? true : undefined));
    await waitFor("50 frames at peer 1", () => (rs[0]!.frames.length === 50 ? true : undefined));
    expect(rs[1]!.indexesFrom(1)).toEqual([...Array(200).keys()]);
    expect(rs[0]!.indexesFrom(2)).toEqual([...Array(50).keys()]);
    expect(rs[1]!.frames[7]!.frame).toStrictEqual(frameOf(1, 2, 7));
    expect(counter(metrics[0]!, "tributary_peer_frames_sent_total", { peer: "2" })).toBe(200);
  });

  it("answers a burst of frames with fewer responses that together count every frame", async () => {
    const t2 = await start(2, [{ id: 1, address: "127.0.0.1:1" }]);
    const r2 = new Recorder();
    t2.listen(r2);
    const client = new grpc.Client(`127.0.0.1:${t2.port}`, grpc.credentials.createInsecure());
    const acks: FramesResponse[] = [];
    const stream = client.makeBidiStreamRequest(methodPath(PeerService.method.frames), (b: Buffer) => b, decoder(PeerService.method.frames.output), new grpc.Metadata(), {});
    stream.on("data", (a: FramesResponse) => acks.push(a));
    stream.on("error", () => {});
    try {
      for (let i = 0; i < 10; i++) stream.write(Buffer.from(encodeFrame(1, frameOf(1, 2, i))));
      await waitFor("all 10 frames answered", () => (acks.reduce((n, a) => n + Math.max(a.frames, 1), 0) === 10 ? true : undefined));
      expect(r2.indexesFrom(1)).toEqual([...Array(10).keys()]);
      expect(acks.length).toBeLessThan(10);
      expect(acks.every((a) => a.delivered)).toBe(true);
    } finally {
      stream.cancel();
      client.close();
    }
  });

  it("three peers: each hears the other two, in order", async () => {
    const { ts, rs } = await cluster(3, { maxInflightFrames: 64, maxFrameBytes: 1 << 20 });
    for (let i = 0; i < 30; i++) for (const [a, t] of ts.entries()) for (const b of [1, 2, 3]) if (b !== a + 1) t.send(b, frameOf(a + 1, b, i));
    await waitFor("60 frames at each", () => (rs.every((r) => r.frames.length === 60) ? true : undefined));
    for (const [i, r] of rs.entries()) for (const from of [1, 2, 3]) if (from !== i + 1) expect(r.indexesFrom(from)).toEqual([...Array(30).keys()]);
  });

  it("drops past maxInflightFrames when the peer does not acknowledge, counts, and reports unreachable once", async () => {
    const { port, stop } = await silentPeer();
    try {
      const metrics = new Metrics();
      const t = await start(1, [{ id: 2, address: `127.0.0.1:${port}` }], { limits: { maxInflightFrames: 4, maxFrameBytes: 1 << 20 }, metrics });
      const r = new Recorder();
      t.listen(r);
      for (let i = 0; i < 10; i++) t.send(2, frameOf(1, 2, i));
      expect(counter(metrics, "tributary_peer_frames_sent_total", { peer: "2" })).toBe(4);
      expect(dropped(metrics, 2, "inflight")).toBe(6);
      await waitFor("unreachable(2)", () => (r.unreachables.length > 0 ? true : undefined));
      expect(r.unreachables).toEqual([2]); // six drops within 100 ms: one notice
    } finally {
      stop();
    }
  });

  it("drops past maxInflightBytes too: the frame window is bounded in memory, not only in count", async () => {
    const { port, stop } = await silentPeer();
    try {
      const metrics = new Metrics();
      const one = encodeFrame(1, frameOf(1, 2, 0)).byteLength;
      // Room for three frames' bytes, and far more in count.
      const t = await start(1, [{ id: 2, address: `127.0.0.1:${port}` }], { limits: { maxInflightFrames: 100, maxFrameBytes: 1 << 20, maxInflightBytes: one * 3 }, metrics });
      t.listen(new Recorder());
      for (let i = 0; i < 10; i++) t.send(2, frameOf(1, 2, 0));
      expect(counter(metrics, "tributary_peer_frames_sent_total", { peer: "2" })).toBe(3);
      expect(dropped(metrics, 2, "inflight")).toBe(7);
    } finally {
      stop();
    }
  });

  it("drops a frame over maxFrameBytes at the sender", async () => {
    const { ts, rs, metrics } = await cluster(2, { maxInflightFrames: 16, maxFrameBytes: 4096 });
    const big: GroupMessage[] = [{ group: "t/0", message: { ...message(1, 2, 0), entries: [{ term: 2, index: 1, type: 0, data: new Uint8Array(5000) }] } }];
    ts[0]!.send(2, big);
    ts[0]!.send(2, frameOf(1, 2, 1));
    await waitFor("the small frame", () => (rs[1]!.frames.length === 1 ? true : undefined));
    expect(rs[1]!.indexesFrom(1)).toEqual([1]);
    expect(dropped(metrics[0]!, 2, "size")).toBe(1);
    await waitFor("unreachable(2)", () => (rs[0]!.unreachables.includes(2) ? true : undefined));
  });

  it("the receiver refuses a frame over its maxFrameBytes; the sender reconnects and goes on", async () => {
    const p2 = await freePort();
    const peers = [
      { id: 1, address: "127.0.0.1:1" },
      { id: 2, address: `127.0.0.1:${p2}` },
    ];
    const t2 = await start(2, peers, { port: p2, limits: { maxInflightFrames: 16, maxFrameBytes: 4096 } });
    const r2 = new Recorder();
    t2.listen(r2);
    const t1 = await start(1, peers, { limits: { maxInflightFrames: 16, maxFrameBytes: 1 << 20 } });
    const r1 = new Recorder();
    t1.listen(r1);
    t1.send(2, [{ group: "t/0", message: { ...message(1, 2, 0), entries: [{ term: 2, index: 1, type: 0, data: new Uint8Array(5000) }] } }]);
    await waitFor("unreachable(2): the stream was refused", () => (r1.unreachables.includes(2) ? true : undefined));
    let next = 1;
    await waitFor("a small frame after the backoff", () => (t1.send(2, frameOf(1, 2, next++)), r2.frames.length > 0 ? true : undefined));
    expect(r2.frames.every((f) => f.frame[0]!.message.index > 0)).toBe(true);
  });

  it("drops frames from a sender not in the peer list, and frames before listen", async () => {
    const port2 = await freePort();
    const metrics2 = new Metrics();
    const t2 = await start(2, [{ id: 1, address: "127.0.0.1:1" }], { port: port2, metrics: metrics2 });
    const stranger = await start(7, [{ id: 2, address: `127.0.0.1:${port2}` }]);
    const friend = await start(1, [{ id: 2, address: `127.0.0.1:${port2}` }]);
    stranger.send(2, frameOf(7, 2, 0));
    friend.send(2, frameOf(1, 2, 0));
    await waitFor("both counted", () => (dropped(metrics2, 7, "unknown") === 1 && dropped(metrics2, 1, "not_listening") === 1 ? true : undefined));
    const r = new Recorder();
    t2.listen(r);
    friend.send(2, frameOf(1, 2, 1));
    stranger.send(2, frameOf(7, 2, 1));
    await waitFor("the friend's frame", () => (r.frames.length === 1 ? true : undefined));
    expect(r.indexesFrom(1)).toEqual([1]);
    await waitFor("the stranger's second drop", () => (dropped(metrics2, 7, "unknown") === 2 ? true : undefined));
    expect(r.frames).toHaveLength(1);
    expect(await codeOf(stranger.call(2, "echo", enc.encode("x"), Date.now() + 5000))).toBe("PERMISSION_DENIED");
  });
});

describe("GrpcTransport calls", () => {
  it("answers, and a handler's TributaryError arrives with its code and message", async () => {
    const { ts, metrics } = await cluster(2);
    expect(dec.decode(await ts[0]!.call(2, "echo", enc.encode("hi"), Date.now() + 5000))).toBe("1:echo:hi");
    const refusal = await ts[0]!.call(2, "refuse", enc.encode("nope"), Date.now() + 5000).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(TributaryError);
    expect(refusal).toMatchObject({ code: "TOPIC_NOT_FOUND", message: "no topic nope" });
    const bug = await ts[0]!.call(2, "crash", new Uint8Array(), Date.now() + 5000).catch((e: unknown) => e);
    expect(bug).toBeInstanceOf(Error);
    expect(bug).not.toBeInstanceOf(TributaryError);
    expect(counter(metrics[0]!, "tributary_peer_calls_total", { peer: "2", method: "echo" })).toBe(1);
  });

  it("a passed deadline is PEER_UNAVAILABLE", async () => {
    const { ts } = await cluster(2);
    expect(await codeOf(ts[0]!.call(2, "echo", new Uint8Array(), Date.now() - 1))).toBe("PEER_UNAVAILABLE");
  });
});

describe("GrpcTransport and a peer that is down", () => {
  it("PEER_UNAVAILABLE and unreachable while down; frames flow again once it is back, without restarting the sender", async () => {
    const port2 = await freePort();
    const peers = [
      { id: 1, address: "127.0.0.1:1" },
      { id: 2, address: `127.0.0.1:${port2}` },
    ];
    const metrics = new Metrics();
    const t1 = await start(1, peers, { metrics });
    const r1 = new Recorder();
    t1.listen(r1);
    t1.send(2, frameOf(1, 2, 0));
    await waitFor("unreachable(2)", () => (r1.unreachables.includes(2) ? true : undefined));
    expect(await codeOf(t1.call(2, "echo", new Uint8Array(), Date.now() + 2000))).toBe("PEER_UNAVAILABLE");
    t1.send(2, frameOf(1, 2, 1)); // inside the backoff: dropped at once
    expect(dropped(metrics, 2, "disconnected")).toBeGreaterThan(0);

    const t2 = await start(2, peers, { port: port2 });
    const r2 = new Recorder();
    t2.listen(r2);
    let next = 2;
    // As a Raft driver would: keep sending (heartbeats) until the peer hears.
    await waitFor("frames at the restarted peer", () => (t1.send(2, frameOf(1, 2, next++)), r2.frames.length > 0 ? true : undefined));
    const first = r2.indexesFrom(1)[0]!;
    for (let i = 0; i < 5; i++) t1.send(2, frameOf(1, 2, next++));
    await waitFor("the rest in order", () => (r2.indexesFrom(1).at(-1) === next - 1 ? true : undefined));
    const got = r2.indexesFrom(1);
    expect(got).toEqual([...Array(got.length).keys()].map((i) => first + i));
    expect(dec.decode(await t1.call(2, "echo", enc.encode("back"), Date.now() + 5000))).toBe("1:echo:back");
  }, 30_000);

  it("close() is idempotent and ends streams both ways", async () => {
    const { ts, rs } = await cluster(2);
    ts[0]!.send(2, frameOf(1, 2, 0));
    await waitFor("a frame", () => (rs[1]!.frames.length === 1 ? true : undefined));
    const start = Date.now();
    await Promise.all([ts[1]!.close(), ts[1]!.close()]);
    expect(Date.now() - start).toBeLessThan(1500); // did not sit out the grace period for the open stream
    await waitFor("unreachable(2) at peer 1", () => (rs[0]!.unreachables.includes(2) ? true : undefined));
    expect(await codeOf(ts[1]!.call(1, "echo", new Uint8Array(), Date.now() + 1000))).toBe("NOT_READY");
  });
});

describe("GrpcTransport with mutual TLS", () => {
  let dir = "";
  const pem = (name: string) => readFileSync(join(dir, name), "utf8");
  const tls = (leaf: string, ca: string): PeerTls => ({ cert: pem(`${leaf}.pem`), key: pem(`${leaf}.key`), ca: pem(`${ca}.pem`) });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tributary-peer-tls-"));
    const ext = "subjectAltName=DNS:localhost,IP:127.0.0.1";
    makeCa(dir, "ca");
    makeCa(dir, "other-ca");
    makeLeaf(dir, "peer", "peer", "ca", ext);
    makeLeaf(dir, "rogue", "peer", "other-ca", ext);
    makeLeaf(dir, "peer2", "peer", "ca", ext);
  }, 60_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("peers with certificates from the cluster's CA exchange frames and calls", async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const peers = [
      { id: 1, address: `127.0.0.1:${p1}` },
      { id: 2, address: `127.0.0.1:${p2}` },
    ];
    const t1 = await start(1, peers, { port: p1, tls: tls("peer", "ca") });
    const t2 = await start(2, peers, { port: p2, tls: tls("peer", "ca") });
    const r2 = new Recorder();
    t1.listen(new Recorder());
    t2.listen(r2);
    t1.send(2, frameOf(1, 2, 0));
    await waitFor("the frame over TLS", () => (r2.frames.length === 1 ? true : undefined));
    expect(dec.decode(await t1.call(2, "echo", enc.encode("tls"), Date.now() + 5000))).toBe("1:echo:tls");
  });

  it("refuses a peer whose certificate another CA issued", async () => {
    const p2 = await freePort();
    const peers = [
      { id: 1, address: "127.0.0.1:1" },
      { id: 2, address: `127.0.0.1:${p2}` },
    ];
    const t2 = await start(2, peers, { port: p2, tls: tls("peer", "ca") });
    const r2 = new Recorder();
    t2.listen(r2);
    // Trusts t2's certificate, but presents one t2's CA did not issue.
    const rogue = await start(1, peers, { tls: tls("rogue", "ca") });
    const r1 = new Recorder();
    rogue.listen(r1);
    rogue.send(2, frameOf(1, 2, 0));
    await waitFor("unreachable(2)", () => (r1.unreachables.includes(2) ? true : undefined));
    expect(await codeOf(rogue.call(2, "echo", new Uint8Array(), Date.now() + 3000))).toBe("PEER_UNAVAILABLE");
    // And a plain-text peer is refused too.
    const plain = await start(1, peers);
    expect(await codeOf(plain.call(2, "echo", new Uint8Array(), Date.now() + 3000))).toBe("PEER_UNAVAILABLE");
    expect(r2.frames).toHaveLength(0);
  });

  const fingerprint = (leaf: string) => new X509Certificate(pem(`${leaf}.pem`)).fingerprint256;

  /** The fingerprint of the certificate a listener presents to a fresh TLS client with the cluster's CA. */
  function servedCertificate(port: number): Promise<string> {
    const { cert, key, ca } = tls("peer", "ca");
    return new Promise((resolve, reject) => {
      const s = tlsNet.connect({ host: "127.0.0.1", port, cert, key, ca, servername: "localhost", ALPNProtocols: ["h2"] }, () => {
        resolve(s.getPeerCertificate().fingerprint256);
        s.destroy();
      });
      s.on("error", reject);
    });
  }

  /** A TLS listener that records the client certificate of every handshake and hangs up. */
  async function certificateRecorder(): Promise<{ port: number; seen: string[]; close: () => void }> {
    const seen: string[] = [];
    const { cert, key, ca } = tls("peer", "ca");
    const server = tlsNet.createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: false, ALPNProtocols: ["h2"] }, (s) => {
      seen.push(s.getPeerCertificate().fingerprint256);
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return { port: (server.address() as { port: number }).port, seen, close: () => server.close() };
  }

  /** Sends frames from `from` to `to` until `until` answers, the way the driver resends. */
  async function sendUntil<T>(what: string, from: GrpcTransport, to: NodeId, until: () => T | undefined): Promise<T> {
    let i = 100;
    return waitFor(what, () => {
      from.send(to, frameOf(1, to, i++));
      return until();
    });
  }

  it("reloadTls with a certificate from the same CA: frames keep flowing, and new handshakes both ways present it", async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const recorder = await certificateRecorder();
    const peers = [
      { id: 1, address: `127.0.0.1:${p1}` },
      { id: 2, address: `127.0.0.1:${p2}` },
      { id: 3, address: `localhost:${recorder.port}` },
    ];
    try {
      const t1 = await start(1, peers, { port: p1, tls: tls("peer", "ca") });
      let t2 = await start(2, peers, { port: p2, tls: tls("peer", "ca") });
      let r2 = new Recorder();
      t1.listen(new Recorder());
      t2.listen(r2);
      await sendUntil("a frame before the reload", t1, 2, () => (r2.frames.length > 0 ? true : undefined));
      expect(await servedCertificate(p1)).toBe(fingerprint("peer"));

      t1.reloadTls(tls("peer2", "ca"));
      t2.reloadTls(tls("peer2", "ca"));
      const before = r2.frames.length;
      t1.send(2, frameOf(1, 2, 50));
      await waitFor("a frame on the open connection after the reload", () => (r2.frames.length > before ? true : undefined));
      // As listener: a new handshake gets the new certificate.
      expect(await servedCertificate(p1)).toBe(fingerprint("peer2"));
      expect(await servedCertificate(p2)).toBe(fingerprint("peer2"));
      // As client: a new handshake presents it.
      await sendUntil("t1's new client certificate at a fresh listener", t1, 3, () => (recorder.seen.length > 0 ? true : undefined));
      expect(recorder.seen.every((f) => f === fingerprint("peer2"))).toBe(true);

      // A peer restarted with the old certificate (same CA) takes t1's new one: the link reconnects.
      await t2.close();
      t2 = await start(2, peers, { port: p2, tls: tls("peer", "ca") });
      r2 = new Recorder();
      t2.listen(r2);
      await sendUntil("a frame after the peer restarted", t1, 2, () => (r2.frames.length > 0 ? true : undefined));
      expect(dec.decode(await t1.call(2, "echo", enc.encode("x"), Date.now() + 5000))).toBe("1:echo:x");
    } finally {
      recorder.close();
    }
  }, 20_000);

  it("reloadTls with another CA's certificate: the other peer refuses the new handshake; a good one reconnects", async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const peers = [
      { id: 1, address: `127.0.0.1:${p1}` },
      { id: 2, address: `127.0.0.1:${p2}` },
    ];
    const t1 = await start(1, peers, { port: p1, tls: tls("peer", "ca") });
    let t2 = await start(2, peers, { port: p2, tls: tls("peer", "ca") });
    const r1 = new Recorder();
    let r2 = new Recorder();
    t1.listen(r1);
    t2.listen(r2);
    await sendUntil("a frame before the reload", t1, 2, () => (r2.frames.length > 0 ? true : undefined));

    // Still trusts the cluster's CA, but presents a certificate another CA issued.
    t1.reloadTls({ ...tls("rogue", "ca") });
    // A new handshake is needed: restart t2 (same certificate as before).
    await t2.close();
    t2 = await start(2, peers, { port: p2, tls: tls("peer", "ca") });
    r2 = new Recorder();
    t2.listen(r2);
    r1.unreachables = [];
    await sendUntil("unreachable(2) with the rogue certificate", t1, 2, () => (r1.unreachables.includes(2) ? true : undefined));
    expect(await codeOf(t1.call(2, "echo", new Uint8Array(), Date.now() + 3000))).toBe("PEER_UNAVAILABLE");
    expect(r2.frames).toHaveLength(0);
    // And t1's listener presents the rogue certificate, which a peer of the cluster's CA refuses.
    await expect(servedCertificate(p1)).rejects.toThrow();

    t1.reloadTls(tls("peer2", "ca"));
    await sendUntil("a frame after loading a good certificate", t1, 2, () => (r2.frames.length > 0 ? true : undefined));
  }, 20_000);

  it("reloadTls with material that does not make a TLS context throws INVALID_CONFIG; the old certificate stays", async () => {
    const t = await start(1, [], { tls: tls("peer", "ca") });
    const good = tls("peer", "ca");
    expect(() => t.reloadTls({ ...good, cert: "not a certificate\n" })).toThrow(TributaryError);
    expect(() => t.reloadTls({ ...good, key: pem("peer2.key") })).toThrow(/INVALID_CONFIG|do not make a TLS context/);
    expect(await codeOf(Promise.resolve().then(() => t.reloadTls({ ...good, ca: "garbage" })))).toBe("INVALID_CONFIG");
    expect(await servedCertificate(t.port)).toBe(fingerprint("peer"));
  });
});
