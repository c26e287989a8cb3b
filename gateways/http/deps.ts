/** What every route file is given: the broker, the gateway's limits, and its logger. */
import type { Broker } from "../../src/broker.ts";
import type { Logger } from "../../src/logger.ts";
import type { SecurityGuard } from "../../src/security/guard.ts";
import type { ConcurrencyGate } from "../../src/concurrency-gate.ts";
import type { MirrorControl } from "../../src/mirror/edge.ts";

export type { MirrorControl };

export interface HttpGatewayOptions {
  /** Largest request body, checked on Content-Length and on the bytes read: 413 beyond. */
  maxRequestBytes: number;
  /** A fetch's waitMs is capped to this. */
  maxWaitMs: number;
  /** Concurrent long-poll fetches (waitMs > 0); more get 503 OVERLOADED. */
  maxLongPolls: number;
  /** Concurrent SSE streams; more get 503 OVERLOADED. */
  maxStreams: number;
  logger: Logger;
  /** Authentication and ACLs (gateways/http/auth.ts); absent: authentication is off. */
  guard?: SecurityGuard;
  /** The edge's mirror links (GET /v1/mirror); absent: nothing is mirrored. */
  mirror?: MirrorControl;
}


export interface GatewayDeps {
  broker: Broker;
  options: HttpGatewayOptions;
  longPolls: ConcurrencyGate;
  streams: ConcurrencyGate;
}
