/** CONTRACT STUB — the MQTT helper implements it: start the MQTT bridge described by a JSON file. */
import type { Broker } from "../../src/broker.ts";
import type { Logger } from "../../src/logger.ts";

export interface MqttBridgeOptions {
  configPath: string;
  logger: Logger;
}

export interface RunningBridge {
  /** Stop taking MQTT messages (unacknowledged ones stay with the MQTT broker) and disconnect. */
  stop(): Promise<void>;
}

export async function startMqttBridge(_broker: Broker, _options: MqttBridgeOptions): Promise<RunningBridge> {
  throw new Error("the MQTT bridge is not built yet");
}
