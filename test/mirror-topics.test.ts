/** Mirror topic selection and renaming: a table of links and topics, then properties. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { collisionKey, validateTopicName } from "../src/topic-metadata.ts";
import { compileTopicMapping, matchesPattern, routeTopics, selects, targetName, validatePattern } from "../src/mirror/topics.ts";
import { codeOf } from "./support/errors.ts";

const TOPICS = ["telemetry", "telemetry-raw", "alarms.line1", "alarms.line2", "alarms.test", "commands", "__consumer_offsets", "__mirror_checkpoints"];

interface Row {
  name: string;
  include: string[];
  exclude?: string[];
  prefix?: string;
  /** "source>target" for every routed topic. */
  want: string[];
}

const rows: Row[] = [
  { name: "a literal selects only itself", include: ["telemetry"], want: ["telemetry>site7.telemetry"] },
  { name: "a prefix selects every topic it starts", include: ["alarms.*"], want: ["alarms.line1>site7.alarms.line1", "alarms.line2>site7.alarms.line2", "alarms.test>site7.alarms.test"] },
  { name: "exclude wins over include", include: ["alarms.*", "telemetry*"], exclude: ["alarms.test", "telemetry-*"], want: ["alarms.line1>site7.alarms.line1", "alarms.line2>site7.alarms.line2", "telemetry>site7.telemetry"] },
  { name: "* selects every topic but the internal ones", include: ["*"], exclude: ["alarms.*"], want: ["commands>site7.commands", "telemetry>site7.telemetry", "telemetry-raw>site7.telemetry-raw"] },
  { name: "an empty prefix keeps names", include: ["telemetry"], prefix: "", want: ["telemetry>telemetry"] },
  { name: "{cluster} may sit anywhere in the prefix", include: ["commands"], prefix: "edge-{cluster}_", want: ["commands>edge-site7_commands"] },
  { name: "a pattern matching nothing routes nothing", include: ["nope*"], want: [] },
];

describe("mirror topic mapping", () => {
  for (const row of rows) {
    it(row.name, () => {
      const m = compileTopicMapping({ include: row.include, exclude: row.exclude, targetPrefix: row.prefix }, "site7");
      const { routes, refused } = routeTopics(m, TOPICS);
      expect(routes.map((r) => `${r.source}>${r.target}`)).toEqual(row.want);
      expect(refused).toEqual([]);
    });
  }

  it("refuses malformed patterns, prefixes and cluster ids with INVALID_CONFIG", async () => {
    const bad: [string[], string?, string?][] = [
      [[]],
      [["a*b"]],
      [["**"]],
      [["__consumer_offsets"]],
      [["__*"]],
      [["bad topic"]],
      [["."]],
      [["x".repeat(250)]],
      [["telemetry"], "bad prefix."],
      [["telemetry"], "__{cluster}"],
      [["telemetry"], "{cluster}.", "site.7"],
      [["telemetry"], "{cluster}.", ""],
    ];
    for (const [include, prefix, cluster] of bad) {
      expect(await codeOf(() => compileTopicMapping({ include, targetPrefix: prefix }, cluster ?? "site7")), JSON.stringify([include, prefix, cluster])).toBe("INVALID_CONFIG");
    }
    expect(await codeOf(() => compileTopicMapping({ include: ["t"], exclude: ["a*b"] }, "s"))).toBe("INVALID_CONFIG");
    expect(await codeOf(() => compileTopicMapping({ include: Array.from({ length: 257 }, (_, i) => `t${i}`) }, "s"))).toBe("INVALID_CONFIG");
  });

  it("refuses, by name, a topic whose target would break the name rules, and routes the rest", () => {
    const m = compileTopicMapping({ include: ["*"], targetPrefix: "_" }, "site7");
    const long = "t".repeat(249);
    const { routes, refused } = routeTopics(m, [long, "_x", "ok"]);
    expect(routes).toEqual([{ source: "ok", target: "_ok" }]);
    expect(refused.map((r) => r.topic).sort()).toEqual(["_x", long]);
  });

  const nameArb = fc.stringMatching(/^[a-z0-9._-]{1,12}$/).filter((s) => s !== "." && s !== ".." && !s.startsWith("__"));
  const patternArb = fc.oneof(nameArb, nameArb.map((s) => `${s.slice(0, 3)}*`), fc.constant("*"));

  it("selects a topic exactly when an include matches and no exclude does", () => {
    fc.assert(
      fc.property(fc.array(patternArb, { minLength: 1, maxLength: 4 }), fc.array(patternArb, { maxLength: 3 }), fc.array(nameArb, { maxLength: 20 }), (include, exclude, topics) => {
        const m = compileTopicMapping({ include, exclude }, "c1");
        for (const t of topics) {
          const inc = include.some((p) => (p.endsWith("*") ? t.startsWith(p.slice(0, -1)) : t === p));
          const exc = exclude.some((p) => (p.endsWith("*") ? t.startsWith(p.slice(0, -1)) : t === p));
          expect(selects(m, t)).toBe(inc && !exc);
        }
        expect(selects(m, "__consumer_offsets")).toBe(false);
      }),
    );
  });

  it("renames injectively into legal, non-internal names, keeping distinct collision keys distinct", () => {
    const prefixArb = fc.oneof(fc.constant("{cluster}."), fc.constant(""), fc.stringMatching(/^[a-z0-9._-]{0,8}$/).filter((s) => !s.startsWith("__")));
    fc.assert(
      fc.property(prefixArb, fc.uniqueArray(nameArb, { maxLength: 30 }), (prefix, topics) => {
        const m = compileTopicMapping({ include: ["*"], targetPrefix: prefix }, "site-7");
        const { routes, refused } = routeTopics(m, topics);
        expect(routes.length + refused.length).toBe(topics.length);
        for (const r of routes) {
          expect(() => validateTopicName(r.target)).not.toThrow();
          expect(r.target).toBe(m.prefix + r.source);
        }
        expect(new Set(routes.map((r) => r.target)).size).toBe(routes.length);
        const sourceKeys = new Set(routes.map((r) => collisionKey(r.source)));
        expect(new Set(routes.map((r) => collisionKey(r.target))).size).toBe(sourceKeys.size);
      }),
    );
  });

  it("validates exactly the patterns it can match, and matches literals and prefixes as written", () => {
    fc.assert(
      fc.property(nameArb, nameArb, (a, b) => {
        validatePattern(a);
        validatePattern(`${a}*`);
        expect(matchesPattern(a, b)).toBe(a === b);
        // Internal topics never match, whatever the pattern ("_" + "_x" is "__x").
        expect(matchesPattern(`${a}*`, a + b)).toBe(!(a + b).startsWith("__"));
        expect(matchesPattern(`${a}*`, b)).toBe(b.startsWith(a));
      }),
    );
    expect(targetName(compileTopicMapping({ include: ["t"] }, "site7"), "t")).toBe("site7.t");
  });
});
