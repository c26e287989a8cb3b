/**
 * The bridge's pure core by tables: topic patterns, subscription overlap, templates, message
 * mapping and validation, egress topics, and the config file's checks.
 */
import { describe, expect, it } from "vitest";
import { encode as encodeCbor } from "cbor-x/encode";
import { isTributaryError } from "../src/errors.ts";
import { parseBridgeConfig } from "../gateways/mqtt/config.ts";
import {
  compileEgressTemplate,
  compileIngressRule,
  compilePattern,
  egressTopic,
  filterCovers,
  mapMessage,
  matchPattern,
  minimalSubscriptions,
  validatePayload,
} from "../gateways/mqtt/rules.ts";

const utf8 = new TextEncoder();
const text = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));

describe("topic patterns", () => {
  it.each([
    // pattern, topic, captures (null: no match)
    ["devices/+deviceId/telemetry", "devices/d-7/telemetry", { deviceId: "d-7" }],
    ["devices/{deviceId}/telemetry", "devices/d-7/telemetry", { deviceId: "d-7" }],
    ["devices/+deviceId/telemetry", "devices/d-7/status", null],
    ["devices/+deviceId/telemetry", "devices/d-7/telemetry/extra", null],
    ["devices/+deviceId/telemetry", "devices/telemetry", null],
    ["devices/+/telemetry", "devices/x/telemetry", {}],
    ["devices/+deviceId/#rest", "devices/d1/a/b/c", { deviceId: "d1", rest: "a/b/c" }],
    ["devices/+deviceId/#rest", "devices/d1", { deviceId: "d1", rest: "" }],
    ["devices/#", "devices", {}],
    ["#", "$SYS/broker/uptime", null],
    ["+/x", "$SYS/x", null],
    ["site/+site/line/+line/temp", "site/s1/line/7/temp", { site: "s1", line: "7" }],
    ["devices/+id/telemetry", "devices//telemetry", { id: "" }],
  ])("%s matches %s -> %j", (pattern, topic, captures) => {
    expect(matchPattern(compilePattern(pattern), topic)).toEqual(captures);
  });

  it.each([
    ["devices/+deviceId/telemetry", "devices/+/telemetry"],
    ["devices/{deviceId}/#rest", "devices/+/#"],
    ["a/b", "a/b"],
  ])("%s subscribes as %s", (pattern, filter) => {
    expect(compilePattern(pattern).filter).toBe(filter);
  });

  it.each([
    ["", "empty"],
    ["a/#/b", "last level"],
    ["a/b#", "mixes"],
    ["a/x+y", "mixes"],
    ["a/+id/+id", "twice"],
    ["a/+topic", "reserved"],
    ["a/+9x", "letters"],
    ["$SYS/#", "$"],
  ])("refuses %j (%s)", (pattern, why) => {
    expect(() => compilePattern(pattern)).toThrow(why);
  });
});

describe("subscription overlap", () => {
  it.each([
    ["devices/#", "devices/+/telemetry", true],
    ["devices/+/telemetry", "devices/#", false],
    ["#", "a/b", true],
    ["+/+", "a/b", true],
    ["+/+", "a/#", false],
    ["a/+", "a/b/c", false],
    ["a/b", "a/b", true],
    ["#", "$SYS/x", false],
  ])("%s covers %s: %s", (a, b, covers) => {
    expect(filterCovers(a, b)).toBe(covers);
  });

  it("keeps only uncovered filters, at the highest QoS asked", () => {
    expect(minimalSubscriptions([
      { filter: "devices/+/telemetry", qos: 2 },
      { filter: "devices/#", qos: 1 },
      { filter: "other/x", qos: 0 },
      { filter: "other/x", qos: 1 },
    ])).toEqual([{ filter: "devices/#", qos: 2 }, { filter: "other/x", qos: 1 }]);
  });
});

describe("mapping", () => {
  const rules = [
    compileIngressRule({ pattern: "devices/+deviceId/telemetry", topic: "telemetry", key: "{deviceId}", headers: { source: "mqtt:{topic}" }, validate: "json", partition: null }, 0),
    compileIngressRule({ pattern: "devices/+deviceId/raw/#rest", topic: "raw-{deviceId}", key: null, headers: {}, validate: null, partition: 2 }, 1),
    compileIngressRule({ pattern: "cbor/+id", topic: "c", key: "{id}", headers: {}, validate: "cbor", partition: null }, 2),
  ];

  it("maps topic, key and headers; user properties and the MQTT topic become headers", () => {
    const r = mapMessage(rules, {
      topic: "devices/d1/telemetry",
      payload: utf8.encode('{"t":1}'),
      userProperties: { unit: "C", tag: ["a", "b"] },
      contentType: "application/json",
    });
    expect(r.kind).toBe("record");
    if (r.kind !== "record") return;
    expect(r.topic).toBe("telemetry");
    expect(text(r.record.key)).toBe("d1");
    expect(text(r.record.value)).toBe('{"t":1}');
    expect(r.record.headers.map((h) => [h.key, text(h.value)])).toEqual([
      ["mqtt.topic", "devices/d1/telemetry"],
      ["content-type", "application/json"],
      ["unit", "C"],
      ["tag", "a"],
      ["tag", "b"],
      ["source", "mqtt:devices/d1/telemetry"],
    ]);
    expect(r.record.partition).toBeUndefined();
  });

  it.each([
    // topic, payload, expected kind, detail
    ["devices/d1/telemetry", "{bad", "invalid", 0],
    ["devices/d1/telemetry", "", "invalid", 0],
    ["devices/d1/status", "{}", "unmapped", null],
    ["devices/d1/raw/a/b", "\u00ff bytes", "record", "raw-d1"],
    ["cbor/x", "not cbor \u0000", "invalid", 2],
  ])("%s with %j is %s", (topic, payload, kind, detail) => {
    const r = mapMessage(rules, { topic, payload: utf8.encode(payload) });
    expect(r.kind).toBe(kind);
    if (r.kind === "invalid") expect(r.rule).toBe(detail);
    if (r.kind === "record") {
      expect(r.topic).toBe(detail);
      expect(r.record.key).toBeNull();
      expect(r.record.partition).toBe(2);
    }
  });

  it("keeps payload bytes as they came", () => {
    const bytes = new Uint8Array([0, 255, 1, 254]);
    const r = mapMessage(rules, { topic: "devices/d/raw/x", payload: bytes });
    expect(r.kind === "record" && r.record.value).toEqual(bytes);
  });

  it.each([
    ["json", utf8.encode('{"a":[1,2]}'), null],
    ["json", utf8.encode("42"), null],
    ["json", new Uint8Array([0xff, 0xfe]), "not JSON"],
    ["cbor", new Uint8Array(encodeCbor({ a: 1 })), null],
    ["cbor", new Uint8Array(0), "not CBOR"],
  ] as const)("validates %s", (kind, payload, problem) => {
    const r = validatePayload(kind, payload);
    if (problem === null) expect(r).toBeNull();
    else expect(r).toContain(problem);
  });

  it("refuses templates naming what the pattern does not capture", () => {
    expect(() => compileIngressRule({ pattern: "a/+x", topic: "t", key: "{y}", headers: {}, validate: null, partition: null }, 0)).toThrow("{y}");
  });
});

describe("egress topics", () => {
  const t = compileEgressTemplate("devices/{key}/commands");
  it.each([
    ["d1", "devices/d1/commands"],
    [null, null],
    ["", null],
    ["a/b", null],
    ["a+", null],
    ["#", null],
  ])("key %j -> %j", (key, topic) => {
    expect(egressTopic(t, "commands", 0, key === null ? null : utf8.encode(key))).toBe(topic);
  });
  it("a key that is not UTF-8 cannot be routed", () => {
    expect(egressTopic(t, "commands", 0, new Uint8Array([0xff]))).toBeNull();
  });
  it("templates without {key} route keyless records", () => {
    expect(egressTopic(compileEgressTemplate("broadcast/{partition}"), "c", 3, null)).toBe("broadcast/3");
  });
  it.each(["devices/+/x", "a/#", "{nope}"])("refuses %s", (bad) => {
    expect(() => compileEgressTemplate(bad)).toThrow();
  });
});

describe("config file", () => {
  const conn = { url: "mqtt://127.0.0.1:1883", clientId: "bridge" };
  const ok = { connections: [conn], ingress: [{ filter: "devices/+deviceId/telemetry", topic: "telemetry", key: "{deviceId}" }] };

  it("fills defaults and derives subscriptions", () => {
    const c = parseBridgeConfig({ ...ok, egress: [{ topic: "commands", mqttTopic: "devices/{key}/commands" }] });
    expect(c.connections[0]).toMatchObject({ name: "connection-0", protocolVersion: 5, receiveMaximum: 1000, sessionExpirySec: 86400, subscriptions: [{ filter: "devices/+/telemetry", qos: 1 }] });
    expect(c.egress[0]).toMatchObject({ topic: "commands", qos: 1, connection: "connection-0", startFrom: "latest", retain: false });
    expect(c.batch).toEqual({ maxRecords: 1000, maxBytes: 1048576, maxInflightProduces: 4 });
  });

  it.each([
    // config, words the message must hold
    [{}, "connections must be an array"],
    [{ connections: [] }, "at least one"],
    [{ connections: [conn] }, "would do nothing"],
    [{ connections: [{ ...conn, url: "http://x" }], ingress: ok.ingress }, "url must start"],
    [{ connections: [{ url: conn.url }], ingress: ok.ingress }, "clientId is required"],
    [{ connections: [{ ...conn, recieveMaximum: 5 }], ingress: ok.ingress }, 'unknown field "recieveMaximum"'],
    [{ connections: [{ ...conn, receiveMaximum: 0 }], ingress: ok.ingress }, "receiveMaximum must be an integer from 1 to 65535"],
    [{ connections: [{ ...conn, protocolVersion: 3 }], ingress: ok.ingress }, "protocolVersion must be one of 4, 5"],
    [{ connections: [{ ...conn, tls: { cert: "c.pem" } }], ingress: ok.ingress }, "cert and key go together"],
    [{ connections: [conn], ingress: [{ filter: "a/+x", topic: "t", qos: 3 }] }, "qos must be one of 0, 1, 2"],
    [{ connections: [conn], ingress: [{ filter: "a/+x", topic: "t", key: "{y}" }] }, "ingress[0]: template {y}"],
    [{ connections: [conn], ingress: [{ filter: "a/+x", topic: "t", validate: "xml" }] }, "validate must be one of"],
    [{ connections: [conn], ingress: [{ filter: "a/+x", topic: "t", connections: ["nope"] }] }, 'no connection named "nope"'],
    [{ connections: [conn, conn], ingress: ok.ingress }, "used twice"],
    [{ connections: [conn], egress: [{ topic: "c", mqttTopic: "d/+/c" }] }, "may not hold + or #"],
    [{ connections: [conn], egress: [{ topic: "c", mqttTopic: "d/{key}", connection: "x" }] }, "no connection named x"],
    [{ ...ok, batch: { maxRecords: 0 } }, "batch.maxRecords"],
    [[], "the file must be an object"],
  ])("refuses %j", (config, words) => {
    let err: unknown;
    try {
      parseBridgeConfig(config);
    } catch (e) {
      err = e;
    }
    expect(isTributaryError(err) && err.code).toBe("INVALID_CONFIG");
    expect((err as Error).message).toContain(words);
  });
});
