/** What every service of the gRPC gateway shares: the broker, limits, metrics and the logger. */
import type { Broker } from "../../src/broker.ts";
import type { ConcurrencyGate } from "../../src/concurrency-gate.ts";
import type { Counter, Gauge } from "../../src/metrics.ts";
import type { Logger } from "../../src/logger.ts";
import type { MirrorControl } from "../../src/mirror/edge.ts";

export interface GrpcLimits {
  host: string;
  port: number;
  maxMessageBytes: number;
  /** Encoded bytes of one Subscribe message (one record larger goes alone). */
  subscribeMaxBytes: number;
  streamMaxInflight: number;
  maxLongPolls: number;
  maxSubscriptions: number;
  maxWaitMs: number;
}

export interface GrpcMetrics {
  calls: Counter;
  produceStreams: Gauge;
  streamPauses: Counter;
  subscriptions: Gauge;
}

export interface GrpcDeps {
  broker: Broker;
  limits: GrpcLimits;
  metrics: GrpcMetrics;
  logger: Logger;
  longPolls: ConcurrencyGate;
  subscriptions: ConcurrencyGate;
  /** The edge's mirror links (AdminService.DescribeMirror); absent: nothing is mirrored. */
  mirror?: MirrorControl;
}

