/**
 * The mirror links file (src/mirror/config.ts) and the mirror.* broker settings: a valid file
 * parses into checked mappings and uplink settings; each mistake is INVALID_CONFIG naming its field.
 * (Random and mutated files: test/fuzz-parsers.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { resolveConfig } from "../src/config.ts";
import { parseMirrorConfig } from "../src/mirror/config.ts";
import { isTributaryError } from "../src/errors.ts";
import { codeOf } from "./support/errors.ts";

const link = (over: Record<string, unknown> = {}) => ({
  name: "to-dc",
  central: { address: "dc.example:8481" },
  topics: { include: ["*"] },
  uplink: { bytesPerSecond: 125_000 },
  ...over,
});

function refusal(json: unknown, cluster = "site7"): string {
  try {
    parseMirrorConfig(json, cluster);
  } catch (e) {
    expect(isTributaryError(e) && e.code).toBe("INVALID_CONFIG");
    return (e as Error).message;
  }
  throw new Error("expected INVALID_CONFIG");
}

describe("mirror config", () => {
  it("parses links with their defaults", () => {
    const c = parseMirrorConfig({ links: [link(), link({ name: "b", topics: { include: ["alarms"], prefix: "" }, groups: ["g"], central: { address: "[::1]:9000", token: "t" } })] }, "site7");
    expect(c.links[0]).toMatchObject({ name: "to-dc", central: { address: "dc.example:8481", tls: null, token: null }, mapping: { include: ["*"], exclude: [], prefix: "site7." }, groups: [] });
    expect(c.links[1]).toMatchObject({ mapping: { prefix: "" }, groups: ["g"], central: { token: "t" } });
    expect(c.links[0]!.uplink.bytesPerSec).toBe(125_000);
    expect(c.links[0]).toMatchObject({ compression: "gzip", stallAfterMs: 60_000 });
  });

  it("takes the send compression and the stall time, and refuses other values", () => {
    const c = parseMirrorConfig({ links: [link({ uplink: { bytesPerSecond: 1000, compression: "none" }, stallAfterMs: 1500 })] }, "site7");
    expect(c.links[0]).toMatchObject({ compression: "none", stallAfterMs: 1500 });
    expect(refusal({ links: [link({ uplink: { bytesPerSecond: 1000, compression: "zstd" } })] })).toMatch(/links\[0\]\.uplink\.compression must be "gzip" or "none"/);
    expect(refusal({ links: [link({ stallAfterMs: 0 })] })).toMatch(/links\[0\]\.stallAfterMs must be an integer/);
  });

  it.each([
    [{}, /at least one link/],
    [{ links: [link(), link()] }, /two links are named "to-dc"/],
    [{ links: [link({ name: "a b" })] }, /links\[0\]\.name/],
    [{ links: [link({ extra: 1 })] }, /unknown field "extra"/],
    [{ links: [link({ central: { address: "nohost" } })] }, /central\.address must be host:port/],
    [{ links: [link({ central: { address: "h:70000" } })] }, /central\.address/],
    [{ links: [link({ central: { address: "h:1", tls: { ca: "a" } } })] }, /central\.tls\.cert/],
    [{ links: [link({ central: { address: "h:1", token: "" } })] }, /central\.token/],
    [{ links: [link({ topics: { include: [] } })] }, /topics: .*include needs at least one/],
    [{ links: [link({ topics: { include: ["__consumer_offsets"] } })] }, /internal topics are not mirrored/],
    [{ links: [link({ topics: { include: ["a*b"] } })] }, /may only end a topic pattern/],
    [{ links: [link({ topics: { include: ["*"], prefix: "__x" } })] }, /internal topics/],
    [{ links: [link({ uplink: {} })] }, /uplink\.bytesPerSecond is required/],
    [{ links: [link({ uplink: { bytesPerSecond: -1 } })] }, /bytesPerSec must be a positive number/],
    [{ links: [link({ uplink: { bytesPerSecond: 1000, backlogShare: 1 } })] }, /backlogShare/],
    [{ links: [link({ uplink: { bytesPerSecond: 1000, maxSendBytes: 1000 } })] }, /minSendBytes 16384 is above maxSendBytes 1000/],
    [{ links: [link({ uplink: { bytesPerSecond: 1000, priorities: [{ pattern: "a", priority: 9 }] } })] }, /priority of a/],
    [{ links: [link({ groups: ["g", "g"] })] }, /names a group twice/],
    [{ links: [link({ groups: [""] })] }, /groups\[0\]/],
  ])("refuses %j", (json, message) => {
    expect(refusal(json)).toMatch(message);
  });

  it("needs a valid edge cluster id", () => {
    expect(refusal({ links: [link()] }, "")).toMatch(/mirror\.cluster\.id/);
    expect(refusal({ links: [link()] }, "site 7")).toMatch(/cluster id/);
  });

  it("never repeats the token in a refusal", () => {
    expect(refusal({ links: [link({ central: { address: "h:1", token: "has space-SECRET" } })] })).not.toContain("SECRET");
  });

  it("broker settings: mirror.config needs mirror.cluster.id; the interval has a floor", async () => {
    const c = resolveConfig({ flags: { "mirror.cluster.id": "site7", "mirror.config": "links.json" }, env: {}, file: null });
    expect(c.mirror).toEqual({ clusterId: "site7", configPath: "links.json", checkpointIntervalMs: 1000 });
    expect(await codeOf(() => resolveConfig({ flags: { "mirror.config": "links.json" }, env: {}, file: null }))).toBe("INVALID_CONFIG");
    expect(await codeOf(() => resolveConfig({ flags: { "mirror.cluster.id": "no/slash" }, env: {}, file: null }))).toBe("INVALID_CONFIG");
    expect(await codeOf(() => resolveConfig({ flags: { "mirror.checkpoint.interval.ms": "1" }, env: {}, file: null }))).toBe("INVALID_CONFIG");
  });
});
