/**
 * `tributary serve`: the composition root. Settings (flags over env over config file over
 * defaults) -> broker (recovers every partition) -> HTTP gateway -> the runtime's HTTP server.
 * SIGTERM and SIGINT close the server, then the broker, so every log is flushed and indexed.
 *
 * Once the gateway listens it logs one JSON line `{"msg":"listening","listener":"http","url":...,"port":...}`
 * on stderr; scripts and tests wait for it.
 */
import { parseArgs } from "node:util";
import { readFile } from "node:fs/promises";
import { Broker } from "../src/broker.ts";
import { SETTINGS, flagName, resolveConfig, type BrokerConfig } from "../src/config.ts";
import { isTributaryError } from "../src/errors.ts";
import { createLogger } from "../src/logger.ts";
import { startHttpServer } from "../src/runtime/http-server.ts";
import { createHttpApp } from "../gateways/http/app.ts";
import { startGrpcGateway } from "../gateways/grpc/index.ts";
import { startMqttBridge } from "../gateways/mqtt/index.ts";

const USAGE = `usage: tributary serve [--config FILE] [--data-dir DIR] [--http-port N] [--<setting> VALUE ...]

Every setting has a flag (--http-port), an environment variable (TRIBUTARY_HTTP_PORT) and a key in
the JSON config file ("http.port"); flags win over the environment, which wins over the file.
Settings:
${SETTINGS.map((s) => `  ${flagName(s.key).padEnd(30)} ${s.doc} (default ${String(s.default)})`).join("\n")}
`;

export async function loadServeConfig(argv: string[], env: Record<string, string | undefined>): Promise<BrokerConfig | "help"> {
  const options: Record<string, { type: "string" | "boolean" }> = { config: { type: "string" }, help: { type: "boolean" } };
  for (const s of SETTINGS) options[flagName(s.key).slice(2)] = { type: "string" };
  const { values } = parseArgs({ args: argv, options, allowPositionals: false, strict: true });
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
  return resolveConfig({ flags, env, file });
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
  const broker = await Broker.open(config, { logger });
  const app = createHttpApp(broker, {
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
  });
  const host = config.http.host.includes(":") ? `[${config.http.host}]` : config.http.host;
  const url = `http://${host}:${server.port}`;
  if (!isLoopback(config.http.host)) {
    logger.warn("the HTTP gateway listens beyond loopback and has no authentication yet", { host: config.http.host });
  }
  logger.info("listening", { listener: "http", url, port: server.port });
  const grpc = await startGrpcGateway(broker, { ...config.grpc, logger });
  logger.info("listening", { listener: "grpc", url: `${config.grpc.host}:${grpc.port}`, port: grpc.port });
  let mqtt: Awaited<ReturnType<typeof startMqttBridge>> | null = null;
  if (config.mqttConfigPath) {
    try {
      mqtt = await startMqttBridge(broker, { configPath: config.mqttConfigPath, logger });
    } catch (e) {
      // A bridge that cannot start (a bad config file, unreadable TLS files) stops the broker:
      // running without it would leave devices' messages piling up in the MQTT broker unseen.
      const code = isTributaryError(e) ? `${e.code}: ` : "";
      logger.error("the MQTT bridge could not start", { error: e });
      console.error(`error: ${code}${(e as Error).message}`);
      await broker.close();
      await Promise.all([server.stop(), grpc.stop()]);
      return 2;
    }
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("shutting down", { signal });
    try {
      // Broker first: it wakes waiting long polls and streams (they answer 503 NOT_READY at once),
      // and flushes appends in flight, whose replies then go out during the server's grace period.
      // The bridge first: it stops taking MQTT messages, so none is acknowledged that the log
      // will not hold; the broker then wakes readers and flushes; the servers drain last.
      await mqtt?.stop();
      await broker.close();
      await Promise.all([server.stop(), grpc.stop()]);
    } finally {
      process.exit(0);
    }
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  return 0;
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}
