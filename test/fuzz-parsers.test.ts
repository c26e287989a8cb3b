/**
 * Property-based fuzzing (fast-check) of the parsers that take bytes or files from outside, other
 * than HTTP bodies (fuzz-http.test.ts) and record batches (record-batch.test.ts, "corruption"):
 * gRPC request messages through the bridge's decode path and the ACL table, the MQTT bridge config
 * and payload mapping, the broker config file, the ACL file (with its quotas) and the token file.
 * Each malformed input gets a typed error (a TributaryError with the expected code), never another
 * exception, and no error message repeats a secret it was given.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { DescMessage } from "@bufbuild/protobuf";
import { isTributaryError, TributaryError } from "../src/errors.ts";
import { resolveConfig, SETTINGS } from "../src/config.ts";
import { parseAcl } from "../src/security/acl.ts";
import { parseTokenFile, verifyToken } from "../src/security/tokens.ts";
import { decodeRequest } from "../gateways/grpc/bridge.ts";
import { GRPC_RULES } from "../gateways/grpc/auth.ts";
import { AdminService } from "../gateways/grpc/gen/tributary/v1/admin_pb.ts";
import { ConsumerService } from "../gateways/grpc/gen/tributary/v1/consumer_pb.ts";
import { GroupsService } from "../gateways/grpc/gen/tributary/v1/groups_pb.ts";
import { MirrorService } from "../gateways/grpc/gen/tributary/mirror/v1/mirror_pb.ts";
import { ProducerService } from "../gateways/grpc/gen/tributary/v1/producer_pb.ts";
import { parseBridgeConfig } from "../gateways/mqtt/config.ts";
import { parseMirrorConfig } from "../src/mirror/config.ts";
import { mapMessage, validatePayload } from "../gateways/mqtt/rules.ts";

/** Run `fn`; it may return, or throw a TributaryError with one of `codes`; anything else fails. */
function onlyTyped(codes: readonly string[], fn: () => unknown): TributaryError | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (!isTributaryError(e)) throw new Error(`expected a TributaryError (${codes.join("|")}), got: ${String(e)}`, { cause: e });
    expect(codes).toContain(e.code);
    return e;
  }
}

/** JSON values, biased toward the shapes config parsers look for. */
const jsonArb: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.constantFrom(null, true, false, 0, -1, 1, 1.5, 1e308, -0, "", "*", "x", "mqtt://h:1", "cluster", "topic:t-*", "group:", "produce"),
    fc.double(),
    fc.string({ maxLength: 12 }),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 8 }), tie("value"), { maxKeys: 4 }),
  ),
})).value;

/** Replace the value at a random path of `base` (objects and arrays) with `v`. */
function mutate(base: unknown, path: number[], v: unknown): unknown {
  if (path.length === 0 || typeof base !== "object" || base === null) return v;
  const [i, ...rest] = path;
  if (Array.isArray(base)) {
    if (base.length === 0) return [v];
    const copy = [...base];
    const at = i! % copy.length;
    copy[at] = mutate(copy[at], rest, v);
    return copy;
  }
  const o = { ...(base as Record<string, unknown>) };
  const keys = Object.keys(o);
  if (keys.length === 0) return { x: v };
  const k = keys[i! % keys.length]!;
  o[k] = mutate(o[k], rest, v);
  return o;
}
const pathArb = fc.array(fc.nat({ max: 20 }), { maxLength: 5 });

/** Random JSON, and valid documents with one value replaced by random JSON. */
function configArb(valid: unknown): fc.Arbitrary<unknown> {
  return fc.oneof(jsonArb, fc.tuple(pathArb, jsonArb).map(([p, v]) => mutate(valid, p, v)));
}

const RUNS = 600;

describe("gRPC request messages", () => {
  const methods = [ProducerService, ConsumerService, AdminService, GroupsService, MirrorService].flatMap((s) =>
    s.methods.map((m) => ({ path: `/${s.typeName}/${m.name}`, input: m.input as DescMessage })),
  );

  it("random bytes into every method's request decoder: a message or INVALID_REQUEST; the ACL table copes with whatever decodes", () => {
    fc.assert(
      fc.property(fc.nat({ max: methods.length - 1 }), fc.uint8Array({ maxLength: 200 }), (which, bytes) => {
        const m = methods[which]!;
        let decoded: object | null = null;
        onlyTyped(["INVALID_REQUEST"], () => (decoded = decodeRequest(m.input, bytes)));
        if (decoded) expect(Array.isArray(GRPC_RULES[m.path]!(decoded as Record<string, unknown>))).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it("valid-looking protobuf fields with random wire types and lengths", () => {
    const field = fc.tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 7 }), fc.uint8Array({ maxLength: 20 })).map(([n, wt, rest]) => [(n << 3) | wt, ...rest]);
    fc.assert(
      fc.property(fc.nat({ max: methods.length - 1 }), fc.array(field, { maxLength: 6 }), (which, fields) => {
        const m = methods[which]!;
        onlyTyped(["INVALID_REQUEST"], () => decodeRequest(m.input, new Uint8Array(fields.flat())));
      }),
      { numRuns: 3000 },
    );
  });
});

describe("MQTT bridge config and payload mapping", () => {
  const SECRET = "pw-Secr3t-never-echo";
  const valid = {
    connections: [{ name: "c", url: "mqtts://broker:8883", clientId: "bridge", username: "u", password: SECRET, tls: { ca: "ca.pem" } }],
    ingress: [{ filter: "devices/+site/telemetry/#", topic: "telemetry-{site}", key: "{site}", headers: { h: "{topic}" }, validate: "json", qos: 1 }],
    egress: [{ topic: "commands", mqttTopic: "devices/{key}/commands", connection: "c" }],
    batch: { maxRecords: 100 },
  };

  it("the valid config parses", () => {
    expect(parseBridgeConfig(valid).connections[0]!.clientId).toBe("bridge");
  });

  it("random and mutated configs: a config or INVALID_CONFIG, never naming the password", () => {
    fc.assert(
      fc.property(configArb(valid), (input) => {
        const e = onlyTyped(["INVALID_CONFIG"], () => parseBridgeConfig(input));
        if (e) expect(e.message).not.toContain(SECRET);
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it("random ingress rules (filter, templates, validation) load or refuse with INVALID_CONFIG; loaded rules map any message without throwing", () => {
    const template = fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom("{a}", "t-{a}", "{topic}", "{", "}", "{}", "x{b}"));
    const pattern = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom("a/+a/#", "+a/+b", "#", "a/#/b", "+", "a/+a+b", "$SYS/#"));
    fc.assert(
      fc.property(
        pattern,
        template,
        fc.option(template, { nil: null }),
        fc.constantFrom("json" as const, "cbor" as const, null),
        fc.string({ maxLength: 16 }),
        fc.uint8Array({ maxLength: 40 }),
        (p, topic, key, validate, mqttTopic, payload) => {
          let config: ReturnType<typeof parseBridgeConfig> | null = null;
          const ingress = [{ filter: p, topic, ...(key === null ? {} : { key }), headers: { h: topic }, ...(validate === null ? {} : { validate }) }];
          const e = onlyTyped(["INVALID_CONFIG"], () => (config = parseBridgeConfig({ connections: [{ url: "mqtt://h:1883", clientId: "b" }], ingress })));
          if (e || !config) return;
          const rules = [...(config as ReturnType<typeof parseBridgeConfig>).ingress.values()].flat();
          const r = mapMessage(rules, { topic: mqttTopic, payload, userProperties: { a: ["1", "2"] }, contentType: "x" });
          expect(["record", "unmapped", "invalid"]).toContain(r.kind);
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });

  it("payload validation answers valid or why not for any bytes", () => {
    fc.assert(
      fc.property(fc.constantFrom("json" as const, "cbor" as const), fc.uint8Array({ maxLength: 100 }), (kind, bytes) => {
        const r = validatePayload(kind, bytes);
        expect(r === null || typeof r === "string").toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("mirror links config", () => {
  const SECRET = "tok-Secr3t-never-echo";
  const valid = {
    links: [
      {
        name: "to-dc",
        central: { address: "dc.example:8481", tls: { ca: "ca.pem", cert: "edge.pem", key: "edge.key" }, token: SECRET },
        topics: { include: ["telemetry", "alarms.*"], exclude: ["alarms.test"], prefix: "{cluster}." },
        uplink: { bytesPerSecond: 125_000, backlogShare: 0.3, maxSendBytes: 262_144, priorities: [{ pattern: "alarms.*", priority: 3 }] },
        groups: ["dashboard"],
      },
    ],
  };

  it("the valid config parses", () => {
    expect(parseMirrorConfig(valid, "site7").links[0]!.mapping.prefix).toBe("site7.");
  });

  it("random and mutated configs: a config or INVALID_CONFIG, never naming the token", () => {
    fc.assert(
      fc.property(configArb(valid), fc.constantFrom("site7", "", "bad id", "x".repeat(65)), (input, cluster) => {
        const e = onlyTyped(["INVALID_CONFIG"], () => parseMirrorConfig(input, cluster));
        if (e) expect(e.message).not.toContain(SECRET);
      }),
      { numRuns: RUNS * 2 },
    );
  });
});

describe("broker config file", () => {
  const valid = { "data.dir": "/tmp/x", "http.port": 8480, "log.level": "info", "segment.bytes": 1048576 };

  it("random and mutated files: a config or INVALID_CONFIG", () => {
    fc.assert(
      fc.property(configArb(valid), (file) => {
        onlyTyped(["INVALID_CONFIG"], () => resolveConfig({ file, env: {} }));
      }),
      { numRuns: RUNS },
    );
  });

  it("random values for every known key, from file, flags and environment", () => {
    const keyArb = fc.constantFrom(...SETTINGS.map((s) => s.key as string));
    fc.assert(
      fc.property(fc.dictionary(keyArb, jsonArb, { maxKeys: 4 }), fc.dictionary(keyArb, fc.string({ maxLength: 10 }), { maxKeys: 3 }), (file, flags) => {
        onlyTyped(["INVALID_CONFIG"], () => resolveConfig({ file, flags, env: {} }));
      }),
      { numRuns: RUNS },
    );
  });
});

describe("ACL and token files", () => {
  const validAcl = {
    acls: [
      { principal: "gw", resource: "topic:telemetry-*", operations: ["produce", "describe"] },
      { principal: "*", resource: "cluster", operations: ["describe"] },
    ],
    quotas: [
      { principal: "*", requestsPerSec: 100, maxStreams: 4 },
      { principal: "gw", produceBytesPerSec: 1000, fetchBytesPerSec: 10 },
    ],
  };
  const SECRET_HASH = "aGFzaC1vZi10aGUtc2VjcmV0LWJ5dGVz";
  const validTokens = {
    version: 1,
    tokens: [{ id: "9c1f0e2a7b3d4c55", name: "gw", kdf: "scrypt:16384:8:1", salt: "c2FsdHNhbHRzYWx0c2FsdA", hash: SECRET_HASH, createdAtMs: 1, revokedAtMs: null }],
  };

  it("the valid files parse", () => {
    expect(parseAcl(validAcl).quotas).toHaveLength(2);
    expect(parseTokenFile(validTokens).tokens).toHaveLength(1);
  });

  it("random and mutated ACL files (acls and quotas): an ACL or INVALID_CONFIG", () => {
    fc.assert(
      fc.property(configArb(validAcl), (input) => {
        onlyTyped(["INVALID_CONFIG"], () => parseAcl(input));
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it("random and mutated token files: a file or INVALID_CONFIG, never naming a hash", () => {
    fc.assert(
      fc.property(configArb(validTokens), (input) => {
        const e = onlyTyped(["INVALID_CONFIG"], () => parseTokenFile(input));
        if (e) expect(e.message).not.toContain(SECRET_HASH);
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it("a token checked against a mutated entry (kdf, salt, hash): a verdict, never an exception of another kind", async () => {
    const entry = validTokens.tokens[0]!;
    const token = `trb_${entry.id}_${"A".repeat(43)}`;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          kdf: fc.oneof(fc.constantFrom("scrypt:16384:8:1", "scrypt:1:1:1", "scrypt:0:8:1", "scrypt:3:8:1", "scrypt:16384:8", "bcrypt", "scrypt:1e9:8:1", "scrypt:-1:8:1"), fc.string({ maxLength: 20 })),
          salt: fc.oneof(fc.string({ minLength: 1, maxLength: 30 }), fc.base64String({ maxLength: 24 }).filter((s) => s !== "")),
          hash: fc.oneof(fc.string({ minLength: 1, maxLength: 50 }), fc.constant(SECRET_HASH)),
        }),
        async (edit) => {
          const file = { version: 1, tokens: [{ ...entry, ...edit }] };
          let parsed: ReturnType<typeof parseTokenFile> | null = null;
          if (onlyTyped(["INVALID_CONFIG"], () => (parsed = parseTokenFile(file)))) return;
          try {
            const r = await verifyToken(parsed!, token);
            expect(["malformed", "unknown", "revoked", "ok", "valid"]).toContain(r.verdict);
          } catch (e) {
            if (!isTributaryError(e)) throw new Error(`verifyToken threw ${String(e)}`, { cause: e });
            expect(e.message).not.toContain(token);
          }
        },
      ),
      { numRuns: 40 },
    );
  }, 30_000);
});
