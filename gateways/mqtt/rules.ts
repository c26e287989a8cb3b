/**
 * The bridge's mapping rules, as pure functions: no sockets, files or clocks, so every case is a
 * row in a table test (test/mqtt-rules.test.ts).
 *
 * A topic pattern is an MQTT topic filter whose wildcard levels may carry names:
 *   `+name` or `{name}`   one level, captured as `name`        (`+` alone: one level, not captured)
 *   `#name` (last level)  the rest of the topic, `/`-joined  (`#` alone: the rest, not captured)
 * The filter sent to the MQTT broker is the pattern with names dropped (`devices/+/telemetry`).
 *
 * A template is text with `{name}` placeholders, filled from the captures and from `{topic}`
 * (the whole MQTT topic). An unknown name in a template is refused when the config is loaded.
 *
 * @example
 *   const p = compilePattern("devices/+deviceId/telemetry");
 *   matchPattern(p, "devices/d-7/telemetry"); // { deviceId: "d-7" }
 *   renderTemplate(compileTemplate("{deviceId}", p.names), { deviceId: "d-7" }); // "d-7"
 */
import { decode as decodeCbor } from "cbor-x/decode";

export interface Pattern {
  /** The MQTT subscription filter: names removed. */
  filter: string;
  /** Capture names in level order. */
  names: string[];
  levels: Level[];
}

type Level = { kind: "literal"; text: string } | { kind: "one"; name: string | null } | { kind: "rest"; name: string | null };

export type Captures = Record<string, string>;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Names every template may use besides a pattern's captures. */
export const BUILTIN_NAMES = ["topic"] as const;

/** Throws an Error with a readable message; the config loader wraps it in INVALID_CONFIG. */
export function compilePattern(pattern: string): Pattern {
  if (pattern.length === 0) throw new Error("a topic pattern may not be empty");
  if (pattern.startsWith("$")) throw new Error(`topic pattern ${pattern}: topics starting with $ are the MQTT broker's own`);
  const parts = pattern.split("/");
  const levels: Level[] = [];
  const names: string[] = [];
  const addName = (name: string) => {
    if (!NAME.test(name)) throw new Error(`topic pattern ${pattern}: capture name "${name}" must be letters, digits and _`);
    if (names.includes(name) || (BUILTIN_NAMES as readonly string[]).includes(name)) {
      throw new Error(`topic pattern ${pattern}: capture name "${name}" is used twice or is reserved`);
    }
    names.push(name);
  };
  parts.forEach((part, i) => {
    if (part.startsWith("#")) {
      if (i !== parts.length - 1) throw new Error(`topic pattern ${pattern}: # must be the last level`);
      const name = part.slice(1) || null;
      if (name !== null) addName(name);
      levels.push({ kind: "rest", name });
    } else if (part.startsWith("+")) {
      const name = part.slice(1) || null;
      if (name !== null) addName(name);
      levels.push({ kind: "one", name });
    } else if (part.startsWith("{") && part.endsWith("}")) {
      const name = part.slice(1, -1);
      addName(name);
      levels.push({ kind: "one", name });
    } else {
      if (/[+#{}]/.test(part)) throw new Error(`topic pattern ${pattern}: level "${part}" mixes text and a wildcard`);
      levels.push({ kind: "literal", text: part });
    }
  });
  const filter = levels.map((l) => (l.kind === "literal" ? l.text : l.kind === "one" ? "+" : "#")).join("/");
  return { filter, names, levels };
}

/** The captures when `topic` matches, else null. Follows MQTT: `#` also matches the parent level. */
export function matchPattern(p: Pattern, topic: string): Captures | null {
  // MQTT: wildcards at the first level never match topics starting with $.
  if (topic.startsWith("$") && p.levels[0]?.kind !== "literal") return null;
  const parts = topic.split("/");
  const out: Captures = {};
  for (let i = 0; i < p.levels.length; i++) {
    const level = p.levels[i]!;
    if (level.kind === "rest") {
      if (level.name !== null) out[level.name] = parts.slice(i).join("/");
      return out;
    }
    const part = parts[i];
    if (part === undefined) return null;
    if (level.kind === "literal") {
      if (part !== level.text) return null;
    } else if (level.name !== null) {
      out[level.name] = part;
    }
  }
  return parts.length === p.levels.length ? out : null;
}

/** Does the MQTT filter `filter` (plain, no names) match `topic`? */
export function filterMatches(filter: string, topic: string): boolean {
  return matchPattern(compilePattern(filter), topic) !== null;
}

/**
 * Does subscription filter `a` receive every message `b` would (`devices/#` covers
 * `devices/+/telemetry`)? The bridge subscribes only to filters no other one covers: Mosquitto
 * delivers a message once per matching subscription of an MQTT 5 client, so overlapping filters
 * would put it in the log twice.
 */
export function filterCovers(a: string, b: string): boolean {
  const x = a.split("/");
  const y = b.split("/");
  for (let i = 0; i < x.length; i++) {
    if (x[i] === "#") return !(i === 0 && b.startsWith("$"));
    if (i >= y.length) return false;
    if (y[i] === "#") return false;
    if (x[i] === "+") {
      if (i === 0 && y[i]!.startsWith("$")) return false;
      continue;
    }
    if (x[i] !== y[i]) return false;
  }
  return x.length === y.length;
}

/** Keep only filters no other covers, each with the highest QoS asked of it or of a filter it covers. */
export function minimalSubscriptions<Q extends number>(subs: readonly { filter: string; qos: Q }[]): { filter: string; qos: Q }[] {
  const out: { filter: string; qos: Q }[] = [];
  subs.forEach((s, i) => {
    const coveredBy = subs.findIndex((o, j) => j !== i && filterCovers(o.filter, s.filter) && (!filterCovers(s.filter, o.filter) || j < i));
    if (coveredBy >= 0) return;
    const qos = subs.filter((o) => filterCovers(s.filter, o.filter)).reduce((m, o) => (o.qos > m ? o.qos : m), s.qos);
    out.push({ filter: s.filter, qos });
  });
  return out;
}

export type Template = ({ text: string } | { name: string })[];

export function compileTemplate(template: string, names: readonly string[]): Template {
  const out: Template = [];
  const re = /\{([^{}]*)\}/g;
  let last = 0;
  for (let m = re.exec(template); m !== null; m = re.exec(template)) {
    if (m.index > last) out.push({ text: template.slice(last, m.index) });
    const name = m[1]!;
    if (!names.includes(name) && !(BUILTIN_NAMES as readonly string[]).includes(name)) {
      throw new Error(`template ${template}: {${name}} is neither a capture of the pattern (${names.join(", ") || "none"}) nor one of ${BUILTIN_NAMES.join(", ")}`);
    }
    out.push({ name });
    last = m.index + m[0].length;
  }
  if (last < template.length) out.push({ text: template.slice(last) });
  if (out.some((t) => "text" in t && /[{}]/.test(t.text))) throw new Error(`template ${template}: unbalanced { or }`);
  return out;
}

export function renderTemplate(t: Template, values: Captures): string {
  let s = "";
  for (const part of t) s += "text" in part ? part.text : (values[part.name] ?? "");
  return s;
}

// ---- ingress ------------------------------------------------------------------------------

export type Validation = "json" | "cbor" | null;

export interface IngressRuleSpec {
  pattern: string;
  topic: string;
  key: string | null;
  headers: Record<string, string>;
  validate: Validation;
  partition: number | null;
}

export interface CompiledIngressRule {
  index: number;
  pattern: Pattern;
  topic: Template;
  key: Template | null;
  headers: [string, Template][];
  validate: Validation;
  partition: number | null;
}

export function compileIngressRule(spec: IngressRuleSpec, index: number): CompiledIngressRule {
  const pattern = compilePattern(spec.pattern);
  return {
    index,
    pattern,
    topic: compileTemplate(spec.topic, pattern.names),
    key: spec.key === null ? null : compileTemplate(spec.key, pattern.names),
    headers: Object.entries(spec.headers).map(([k, v]) => [k, compileTemplate(v, pattern.names)]),
    validate: spec.validate,
    partition: spec.partition,
  };
}

/** What arrived from MQTT, as far as mapping is concerned. */
export interface MqttMessage {
  topic: string;
  payload: Uint8Array;
  /** MQTT 5 user properties; a repeated name arrives as an array. */
  userProperties?: Record<string, string | string[]>;
  contentType?: string;
}

export interface RecordHeaderOut {
  key: string;
  value: Uint8Array | null;
}

export interface MappedRecord {
  key: Uint8Array | null;
  value: Uint8Array;
  headers: RecordHeaderOut[];
  partition?: number;
}

export type MapResult =
  | { kind: "record"; rule: number; topic: string; record: MappedRecord }
  | { kind: "unmapped" }
  | { kind: "invalid"; rule: number; reason: string };

/** Header names the bridge itself sets; a user property of the same name is kept as well. */
export const HEADER_MQTT_TOPIC = "mqtt.topic";
export const HEADER_CONTENT_TYPE = "content-type";

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/**
 * Map one MQTT message by the first rule whose pattern matches its topic. Headers, in order: the
 * MQTT topic (`mqtt.topic`), the MQTT 5 content type (`content-type`), every user property (a
 * repeated property gives repeated headers), then the rule's own headers.
 */
export function mapMessage(rules: readonly CompiledIngressRule[], msg: MqttMessage): MapResult {
  for (const rule of rules) {
    const captures = matchPattern(rule.pattern, msg.topic);
    if (captures === null) continue;
    if (rule.validate !== null) {
      const problem = validatePayload(rule.validate, msg.payload);
      if (problem !== null) return { kind: "invalid", rule: rule.index, reason: problem };
    }
    const values: Captures = { ...captures, topic: msg.topic };
    const headers: RecordHeaderOut[] = [{ key: HEADER_MQTT_TOPIC, value: utf8.encode(msg.topic) }];
    if (msg.contentType !== undefined) headers.push({ key: HEADER_CONTENT_TYPE, value: utf8.encode(msg.contentType) });
    for (const [name, v] of Object.entries(msg.userProperties ?? {})) {
      for (const one of Array.isArray(v) ? v : [v]) headers.push({ key: name, value: utf8.encode(one) });
    }
    for (const [name, t] of rule.headers) headers.push({ key: name, value: utf8.encode(renderTemplate(t, values)) });
    const record: MappedRecord = {
      key: rule.key === null ? null : utf8.encode(renderTemplate(rule.key, values)),
      value: msg.payload,
      headers,
    };
    if (rule.partition !== null) record.partition = rule.partition;
    return { kind: "record", rule: rule.index, topic: renderTemplate(rule.topic, values), record };
  }
  return { kind: "unmapped" };
}

/** null when the payload is valid, else why not. */
export function validatePayload(kind: "json" | "cbor", payload: Uint8Array): string | null {
  try {
    if (kind === "json") JSON.parse(utf8Strict.decode(payload));
    else {
      if (payload.length === 0) return "empty payload is not CBOR";
      decodeCbor(payload);
    }
    return null;
  } catch (e) {
    return `payload is not ${kind.toUpperCase()}: ${(e as Error).message}`;
  }
}

// ---- egress -------------------------------------------------------------------------------

/** Names an egress MQTT topic template may use. */
export const EGRESS_NAMES = ["key", "topic", "partition"] as const;

export function compileEgressTemplate(template: string): Template {
  const t = compileTemplate(template, EGRESS_NAMES.filter((n) => n !== "topic"));
  if (/[+#]/.test(template)) throw new Error(`MQTT topic template ${template}: a published topic may not hold + or #`);
  return t;
}

/**
 * The MQTT topic for a log record, or null when the record cannot be routed: the template needs
 * `{key}` and the record has none (or a key that is not UTF-8, or holds `/`, `+`, `#`, or is empty,
 * which would change the topic's shape).
 */
export function egressTopic(t: Template, logTopic: string, partition: number, key: Uint8Array | null): string | null {
  const needsKey = t.some((p) => "name" in p && p.name === "key");
  let keyText = "";
  if (needsKey) {
    if (key === null || key.length === 0) return null;
    try {
      keyText = utf8Strict.decode(key);
    } catch {
      return null;
    }
    if (/[/+#\u0000]/.test(keyText)) return null;
  }
  return renderTemplate(t, { key: keyText, topic: logTopic, partition: String(partition) });
}
