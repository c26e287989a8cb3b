/**
 * The gRPC gateway: the services of proto/tributary/v1 over the broker, on @grpc/grpc-js (which
 * runs on Bun's and Deno's node:http2). One server, four services:
 *
 *   ProducerService  Produce, ProduceStream (bidirectional, flow-controlled), InitProducerId   producer.ts
 *   ConsumerService  Fetch (long poll), Subscribe (live tail)                                   consumer.ts
 *   AdminService     topics, DescribeCluster                                                     admin.ts
 *   GroupsService    KIP-848-style consumer groups                                              groups.ts
 *   MirrorService    the central's end of edge mirror links (mirror.central=true only)           mirror.ts
 *
 * bridge.ts turns the generated protobuf-es descriptors into grpc-js service definitions;
 * errors.ts holds the one table from Tributary error codes to gRPC status codes. Messages over
 * grpc.max.message.bytes are refused by grpc-js with RESOURCE_EXHAUSTED, both ways.
 *
 * TLS (tls.cert.file ...): the listener serves TLS only; with a client CA it requests a client
 * certificate and refuses a handshake without one from that CA (mutual TLS), and a call without a
 * bearer token runs as the certificate's subject CN (guard.ts decides). reloadTls swaps the
 * certificate in place: grpc-js hands new credentials' context to the http2 server's
 * setSecureContext, so new connections get it and open ones keep going.
 *
 * @example
 *   const grpc = await startGrpcGateway(broker, { ...config.grpc, logger });
 *   // ... later
 *   await grpc.stop();
 */
import * as grpc from "@grpc/grpc-js";
import type { Broker } from "../../src/broker.ts";
import type { Logger } from "../../src/logger.ts";
import type { SecurityGuard } from "../../src/security/guard.ts";
import type { TlsMaterial } from "../../src/security/tls.ts";
import { ReloadableServerCredentials } from "./reloadable-credentials.ts";
import { adminHandlers } from "./admin.ts";
import type { MirrorControl } from "../../src/mirror/edge.ts";
import { callGuard } from "./auth.ts";
import { serverImplementation, type ErrorReporter } from "./bridge.ts";
import { consumerHandlers } from "./consumer.ts";
import { defaultConfig } from "../../src/config.ts";
import { ConcurrencyGate } from "../../src/concurrency-gate.ts";
import type { GrpcDeps, GrpcLimits, GrpcMetrics } from "./deps.ts";
import { AdminService } from "./gen/tributary/v1/admin_pb.ts";
import { ConsumerService } from "./gen/tributary/v1/consumer_pb.ts";
import { GroupsService } from "./gen/tributary/v1/groups_pb.ts";
import { ProducerService } from "./gen/tributary/v1/producer_pb.ts";
import { groupsHandlers } from "./groups.ts";
import { MirrorService } from "./gen/tributary/mirror/v1/mirror_pb.ts";
import { mirrorHandlers, mirrorServiceDisabled } from "./mirror.ts";
import { producerHandlers } from "./producer.ts";

export interface GrpcGatewayOptions {
  host: string;
  port: number;
  maxMessageBytes: number;
  streamMaxInflight: number;
  logger: Logger;
  /** Encoded bytes of one Subscribe message, at most maxMessageBytes. Default 256 KiB (grpc.subscribe.max.bytes). */
  subscribeMaxBytes?: number;
  /** Concurrent Fetch long polls; more get UNAVAILABLE (OVERLOADED). Default 1000. */
  maxLongPolls?: number;
  /** Concurrent Subscribe streams; more get UNAVAILABLE (OVERLOADED). Default 100. */
  maxSubscriptions?: number;
  /** Longest Fetch long poll (wait_ms is capped to it, and to the deadline). Default 30 s. */
  maxWaitMs?: number;
  /** Authentication and ACLs (auth.ts); absent: authentication is off. */
  guard?: SecurityGuard;
  /** Serve TLS with this material; absent: plain text. */
  tls?: TlsMaterial;
  /** The edge's mirror links (AdminService.DescribeMirror); absent: nothing is mirrored. */
  mirror?: MirrorControl;
}

export interface RunningGateway {
  /** The port actually bound (the configured one, or the one picked for 0). */
  port: number;
  stop(): Promise<void>;
  /** New connections get this material; open ones keep theirs. */
  reloadTls(material: TlsMaterial): void;
}

/** Calls still running this long after stop() are cut off (a Subscribe never ends by itself). */
const SHUTDOWN_GRACE_MS = 5_000;

export async function startGrpcGateway(broker: Broker, options: GrpcGatewayOptions): Promise<RunningGateway> {
  const limits: GrpcLimits = {
    host: options.host,
    port: options.port,
    maxMessageBytes: options.maxMessageBytes,
    subscribeMaxBytes: Math.min(options.subscribeMaxBytes ?? defaultConfig().grpc.subscribeMaxBytes, options.maxMessageBytes),
    streamMaxInflight: options.streamMaxInflight,
    maxLongPolls: options.maxLongPolls ?? 1000,
    maxSubscriptions: options.maxSubscriptions ?? 100,
    maxWaitMs: options.maxWaitMs ?? 30_000,
  };
  const m = broker.metrics;
  const metrics: GrpcMetrics = {
    calls: m.counter("tributary_grpc_refusals_total", "gRPC calls and ProduceStream batches refused, by method and error code", ["method", "code"]),
    produceStreams: m.gauge("tributary_grpc_produce_streams_active", "Open ProduceStream calls"),
    streamPauses: m.counter("tributary_grpc_produce_stream_pauses_total", "Times a ProduceStream stopped being read at grpc.stream.max.inflight"),
    subscriptions: m.gauge("tributary_grpc_subscriptions_active", "Open Subscribe streams"),
  };
  const longPolls = m.gauge("tributary_grpc_long_polls_active", "Fetch calls waiting for records");
  const deps: GrpcDeps = {
    broker,
    limits,
    metrics,
    logger: options.logger,
    longPolls: new ConcurrencyGate(limits.maxLongPolls, "long polls", (n) => longPolls.set(undefined, n)),
    subscriptions: new ConcurrencyGate(limits.maxSubscriptions, "subscriptions", (n) => metrics.subscriptions.set(undefined, n)),
    ...(options.mirror ? { mirror: options.mirror } : {}),
  };
  const report: ErrorReporter = (method, error, cause) => {
    metrics.calls.inc({ method, code: error.code });
    if (error.code === "INTERNAL") options.logger.error("gRPC call failed", { method, error: cause });
  };

  const server = new grpc.Server({
    "grpc.max_receive_message_length": limits.maxMessageBytes,
    "grpc.max_send_message_length": limits.maxMessageBytes,
  });
  let port = 0;
  const mirrorTargets = { targetOf: (c: string, t: string) => broker.mirrorTargetOf(c, t), targetsOf: (c: string) => broker.mirrorTargetsOf(c) };
  const guard = options.guard ? callGuard(options.guard, mirrorTargets, () => port) : undefined;
  server.addService(...serverImplementation(ProducerService, producerHandlers(deps), report, guard));
  server.addService(...serverImplementation(ConsumerService, consumerHandlers(deps), report, guard));
  server.addService(...serverImplementation(AdminService, adminHandlers(deps, () => port), report, guard));
  server.addService(...serverImplementation(GroupsService, groupsHandlers(deps), report, guard));
  server.addService(...(broker.config.mirrorCentral ? serverImplementation(MirrorService, mirrorHandlers(deps), report, guard) : mirrorServiceDisabled()));

  const host = limits.host.includes(":") ? `[${limits.host}]` : limits.host;
  const credentials = options.tls ? new ReloadableServerCredentials(options.tls) : null;
  port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${limits.port}`, credentials ?? grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
  });

  let stopped: Promise<void> | null = null;
  return {
    port,
    reloadTls(material) {
      if (!credentials) throw new Error("the gRPC listener was started without TLS");
      credentials.update(material);
    },
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, SHUTDOWN_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      return stopped;
    },
  };
}
