/**
 * `tributary serve`: the composition root. Settings (flags over env over config file over
 * defaults) -> broker (recovers every partition) -> HTTP gateway -> the runtime's HTTP server.
 * SIGTERM and SIGINT close the server, then the broker, so every log is flushed and indexed.
 *
 * Once the gateway listens it logs one JSON line `{"msg":"listening","listener":"http","url":...,"port":...}`
 * on stderr; scripts and tests wait for it.
 *
 * TLS (tls.cert.file, tls.key.file, tls.ca.file) covers the HTTP, gRPC and peer listeners alike (and
 * the peer links' client certificate). SIGHUP
 * re-reads the three files and gives new connections the new material without stopping the
 * process; a file that does not read or does not make a TLS context is logged and the listeners
 * keep what they have (see README, Security).
 */
import { parseArgs } from "node:util";
import { readFile } from "node:fs/promises";
import { Broker } from "../src/broker.ts";
import { SETTINGS, flagName, resolveConfig, type BrokerConfig } from "../src/config.ts";
import { TributaryError, isTributaryError } from "../src/errors.ts";
import { exposureVerdict } from "../src/security/exposure.ts";
import { SecurityGuard } from "../src/security/guard.ts";
import { readTlsMaterial, type TlsMaterial } from "../src/security/tls.ts";
import { createLogger } from "../src/logger.ts";
import { Metrics } from "../src/metrics.ts";
import { startHttpServer } from "../src/runtime/http-server.ts";
import { createHttpApp } from "../gateways/http/app.ts";
import { startGrpcGateway } from "../gateways/grpc/index.ts";
import type { RunningBridge } from "../gateways/mqtt/index.ts";
import type { GrpcTransport } from "../gateways/peer/transport.ts";
import { isLoopback } from "../src/security/exposure.ts";
import { systemClock } from "../src/runtime/clock.ts";
import type { Logger } from "../src/logger.ts";
import type { MirrorLinkConfig } from "../src/mirror/config.ts";
import type { MirrorEdge, LinkSinkFactory } from "../src/mirror/edge.ts";
import type { GrpcMirrorSinkOptions } from "../gateways/grpc/mirror-sink.ts";
import { IdleHeapCompactor, v8HeapCompaction } from "../src/runtime/heap.ts";

const USAGE = `usage: tributary serve [--config FILE] [--data-dir DIR] [--http-port N] [--<setting> VALUE ...]

Every setting has a flag (--http-port), an environment variable (TRIBUTARY_HTTP_PORT) and a key in
the JSON config file ("http.port"); flags win over the environment, which wins over the file.
Settings:
${SETTINGS.map((s) => `  ${flagName(s.key).padEnd(30)} ${s.doc} (default ${String(s.default)})`).join("\n")}
`;

export async function loadServeConfig(argv: string[], env: Record<string, string | undefined>): Promise<BrokerConfig | "help"> {
  const options: Record<string, { type: "string" | "boolean" }> = { config: { type: "string" }, help: { type: "boolean" } };
  for (const s of SETTINGS) options[flagName(s.key).slice(2)] = { type: "string" };
  const { values } = parseArgs({ args: withBareBooleans(argv), options, allowPositionals: false, strict: true });
  if (values.help) return "help";
  const flags: Record<string, string> = {};
  for (const s of SETTINGS) {
    const v = values[flagName(s.key).slice(2)];
    if (typeof v === "string") flags[s.key] = v;
  }
  const configPath = (values.config as string | undefined) ?? env.TRIBUTARY_CONFIG;
  let file: unknown = null;
  if (configPath) {
    const text = await readFile(configPath, "utf8");
    try {
      file = JSON.parse(text);
    } catch (e) {
      throw new Error(`config file ${configPath} is not valid JSON: ${(e as Error).message}`);
    }
  }
  const config = resolveConfig({ flags, env, file });
  checkSecuritySettings(config);
  return config;
}

/** `--insecure` alone means `--insecure true`, for every bool setting. */
function withBareBooleans(argv: string[]): string[] {
  const bools = new Set(SETTINGS.filter((s) => s.kind === "bool").map((s) => flagName(s.key)));
  const out: string[] = [];
  argv.forEach((a, i) => {
    out.push(a);
    const next = argv[i + 1];
    if (bools.has(a) && (next === undefined || next.startsWith("--"))) out.push("true");
  });
  return out;
}

/** Secure by default (src/security/exposure.ts), and settings that only make sense together. */
function checkSecuritySettings(config: BrokerConfig): void {
  const sec = config.security;
  const mutualTls = mutualTlsOn(config);
  const authOn = sec.tokensFile !== "" || mutualTls;
  if (!authOn && sec.aclFile !== "") throw new TributaryError("INVALID_CONFIG", "auth.acl.file is set but neither auth.tokens.file nor tls.ca.file is: ACLs need authentication");
  if (authOn && config.mqttConfigPath !== "" && sec.mqttPrincipal === "") {
    throw new TributaryError("INVALID_CONFIG", "with authentication on, the MQTT bridge needs mqtt.principal: the principal whose ACL rules its mapping rules follow");
  }
  const verdict = exposureVerdict({ httpHost: config.http.host, grpcHost: config.grpc.host, authOn, mutualTls, insecure: sec.insecure });
  if (verdict.error) throw new TributaryError("INVALID_CONFIG", verdict.error);
  const cluster = config.cluster;
  if (cluster) {
    // Peers take Raft messages from each other: off loopback, they must prove who they are.
    if (config.tls && !mutualTls) throw new TributaryError("INVALID_CONFIG", "with TLS on, peer links use mutual TLS: set tls.ca.file to the CA of the peers' certificates");
    if (!isLoopback(cluster.listenHost) && !mutualTls && !sec.insecure) {
      throw new TributaryError("INVALID_CONFIG", `the peer listener on ${cluster.listenHost} is beyond loopback without mutual TLS: set tls.cert.file, tls.key.file and tls.ca.file, or --insecure`);
    }
  }
}

/** Mutual TLS: client certificates verified against tls.ca.file; it authenticates like a token file. */
function mutualTlsOn(config: BrokerConfig): boolean {
  return config.tls !== null && config.tls.caFile !== "";
}

export async function runServe(argv: string[]): Promise<number> {
  let config: BrokerConfig | "help";
  try {
    config = await loadServeConfig(argv, process.env);
  } catch (e) {
    const code = isTributaryError(e) ? `${e.code}: ` : "";
    console.error(`error: ${code}${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (config === "help") {
    console.log(USAGE);
    return 0;
  }
  const logger = createLogger(config.logLevel);
  const sec = config.security;
  const mutualTls = mutualTlsOn(config);
  const authOn = sec.tokensFile !== "" || mutualTls;
  const verdict = exposureVerdict({ httpHost: config.http.host, grpcHost: config.grpc.host, authOn, mutualTls, insecure: sec.insecure });
  if (verdict.warning) logger.warn(verdict.warning, { httpHost: config.http.host, grpcHost: config.grpc.host });
  if (verdict.note) logger.info(verdict.note, { httpHost: config.http.host, grpcHost: config.grpc.host });
  let tls: TlsMaterial | undefined;
  if (config.tls) {
    try {
      tls = await readTlsMaterial(config.tls);
    } catch (e) {
      const code = isTributaryError(e) ? `${e.code}: ` : "";
      console.error(`error: ${code}${(e as Error).message}`);
      return 2;
    }
  }
  // One registry for the broker and the peer transport, so GET /metrics shows the peer counters.
  const metrics = new Metrics();
  let transport: GrpcTransport | undefined;
  if (config.cluster) {
    const c = config.cluster;
    // Loaded only for a cluster (as the MQTT bridge below): modules not loaded cost no memory (README, Performance).
    const { GrpcTransport } = await import("../gateways/peer/transport.ts");
    transport = await GrpcTransport.start({
      self: c.nodeId,
      host: c.listenHost,
      port: c.listenPort,
      peers: c.peers,
      metrics,
      logger,
      ...(tls && config.tls?.caFile ? { tls: { cert: tls.cert, key: tls.key, ca: tls.ca! } } : {}),
    });
    logger.info("listening", { listener: "peer", url: `${c.listenHost}:${transport.port}`, port: transport.port, node: c.nodeId });
  }
  const broker = await Broker.open(config, { logger, metrics, ...(transport ? { cluster: { transport } } : {}) });
  let guard: SecurityGuard | undefined;
  if (authOn) {
    try {
      guard = await SecurityGuard.open({ tokensFile: sec.tokensFile, aclFile: sec.aclFile, metrics: broker.metrics, logger });
    } catch (e) {
      const code = isTributaryError(e) ? `${e.code}: ` : "";
      console.error(`error: ${code}${(e as Error).message}`);
      await broker.close();
      return 2;
    }
  }
  let mirror: MirrorEdge | null = null;
  if (config.mirror.configPath) {
    try {
      mirror = await startMirror(broker, config, logger);
    } catch (e) {
      // Links that cannot start stop the broker, as the MQTT bridge's do: data would pile up unmirrored unseen.
      const code = isTributaryError(e) ? `${e.code}: ` : "";
      console.error(`error: ${code}${(e as Error).message}`);
      await broker.close();
      return 2;
    }
  }
  const app = createHttpApp(broker, {
    ...(mirror ? { mirror } : {}),
    guard,
    maxRequestBytes: config.http.maxRequestBytes,
    maxWaitMs: config.http.maxWaitMs,
    maxLongPolls: config.http.maxLongPolls,
    maxStreams: config.http.maxStreams,
    logger,
  });
  const server = await startHttpServer(app.fetch, {
    hostname: config.http.host,
    port: config.http.port,
    maxRequestBodyBytes: config.http.maxRequestBytes,
    ...(tls ? { tls } : {}),
  });
  const host = config.http.host.includes(":") ? `[${config.http.host}]` : config.http.host;
  const url = `${tls ? "https" : "http"}://${host}:${server.port}`;
  logger.info("listening", { listener: "http", url, port: server.port });
  const grpc = await startGrpcGateway(broker, { ...config.grpc, logger, guard, ...(tls ? { tls } : {}), ...(mirror ? { mirror } : {}) });
  logger.info("listening", { listener: "grpc", url: `${config.grpc.host}:${grpc.port}`, port: grpc.port });
  let mqtt: RunningBridge | null = null;
  if (config.mqttConfigPath) {
    try {
      const { startMqttBridge } = await import("../gateways/mqtt/index.ts");
      mqtt = await startMqttBridge(broker, {
        configPath: config.mqttConfigPath,
        logger,
        ...(guard ? { security: { guard, principal: sec.mqttPrincipal } } : {}),
      });
    } catch (e) {
      // A bridge that cannot start (a bad config file, unreadable TLS files) stops the broker:
      // running without it would leave devices' messages piling up in the MQTT broker unseen.
      const code = isTributaryError(e) ? `${e.code}: ` : "";
      logger.error("the MQTT bridge could not start", { error: e });
      console.error(`error: ${code}${(e as Error).message}`);
      await mirror?.stop();
      await broker.close();
      await Promise.all([server.stop(), grpc.stop()]);
      return 2;
    }
  }

  let stopping = false;
  // Deno: give the heap back when the broker goes idle (src/runtime/heap.ts); Bun runs without.
  const heapHooks = v8HeapCompaction();
  const compactor = heapHooks ? new IdleHeapCompactor(systemClock, heapHooks) : null;
  compactor?.start();
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    try {
      // Broker first: it wakes waiting long polls and streams (they answer 503 NOT_READY at once),
      // and flushes appends in flight, whose replies then go out during the server's grace period.
      // The bridge first: it stops taking MQTT messages, so none is acknowledged that the log
      // will not hold; the broker then wakes readers and flushes; the servers drain last.
      compactor?.stop();
      await mqtt?.stop();
      // The mirror before the broker: its last positions are written to __mirror_checkpoints.
      await mirror?.stop();
      await broker.close();
      await Promise.all([server.stop(), grpc.stop()]);
    } finally {
      process.exit(0);
    }
  };
  const tlsFiles = config.tls;
  if (tlsFiles) {
    let reloading = false;
    process.on("SIGHUP", () => {
      if (reloading || stopping) return;
      reloading = true;
      void (async () => {
        try {
          const material = await readTlsMaterial(tlsFiles);
          grpc.reloadTls(material);
          // The peer listener and links run mutual TLS only with a CA (checked at start).
          if (transport && material.ca !== null) transport.reloadTls({ cert: material.cert, key: material.key, ca: material.ca });
          try {
            await server.reloadTls(material);
            logger.info("tls: reloaded", { listeners: transport && material.ca !== null ? ["http", "grpc", "peer"] : ["http", "grpc"] });
          } catch (e) {
            logger.warn("tls: reloaded for gRPC; the HTTP listener keeps its old certificate", { error: e });
          }
        } catch (e) {
          logger.error("tls: could not reload; the listeners keep the previous certificate", { error: e });
        } finally {
          reloading = false;
        }
      })();
    });
  }
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  return 0;
}

/** Read and check mirror.config, and start the edge's links (each link's sink made by the gRPC mirror sink). */
async function startMirror(broker: Broker, config: BrokerConfig, logger: Logger): Promise<MirrorEdge> {
  // Loaded only when a mirror is configured, as the MQTT bridge is: a broker that mirrors nothing never holds them.
  const [{ parseMirrorConfig }, { MirrorEdge }, { brokerMirrorHost }] = await Promise.all([
    import("../src/mirror/config.ts"),
    import("../src/mirror/edge.ts"),
    import("../src/mirror/broker-host.ts"),
  ]);
  const path = config.mirror.configPath;
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new TributaryError("INVALID_CONFIG", `mirror.config ${path}: ${(e as Error).message}`);
  }
  const mirrorConfig = parseMirrorConfig(json, config.mirror.clusterId);
  const edge = new MirrorEdge({
    clusterId: config.mirror.clusterId,
    config: mirrorConfig,
    host: brokerMirrorHost(broker),
    sinkFor: await grpcSinkFactory(mirrorConfig.links, config.grpc.maxMessageBytes),
    clock: systemClock,
    random: Math.random,
    logger,
    metrics: broker.metrics,
    checkpointIntervalMs: config.mirror.checkpointIntervalMs,
    onPositionsMoved: () => void broker.mirrorPositionsMoved(),
  });
  // Edge retention keeps what the links have not brought to the central (src/mirror/retention-driver.ts).
  broker.setMirrorRetention(edge.retention);
  await edge.start();
  return edge;
}

/**
 * The Tributary sink (gateways/grpc/mirror-sink.ts, `GrpcMirrorSink`), loaded when a mirror is
 * configured; TLS files are read once here. Dynamic, so a broker that mirrors nothing never loads it.
 */
async function grpcSinkFactory(links: readonly MirrorLinkConfig[], maxMessageBytes: number): Promise<LinkSinkFactory> {
  const { GrpcMirrorSink } = await import("../gateways/grpc/mirror-sink.ts");
  const tls = new Map<string, GrpcMirrorSinkOptions["tls"]>();
  for (const l of links) {
    if (!l.central.tls) continue;
    const [ca, cert, key] = await Promise.all([l.central.tls.ca, l.central.tls.cert, l.central.tls.key].map((f) => readFile(f, "utf8")));
    tls.set(l.name, { ca: ca!, cert: cert!, key: key! });
  }
  return (link) => new GrpcMirrorSink({ address: link.central.address, tls: tls.get(link.name) ?? null, token: link.central.token, maxMessageBytes, compression: link.compression });
}
