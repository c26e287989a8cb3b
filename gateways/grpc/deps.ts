/** What every service of the gRPC gateway shares: the broker, limits, metrics and the logger. */
import type { Broker } from "../../src/broker.ts";
import { TributaryError } from "../../src/errors.ts";
import type { Counter, Gauge } from "../../src/metrics.ts";
import type { Logger } from "../../src/logger.ts";

export interface GrpcLimits {
  host: string;
  port: number;
  maxMessageBytes: number;
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
  longPolls: Gate;
  subscriptions: Gate;
}

/**
 * A counting gate for calls that hold the server's attention (long polls, live tails). It never
 * queues: past `max` the call is refused with OVERLOADED (UNAVAILABLE), so waiting work is bounded.
 */
export class Gate {
  private active = 0;

  constructor(
    readonly max: number,
    private readonly what: string,
    private readonly onChange: (active: number) => void = () => {},
  ) {}

  acquire(): () => void {
    if (this.active >= this.max) throw new TributaryError("OVERLOADED", `too many concurrent ${this.what} (limit ${this.max}); retry later`);
    this.active++;
    this.onChange(this.active);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.onChange(this.active);
    };
  }
}
