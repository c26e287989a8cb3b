/**
 * A private Mosquitto for a test: its own config file and persistence directory in a temp dir,
 * on a free loopback port — never the system service. Ready once it accepts a TCP connection
 * (polled, no fixed sleep). `restart()` brings it back on the same port and with the same
 * persistence file, so persistent sessions survive like on a real gateway.
 *
 * @example
 *   const mq = await startMosquitto({ maxQueuedMessages: 100 });
 *   const client = await mqtt.connectAsync(mq.url);
 *   await mq.stop();
 */
import { afterEach } from "vitest";
import type { MqttClient } from "mqtt";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BrokerProcess } from "./broker-process.ts";
import { freePort } from "./ports.ts";

// Re-exported: the MQTT tests import them from here; they live in their own files for every test.
export { freePort } from "./ports.ts";
export { waitFor } from "./wait.ts";

export interface MosquittoOptions {
  /** QoS 1/2 messages queued per offline (or slow) persistent client before Mosquitto drops them; Mosquitto's default is 1000. */
  maxQueuedMessages?: number;
  /** In-flight QoS 1/2 messages per MQTT 3.1.1 client (MQTT 5 clients set their own Receive Maximum). */
  maxInflightMessages?: number;
  persistence?: boolean;
  extraConfig?: string[];
}

export interface Mosquitto {
  url: string;
  port: number;
  dir: string;
  /** The running process's id (changes on restart; -1 while stopped): benchmarks read its CPU and RSS. */
  readonly pid: number;
  /** Every stderr/stdout line so far (Mosquitto logs there). */
  logLines(): string[];
  /** Stop gracefully (SIGTERM: it saves its persistence file) and start again on the same port. */
  restart(signal?: NodeJS.Signals): Promise<void>;
  kill(signal: NodeJS.Signals): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The Debian package installs it in /usr/sbin, which is not on every PATH. */
export function mosquittoBinary(): string {
  for (const p of ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto", "/opt/homebrew/sbin/mosquitto"]) {
    if (existsSync(p)) return p;
  }
  return "mosquitto";
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

const LOG_LINES_MAX = 5000;

export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-mosquitto-"));
  const port = await freePort();
  const conf = [
    `listener ${port} 127.0.0.1`,
    "allow_anonymous true",
    // Started as root, Mosquitto drops to the user "mosquitto", which cannot write its
    // persistence file in our temp dir: stay who we are.
    ...(process.getuid?.() === 0 ? ["user root"] : []),
    `persistence ${options.persistence === false ? "false" : "true"}`,
    `persistence_location ${dir}/`,
    // Mosquitto's own defaults, written out so tests can see what they rely on.
    `max_queued_messages ${options.maxQueuedMessages ?? 1000}`,
    `max_inflight_messages ${options.maxInflightMessages ?? 20}`,
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "log_type notice",
    "log_type information",
    ...(options.extraConfig ?? []),
  ];
  const confPath = join(dir, "mosquitto.conf");
  await writeFile(confPath, `${conf.join("\n")}\n`);
  const lines: string[] = [];
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const start = async (): Promise<void> => {
    const c = spawn(mosquittoBinary(), ["-c", confPath], { stdio: ["ignore", "pipe", "pipe"] });
    child = c;
    let gone = false;
    exited = new Promise<void>((resolve) => c.once("exit", () => {
      gone = true;
      resolve();
    }));
    for (const stream of [c.stdout, c.stderr]) {
      stream?.setEncoding("utf8");
      stream?.on("data", (chunk: string) => {
        for (const line of chunk.split("\n")) if (line) lines.push(line);
        if (lines.length > LOG_LINES_MAX) lines.splice(0, lines.length - LOG_LINES_MAX);
      });
    }
    const deadline = Date.now() + 15_000;
    while (!(await canConnect(port))) {
      if (gone) throw new Error(`mosquitto exited at start:\n${lines.join("\n")}`);
      if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port} within 15 s:\n${lines.join("\n")}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const kill = async (signal: NodeJS.Signals): Promise<void> => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
    child = null;
  };
  await start();
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    dir,
    get pid() {
      return child?.pid ?? -1;
    },
    logLines: () => [...lines],
    start,
    kill,
    async restart(signal: NodeJS.Signals = "SIGTERM") {
      await kill(signal);
      await start();
    },
    async stop() {
      await kill("SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---- helpers for bridge tests ---------------------------------------------------------------

/** Write a bridge config JSON file into `dir` and return its path. */
export async function writeBridgeConfig(dir: string, config: unknown): Promise<string> {
  const path = join(dir, `mqtt-bridge-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(path, JSON.stringify(config, null, 2));
  return path;
}

export interface StoredRecord {
  offset: number;
  key: string | null;
  value: string;
  headers: Record<string, string>;
}

/** Every record of one partition, read over the HTTP gateway with raw bytes (value as UTF-8 text). */
export async function readPartition(url: string, topic: string, partition: number, headers: Record<string, string> = {}): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  let offset = 0;
  const text = (b64: string | undefined | null) => (b64 == null ? null : Buffer.from(b64, "base64").toString("utf8"));
  for (;;) {
    const res = await fetch(`${url}/v1/topics/${topic}/partitions/${partition}/records?offset=${offset}&maxRecords=10000&maxBytes=16777216&encoding=base64`, { headers });
    if (res.status !== 200) throw new Error(`fetch ${topic}/${partition}@${offset}: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as {
      records: { offset: number; keyBase64?: string | null; valueBase64?: string | null; headersBase64?: Record<string, string> }[];
      nextOffset: number;
      highWatermark: number;
    };
    for (const r of body.records) {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(r.headersBase64 ?? {})) headers[k] = text(v) ?? "";
      out.push({ offset: r.offset, key: text(r.keyBase64), value: text(r.valueBase64) ?? "", headers });
    }
    if (body.nextOffset >= body.highWatermark || body.records.length === 0) return out;
    offset = body.nextOffset;
  }
}

/** Poll `check` until it returns a value other than undefined; fail with `what` after `timeoutMs`. */
/** A counter's value from GET /metrics, summed over label sets matching `labels`. */
export async function metricValue(url: string, name: string, labels: Record<string, string> = {}, headers: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { headers })).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = m[2] ?? "";
    if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/**
 * What an MQTT test file starts, registered for teardown after each test in the order that loses
 * nothing: clients first, then brokers (SIGKILL), then Mosquitto, then temp directories. Call it
 * once at the top of a test file. MQTT_DEBUG=1 prints the last bridge and Mosquitto log lines.
 *
 * @example
 *   const { brokers, mosquittos, clients, dirs } = mqttTestResources();
 */
export function mqttTestResources(): { brokers: BrokerProcess[]; mosquittos: Mosquitto[]; clients: MqttClient[]; dirs: string[] } {
  const r = { brokers: [] as BrokerProcess[], mosquittos: [] as Mosquitto[], clients: [] as MqttClient[], dirs: [] as string[] };
  afterEach(async () => {
    if (process.env.MQTT_DEBUG) {
      for (const b of r.brokers) console.log(b.stderrLines().filter((l) => l.includes("MQTT")).slice(-15).join("\n"));
      for (const m of r.mosquittos) console.log(m.logLines().slice(-25).join("\n"));
    }
    for (const c of r.clients.splice(0)) await c.endAsync(true).catch(() => {});
    for (const b of r.brokers.splice(0)) await b.kill("SIGKILL");
    for (const m of r.mosquittos.splice(0)) await m.stop();
    for (const d of r.dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });
  return r;
}
