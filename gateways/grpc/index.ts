/** CONTRACT STUB — the gRPC helper implements it: start the gRPC gateway over the broker. */
import type { Broker } from "../../src/broker.ts";
import type { Logger } from "../../src/logger.ts";

export interface GrpcGatewayOptions {
  host: string;
  port: number;
  maxMessageBytes: number;
  streamMaxInflight: number;
  logger: Logger;
}

export interface RunningGateway {
  /** The port actually bound (the configured one, or the one picked for 0). */
  port: number;
  stop(): Promise<void>;
}

export async function startGrpcGateway(_broker: Broker, _options: GrpcGatewayOptions): Promise<RunningGateway> {
  return { port: 0, stop: async () => {} };
}
