/**
 * MirrorService on the gRPC gateway and GrpcMirrorSink, on loopback with real files: the sink's
 * open/send/positions/group offsets against a central, its refusals as typed errors, a zip bomb,
 * a broken stream and a missing ack rejecting pending sends (retriable), bounded in-flight sends,
 * mutual TLS with a bearer token and the `mirror` ACL operation, the service off on a broker that
 * is not a central, and a property: random sends, replays and reorders through the sink leave the
 * target equal to the source.
 */
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Broker } from "../src/broker.ts";
import { defaultConfig } from "../src/config.ts";
import { TributaryError } from "../src/errors.ts";
import { silentLogger } from "../src/logger.ts";
import { Metrics } from "../src/metrics.ts";
import { SecurityGuard } from "../src/security/guard.ts";
import { writeTokenFile } from "../src/security/token-file.ts";
import { newToken } from "../src/security/tokens.ts";
import type { SourceSend } from "../src/mirror/types.ts";
import { startGrpcGateway, type GrpcGatewayOptions, type RunningGateway } from "../gateways/grpc/index.ts";
import { GrpcMirrorSink } from "../gateways/grpc/mirror-sink.ts";
import { serverImplementation } from "../gateways/grpc/bridge.ts";
import { MirrorService } from "../gateways/grpc/gen/tributary/mirror/v1/mirror_pb.ts";
import { binding, concat, sourceBatch, sourceLog, targetValues, type SourceBatch } from "./support/mirror-fixtures.ts";
import { makeCa, makeLeaf } from "./support/pki.ts";
import { waitFor } from "./support/wait.ts";
import { codeOf } from "./support/errors.ts";

const MAX_MESSAGE = 256 * 1024;

async function startCentral(dir: string, extra: Partial<GrpcGatewayOptions> = {}, central = true): Promise<{ broker: Broker; gateway: RunningGateway }> {
  const broker = await Broker.open(defaultConfig({ "data.dir": dir, "mirror.central": String(central), "grpc.max.message.bytes": String(MAX_MESSAGE), "flush.mode": "none" }), { logger: silentLogger });
  const gateway = await startGrpcGateway(broker, { host: "127.0.0.1", port: 0, maxMessageBytes: MAX_MESSAGE, streamMaxInflight: 8, logger: silentLogger, ...extra });
  return { broker, gateway };
}

const send = (topic: string, batches: readonly SourceBatch[], fromOffset = batches[0]?.from ?? 0, gaps: SourceSend["gaps"] = []): SourceSend => ({
  source: { cluster: "site7", topic, partition: 0 },
  fromOffset,
  batches: concat(batches.map((b) => b.bytes())),
  gaps,
});

describe("GrpcMirrorSink against a central", () => {
  let dir = "";
  let broker: Broker;
  let gateway: RunningGateway;
  let sink: GrpcMirrorSink;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tributary-mirror-grpc-"));
    ({ broker, gateway } = await startCentral(dir));
    sink = new GrpcMirrorSink({ address: `127.0.0.1:${gateway.port}`, tls: null, maxMessageBytes: MAX_MESSAGE });
  });
  afterAll(async () => {
    await sink?.close();
    await gateway?.stop();
    await broker?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("opens (binding, refusing another source's target), sends, acks a replay with the same position, and answers positions", async () => {
    const welcome = await sink.open({ link: "l", cluster: "site7", topics: [binding("a", "site7.a"), binding("b", "site7.a", 1, "other")] });
    expect(welcome.map((w) => (w.ok ? w.positions : w.code))).toEqual([[null], "INVALID_CONFIG"]);
    const src = sourceLog([3, 4, 2]);
    const first = send("a", src.slice(0, 2));
    // The ack carries the gzipped payload's size: what the edge's uplink cap counts.
    expect(await sink.send([first])).toEqual([{ source: { cluster: "site7", topic: "a", partition: 0 }, position: 7, wireBytes: gzipSync(first.batches).length }]);
    expect((await sink.send([send("a", src.slice(0, 2))]))[0]!.position).toBe(7);
    expect((await sink.send([send("a", src.slice(2))]))[0]!.position).toBe(9);
    expect(await targetValues(broker, "site7.a", 0)).toEqual(src.flatMap((b) => b.values));
    expect(await sink.positions("site7")).toMatchObject([{ sourceTopic: "a", target: "site7.a", positions: [9] }]);
    const [again] = await sink.open({ link: "l", cluster: "site7", topics: [binding("a", "site7.a")] });
    expect(again).toMatchObject({ ok: true, positions: [9] });
  });

  it("rejects refused sends with the central's typed error: out of order, straddling, corrupt, a zip bomb; gaps declared are taken", async () => {
    await sink.open({ link: "l", cluster: "site7", topics: [binding("r", "site7.r")] });
    const src = sourceLog([2, 2, 2]);
    await sink.send([send("r", src.slice(0, 1))]);
    expect(await codeOf(sink.send([send("r", src.slice(2))]))).toBe("OUT_OF_ORDER_SEQUENCE");
    expect((await sink.send([send("r", src.slice(2), 4, [{ from: 2, to: 4, reason: "retention" }])]))[0]!.position).toBe(6);
    expect(await codeOf(sink.send([send("r", [sourceBatch(5, ["x", "y"])])]))).toBe("INVALID_REQUEST");
    const bad = sourceLog([2], 6)[0]!.bytes();
    bad[bad.length - 1]! ^= 1;
    expect(await codeOf(sink.send([{ ...send("r", []), fromOffset: 6, batches: bad }]))).toBe("CORRUPT_RECORD");
    const bomb = new Uint8Array(32 << 20); // gzips to ~32 KiB, inflates past 256 KiB x 8
    expect(await codeOf(sink.send([{ ...send("r", []), fromOffset: 6, batches: bomb }]))).toBe("RECORD_TOO_LARGE");
    expect(await targetValues(broker, "site7.r", 0)).toEqual([...src[0]!.values, ...src[2]!.values]);
  });

  it("commits group offsets translated, pending beyond the position", async () => {
    await sink.open({ link: "l", cluster: "site7", topics: [binding("g", "site7.g")] });
    await sink.send([send("g", sourceLog([5], 100))]);
    const results = await sink.commitGroupOffsets("site7", [
      { group: "grp", sourceTopic: "g", partition: 0, sourceOffset: 102, metadata: "m" },
      { group: "grp", sourceTopic: "g", partition: 0, sourceOffset: 200, metadata: "m" },
      { group: "grp", sourceTopic: "nope", partition: 0, sourceOffset: 1, metadata: "m" },
    ]);
    expect(results.map((r) => (r.ok ? r.targetOffset : r.pending ? "pending" : r.code))).toEqual([2, "pending", "TOPIC_NOT_FOUND"]);
    expect((await broker.groups.fetchCommittedOffsets("grp"))[0]).toMatchObject({ topic: "site7.g", offset: 2 });
  });

  it("property: random sends, replays and reorders, then an edge resending from the position, leave the target equal to the source", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 3 })), { maxLength: 12 }),
        fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 12, maxLength: 12 }),
        async (sizes, actions, skips) => {
          const topic = `p${run++}`;
          await sink.open({ link: "l", cluster: "site7", topics: [binding(topic, `site7.${topic}`)] });
          // Source batches with offsets between them that held no records (control batches).
          const src: SourceBatch[] = [];
          let at = 0;
          sizes.forEach((n, i) => {
            src.push(sourceBatch(at, Array.from({ length: n }, (_, k) => `${topic}-${at + k}`)));
            at += n + skips[i]!;
          });
          const from = (i: number) => (i === 0 ? 0 : src[i - 1]!.to);
          const slice = (i: number, k: number) => send(topic, src.slice(i, i + k), from(i));
          // The edge's first send starts at its log start (the central holds nothing); then
          // concurrent sends in random order: some are replays, some come too early and are refused.
          await sink.send([slice(0, 1)]);
          const settled = await Promise.allSettled(actions.map(([i, k]) => sink.send([slice(i % src.length, k)])));
          for (const s of settled) if (s.status === "rejected") expect((s.reason as TributaryError).code).toBe("OUT_OF_ORDER_SEQUENCE");
          // The edge re-opens, learns the position and resends from there.
          for (;;) {
            const [w] = await sink.open({ link: "l", cluster: "site7", topics: [binding(topic, `site7.${topic}`)] });
            const position = w!.ok ? w!.positions[0]! : null;
            const next = position === null ? 0 : src.findIndex((b) => b.from >= position);
            if (next < 0) break;
            await sink.send([slice(next, 2)]);
          }
          expect(await targetValues(broker, `site7.${topic}`, 0)).toEqual(src.flatMap((b) => b.values));
        },
      ),
      { numRuns: 30, seed: 11 },
    );
  }, 60_000);
});

describe("GrpcMirrorSink when the stream breaks", () => {
  let server: grpc.Server;
  let received = 0;

  /** A central that takes sends and never answers. */
  async function silentCentral(): Promise<number> {
    received = 0;
    const never = () => Promise.reject(new Error("not used"));
    const [def, impl] = serverImplementation(MirrorService, { open: never, positions: never, commitGroupOffsets: never, send: never }, () => {});
    impl.send = (call: grpc.ServerDuplexStream<Buffer, unknown>) => call.on("data", () => received++);
    server = new grpc.Server();
    server.addService(def, impl);
    return new Promise((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve(port))));
  }

  afterEach(() => server?.forceShutdown());

  it("keeps at most maxInflight sends unacknowledged, and rejects them all, retriably, when the central goes away", async () => {
    const port = await silentCentral();
    const sink = new GrpcMirrorSink({ address: `127.0.0.1:${port}`, tls: null, maxInflight: 3 });
    const pending = [0, 1, 2, 3, 4].map((i) => sink.send([send("t", sourceLog([1], i))]).catch((e: unknown) => e));
    await waitFor("three sends at the central", () => received === 3);
    server.forceShutdown();
    const errors = await Promise.all(pending);
    expect(received).toBe(3);
    for (const e of errors.slice(0, 3)) expect(e).toMatchObject({ code: "PEER_UNAVAILABLE", retriable: true });
    // The two that waited for a slot went out on a new stream, which found no central.
    for (const e of errors.slice(3)) expect((e as TributaryError).retriable).toBe(true);
    await sink.close();
  });

  it("rejects pending sends with REQUEST_TIMED_OUT when no ack comes within the deadline", async () => {
    const port = await silentCentral();
    const sink = new GrpcMirrorSink({ address: `127.0.0.1:${port}`, tls: null, deadlineMs: 300 });
    expect(await codeOf(sink.send([send("t", sourceLog([1]))]))).toBe("REQUEST_TIMED_OUT");
    await sink.close();
  });

  it("fails open with PEER_UNAVAILABLE when nothing listens", async () => {
    const port = await silentCentral();
    server.forceShutdown();
    const sink = new GrpcMirrorSink({ address: `127.0.0.1:${port}`, tls: null, deadlineMs: 2000 });
    const e = await sink.open({ link: "l", cluster: "site7", topics: [] }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(TributaryError);
    expect((e as TributaryError).retriable).toBe(true);
    await sink.close();
  });
});

describe("MirrorService on a broker that is not a central", () => {
  it("answers UNIMPLEMENTED with a message saying so; the sink makes it INVALID_CONFIG", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tributary-mirror-off-"));
    const { broker, gateway } = await startCentral(dir, {}, false);
    const sink = new GrpcMirrorSink({ address: `127.0.0.1:${gateway.port}`, tls: null });
    try {
      const e = await sink.open({ link: "l", cluster: "site7", topics: [] }).catch((x: unknown) => x);
      expect(e).toMatchObject({ code: "INVALID_CONFIG", message: expect.stringContaining("mirror.central=true") });
      expect(await codeOf(sink.send([send("t", sourceLog([1]))]))).toBe("INVALID_CONFIG");
    } finally {
      await sink.close();
      await gateway.stop();
      await broker.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("a central with mutual TLS, tokens and ACLs", () => {
  it("takes a link whose principal may `mirror` its targets, over mutual TLS with a bearer token, and refuses one that may not", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tributary-mirror-tls-"));
    makeCa(dir, "ca");
    makeLeaf(dir, "server", "localhost", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1");
    makeLeaf(dir, "edge", "site7-link", "ca", "extendedKeyUsage=clientAuth");
    const pem = (n: string) => readFileSync(join(dir, n), "utf8");
    const tokensFile = join(dir, "tokens.json");
    const aclFile = join(dir, "acl.json");
    const linker = await newToken("linker", Date.now());
    const other = await newToken("other", Date.now());
    await writeTokenFile(tokensFile, { version: 1, tokens: [linker.entry, other.entry] });
    await writeFile(aclFile, JSON.stringify({ acls: [{ principal: "linker", resource: "topic:site7.*", operations: ["mirror"] }] }));
    const guard = await SecurityGuard.open({ tokensFile, aclFile, metrics: new Metrics(), logger: silentLogger });
    const { broker, gateway } = await startCentral(join(dir, "data"), { guard, tls: { cert: pem("server.pem"), key: pem("server.key"), ca: pem("ca.pem") } });
    const tls = { ca: pem("ca.pem"), cert: pem("edge.pem"), key: pem("edge.key") };
    const sink = new GrpcMirrorSink({ address: `localhost:${gateway.port}`, tls, token: linker.token });
    const outsider = new GrpcMirrorSink({ address: `localhost:${gateway.port}`, tls, token: other.token });
    try {
      const [w] = await sink.open({ link: "l", cluster: "site7", topics: [binding("t", "site7.t")] });
      expect(w).toMatchObject({ ok: true });
      expect((await sink.send([send("t", sourceLog([2]))]))[0]!.position).toBe(2);
      expect(await codeOf(outsider.open({ link: "l", cluster: "site7", topics: [binding("t", "site7.t")] }))).toBe("PERMISSION_DENIED");
      expect(await codeOf(outsider.send([send("t", sourceLog([2]))]))).toBe("PERMISSION_DENIED");
      expect(await codeOf(sink.open({ link: "l", cluster: "site8", topics: [binding("t", "site8.t")] }))).toBe("PERMISSION_DENIED");
    } finally {
      await sink.close();
      await outsider.close();
      await gateway.stop();
      await broker.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
