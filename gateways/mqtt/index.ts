/**
 * The MQTT bridge: connects to the MQTT brokers of the config file (`mqtt.config`) as a client,
 * maps what it receives into log records (ingress), and publishes records of chosen log topics to
 * MQTT (egress).
 *
 *   config.ts   the JSON file, checked whole (INVALID_CONFIG)
 *   rules.ts    topic patterns, templates, mapping and payload validation: pure
 *   ingress.ts  one MQTT connection: subscribe, map, acknowledge only durable records
 *   batcher.ts  messages grouped per log topic into bounded produce calls
 *   egress.ts   log records to MQTT topics, with a stored position per partition
 *
 * @example
 *   const bridge = await startMqttBridge(broker, { configPath: "/etc/tributary/mqtt.json", logger });
 *   await bridge.stop();
 */
import { readFile } from "node:fs/promises";
import type { Broker } from "../../src/broker.ts";
import { TributaryError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import type { SecurityGuard } from "../../src/security/guard.ts";
import { bridgeAdmitter, bridgeThrottle, checkBridgeRules } from "./auth.ts";
import { Batcher } from "./batcher.ts";
import { parseBridgeConfig, type BridgeConfig } from "./config.ts";
import { EgressRule } from "./egress.ts";
import { IngressConnection } from "./ingress.ts";
import { bridgeMetrics } from "./metrics.ts";

export interface MqttBridgeOptions {
  configPath: string;
  logger: Logger;
  /** With authentication on: the guard and the principal the bridge runs as (see auth.ts). */
  security?: { guard: SecurityGuard; principal: string };
}

export interface RunningBridge {
  /** Stop taking MQTT messages (unacknowledged ones stay with the MQTT broker) and disconnect. */
  stop(): Promise<void>;
}

/** Read and check the config file; a bad file throws INVALID_CONFIG naming the field. */
export async function loadBridgeConfig(path: string): Promise<BridgeConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new TributaryError("INVALID_CONFIG", `MQTT bridge config ${path} cannot be read: ${(e as Error).message}`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new TributaryError("INVALID_CONFIG", `MQTT bridge config ${path} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  const config = parseBridgeConfig(json);
  for (const c of config.connections) {
    for (const f of [c.tls?.ca, c.tls?.cert, c.tls?.key]) {
      if (!f) continue;
      try {
        await readFile(f);
      } catch (e) {
        throw new TributaryError("INVALID_CONFIG", `MQTT bridge config: connection ${c.name}: TLS file ${f} cannot be read: ${(e as Error).message}`, { cause: e });
      }
    }
  }
  return config;
}

export async function startMqttBridge(broker: Broker, options: MqttBridgeOptions): Promise<RunningBridge> {
  const { logger } = options;
  const config = await loadBridgeConfig(options.configPath);
  const security = options.security;
  if (security) checkBridgeRules(config, security.guard, security.principal);
  const admit = security ? bridgeAdmitter(security.guard, security.principal) : undefined;
  const throttle = security ? bridgeThrottle(security.guard, security.principal) : undefined;
  const metrics = bridgeMetrics(broker);
  const batcher = new Batcher(broker, config.batch, metrics, logger);
  const connections = config.connections.map((c) => new IngressConnection(c, config.ingress.get(c.name) ?? [], batcher, metrics, logger, admit, throttle));
  const clients = new Map(connections.map((conn, i) => [config.connections[i]!.name, conn.start()]));
  const egress = config.egress.map((rule) => new EgressRule(rule, broker, clients.get(rule.connection)!, metrics, logger));
  for (const e of egress) e.start();
  logger.info("MQTT bridge started", {
    connections: config.connections.map((c) => ({ name: c.name, url: c.url, clientId: c.clientId, subscriptions: c.subscriptions.map((s) => s.filter) })),
    egress: config.egress.map((e) => ({ topic: e.topic, mqttTopic: e.mqttTopicText })),
  });
  let stopping: Promise<void> | null = null;
  return {
    stop() {
      stopping ??= (async () => {
        await Promise.all(egress.map((e) => e.stop()));
        // Records waiting on the quota go on to the stopping batcher, which refuses them: unacknowledged.
        throttle?.stop();
        // Produces in flight finish and their acknowledgements go out; queued messages stay
        // unacknowledged and the MQTT broker keeps them for the persistent session.
        await batcher.stop();
        await Promise.all(connections.map((c) => c.drain(1_000)));
        await Promise.all(connections.map((c) => c.stop()));
        logger.info("MQTT bridge stopped");
      })();
      return stopping;
    },
  };
}
