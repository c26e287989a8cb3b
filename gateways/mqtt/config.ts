/**
 * The bridge config file (`mqtt.config`): parsed and checked whole before anything connects, so
 * a mistake stops start-up with one INVALID_CONFIG message naming the field. Unknown fields are
 * refused (a misspelt `recieveMaximum` would otherwise silently use the default).
 *
 * Pure: `parseBridgeConfig` takes the parsed JSON; reading the file (and TLS files) is the
 * caller's business.
 *
 * @example
 *   parseBridgeConfig({ connections: [{ url: "mqtt://127.0.0.1:1883", clientId: "bridge-1" }],
 *     ingress: [{ filter: "devices/+deviceId/telemetry", topic: "telemetry", key: "{deviceId}" }] });
 */
import { TributaryError } from "../../src/errors.ts";
import { compileEgressTemplate, compileIngressRule, compilePattern, minimalSubscriptions, type CompiledIngressRule, type Template, type Validation } from "./rules.ts";

export type Qos = 0 | 1 | 2;

export interface ConnectionConfig {
  name: string;
  url: string;
  clientId: string;
  username: string | null;
  password: string | null;
  tls: { ca: string | null; cert: string | null; key: string | null; rejectUnauthorized: boolean } | null;
  protocolVersion: 4 | 5;
  /** MQTT 5 session expiry; MQTT 3.1.1 sessions (clean=false) last as long as the broker keeps them. */
  sessionExpirySec: number;
  /** Messages received but not yet acknowledged, at most: advertised as Receive Maximum on MQTT 5. */
  receiveMaximum: number;
  keepaliveSec: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  connectTimeoutMs: number;
  /** Every filter this connection subscribes to: the rules' filters plus `subscribe` entries. */
  subscriptions: { filter: string; qos: Qos }[];
}

export interface EgressRuleConfig {
  topic: string;
  mqttTopic: Template;
  mqttTopicText: string;
  qos: Qos;
  retain: boolean;
  connection: string;
  startFrom: "earliest" | "latest";
  /** Records fetched and published per round; the offset is stored after each round. */
  batchRecords: number;
}

export interface BridgeConfig {
  connections: ConnectionConfig[];
  /** Rules per connection name, in file order (the first match wins). */
  ingress: Map<string, CompiledIngressRule[]>;
  egress: EgressRuleConfig[];
  batch: { maxRecords: number; maxBytes: number; maxInflightProduces: number };
}

type Json = Record<string, unknown>;

class Reader {
  constructor(
    private readonly obj: Json,
    private readonly where: string,
    allowed: string[],
  ) {
    for (const k of Object.keys(obj)) {
      if (!allowed.includes(k)) fail(`${where}: unknown field "${k}" (allowed: ${allowed.join(", ")})`);
    }
  }
  str(k: string): string;
  str(k: string, dflt: string | null): string | null;
  str(k: string, dflt?: string | null): string | null {
    const v = this.obj[k];
    if (v === undefined || (v === null && dflt !== undefined)) {
      if (dflt === undefined) fail(`${this.where}.${k} is required`);
      return dflt;
    }
    if (typeof v !== "string" || v.length === 0) fail(`${this.where}.${k} must be a non-empty string`);
    return v;
  }
  int(k: string, dflt: number, min: number, max: number): number {
    const v = this.obj[k] ?? dflt;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) fail(`${this.where}.${k} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return v;
  }
  oneOf<T>(k: string, choices: readonly T[], dflt: T): T {
    const v = this.obj[k] === undefined ? dflt : (this.obj[k] as T);
    if (!choices.includes(v)) fail(`${this.where}.${k} must be one of ${choices.map((c) => JSON.stringify(c)).join(", ")}, got ${JSON.stringify(this.obj[k])}`);
    return v;
  }
  bool(k: string, dflt: boolean): boolean {
    const v = this.obj[k] ?? dflt;
    if (typeof v !== "boolean") fail(`${this.where}.${k} must be true or false`);
    return v;
  }
  obj_(k: string): Json | null {
    const v = this.obj[k];
    if (v === undefined || v === null) return null;
    return asObject(v, `${this.where}.${k}`);
  }
  list(k: string, required: boolean): unknown[] {
    const v = this.obj[k];
    if (v === undefined && !required) return [];
    if (!Array.isArray(v)) fail(`${this.where}.${k} must be an array`);
    return v;
  }
}

function fail(message: string): never {
  throw new TributaryError("INVALID_CONFIG", `MQTT bridge config: ${message}`);
}

function asObject(v: unknown, where: string): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(`${where} must be an object`);
  return v as Json;
}

function guard<T>(where: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TributaryError) throw e;
    return fail(`${where}: ${(e as Error).message}`);
  }
}

/** Bounds: a window or batch past these is a typo, not a plan, on a gateway box. */
const RECEIVE_MAXIMUM_MAX = 65_535;
const QOS: readonly Qos[] = [0, 1, 2];

export function parseBridgeConfig(input: unknown): BridgeConfig {
  const root = new Reader(asObject(input, "the file"), "config", ["connections", "ingress", "egress", "batch"]);
  const connList = root.list("connections", true);
  if (connList.length === 0) fail("config.connections must name at least one MQTT broker");
  const names = new Set<string>();
  const connections = connList.map((c, i) => {
    const where = `connections[${i}]`;
    const r = new Reader(asObject(c, where), where, [
      "name", "url", "clientId", "username", "password", "tls", "protocolVersion", "sessionExpirySec",
      "receiveMaximum", "keepaliveSec", "reconnectMinMs", "reconnectMaxMs", "connectTimeoutMs", "subscribe",
    ]);
    const name = r.str("name", `connection-${i}`)!;
    if (names.has(name)) fail(`${where}.name "${name}" is used twice`);
    names.add(name);
    const url = r.str("url");
    if (!/^(mqtts?|wss?|tcp|ssl|tls):\/\//.test(url)) fail(`${where}.url must start with mqtt://, mqtts://, ws:// or wss://, got ${url}`);
    const tlsObj = r.obj_("tls");
    let tls: ConnectionConfig["tls"] = null;
    if (tlsObj) {
      const t = new Reader(tlsObj, `${where}.tls`, ["ca", "cert", "key", "rejectUnauthorized"]);
      tls = { ca: t.str("ca", null), cert: t.str("cert", null), key: t.str("key", null), rejectUnauthorized: t.bool("rejectUnauthorized", true) };
      if ((tls.cert === null) !== (tls.key === null)) fail(`${where}.tls: cert and key go together`);
    }
    const reconnectMinMs = r.int("reconnectMinMs", 500, 10, 600_000);
    const reconnectMaxMs = r.int("reconnectMaxMs", 30_000, reconnectMinMs, 3_600_000);
    const subscribe = r.list("subscribe", false).map((s, j) => {
      const sw = `${where}.subscribe[${j}]`;
      const sr = new Reader(asObject(s, sw), sw, ["filter", "qos"]);
      const filter = sr.str("filter");
      guard(sw, () => compilePattern(filter));
      return { filter: guard(sw, () => compilePattern(filter).filter), qos: sr.oneOf("qos", QOS, 1) };
    });
    const conn: ConnectionConfig = {
      name,
      url,
      clientId: r.str("clientId"),
      username: r.str("username", null),
      password: r.str("password", null),
      tls,
      protocolVersion: r.oneOf("protocolVersion", [4, 5] as const, 5),
      sessionExpirySec: r.int("sessionExpirySec", 86_400, 1, 0xffff_fffe),
      receiveMaximum: r.int("receiveMaximum", 1000, 1, RECEIVE_MAXIMUM_MAX),
      keepaliveSec: r.int("keepaliveSec", 30, 1, 65_535),
      reconnectMinMs,
      reconnectMaxMs,
      connectTimeoutMs: r.int("connectTimeoutMs", 10_000, 100, 600_000),
      subscriptions: subscribe,
    };
    return conn;
  });
  connections.forEach((c, i) => {
    const other = connections.findIndex((o) => o.url === c.url && o.clientId === c.clientId);
    // Two sessions under one client id on one MQTT broker take each other over, endlessly.
    if (other !== i) fail(`connections[${i}].clientId ${c.clientId} is used twice for ${c.url}`);
  });

  const ingress = new Map<string, CompiledIngressRule[]>(connections.map((c) => [c.name, []]));
  root.list("ingress", false).forEach((rule, i) => {
    const where = `ingress[${i}]`;
    const r = new Reader(asObject(rule, where), where, ["filter", "qos", "topic", "key", "headers", "validate", "partition", "connections"]);
    const headersObj = r.obj_("headers") ?? {};
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(headersObj)) {
      if (typeof v !== "string") fail(`${where}.headers.${k} must be a string template`);
      headers[k] = v;
    }
    const partitionRaw = r.int("partition", -1, -1, 9999);
    const compiled = guard(where, () =>
      compileIngressRule(
        {
          pattern: r.str("filter"),
          topic: r.str("topic"),
          key: r.str("key", null),
          headers,
          validate: r.oneOf<Validation>("validate", ["json", "cbor", null], null),
          partition: partitionRaw < 0 ? null : partitionRaw,
        },
        i,
      ),
    );
    const qos = r.oneOf("qos", QOS, 1);
    const targets = r.list("connections", false);
    const on = targets.length === 0 ? connections.map((c) => c.name) : targets.map((t) => {
      if (typeof t !== "string" || !names.has(t)) fail(`${where}.connections: no connection named ${JSON.stringify(t)}`);
      return t;
    });
    for (const name of on) {
      ingress.get(name)!.push(compiled);
      connections.find((c) => c.name === name)!.subscriptions.push({ filter: compiled.pattern.filter, qos });
    }
  });
  for (const c of connections) c.subscriptions = minimalSubscriptions(c.subscriptions);

  const egress = root.list("egress", false).map((rule, i): EgressRuleConfig => {
    const where = `egress[${i}]`;
    const r = new Reader(asObject(rule, where), where, ["topic", "mqttTopic", "qos", "retain", "connection", "startFrom", "batchRecords"]);
    const mqttTopicText = r.str("mqttTopic");
    const connection = r.str("connection", connections[0]!.name)!;
    if (!names.has(connection)) fail(`${where}.connection: no connection named ${connection}`);
    return {
      topic: r.str("topic"),
      mqttTopic: guard(where, () => compileEgressTemplate(mqttTopicText)),
      mqttTopicText,
      qos: r.oneOf("qos", QOS, 1),
      retain: r.bool("retain", false),
      connection,
      startFrom: r.oneOf("startFrom", ["earliest", "latest"] as const, "latest"),
      batchRecords: r.int("batchRecords", 100, 1, 10_000),
    };
  });
  const seen = new Set<string>();
  for (const e of egress) {
    const id = `${e.topic}\u0000${e.mqttTopicText}`;
    if (seen.has(id)) fail(`egress: topic ${e.topic} to ${e.mqttTopicText} is listed twice`);
    seen.add(id);
  }
  if (connections.every((c) => c.subscriptions.length === 0) && egress.length === 0) fail("no ingress rule, subscription or egress rule: the bridge would do nothing");

  const batchObj = root.obj_("batch") ?? {};
  const b = new Reader(batchObj, "batch", ["maxRecords", "maxBytes", "maxInflightProduces"]);
  return {
    connections,
    ingress,
    egress,
    batch: {
      maxRecords: b.int("maxRecords", 1000, 1, 100_000),
      maxBytes: b.int("maxBytes", 1024 * 1024, 1024, 64 * 1024 * 1024),
      maxInflightProduces: b.int("maxInflightProduces", 4, 1, 64),
    },
  };
}
