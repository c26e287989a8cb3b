import { describe, expect, it } from "vitest";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SETTINGS, defaultConfig, envName, flagName, resolveConfig, topicSettings, validateTopicConfig } from "../src/config.ts";
import { TributaryError } from "../src/errors.ts";
import { loadServeConfig } from "../cli/serve.ts";

describe("broker settings", () => {
  it("defaults to ./data, loopback and port 8480 with group-committed fsync", () => {
    const c = defaultConfig();
    expect(c.dataDir).toBe("./data");
    expect(c.http.host).toBe("127.0.0.1");
    expect(c.http.port).toBe(8480);
    expect(c.flush).toEqual({ mode: "batch" });
  });

  it("takes flags over env over file over defaults", () => {
    const file = { "http.port": 1111, "log.level": "warn", "retention.ms": 5000 };
    const env = { TRIBUTARY_HTTP_PORT: "2222", TRIBUTARY_LOG_LEVEL: "debug" };
    const c = resolveConfig({ flags: { "http.port": "3333" }, env, file });
    expect(c.http.port).toBe(3333);
    expect(c.logLevel).toBe("debug");
    expect(c.topicDefaults.retentionMs).toBe(5000);
    expect(resolveConfig({ env, file }).http.port).toBe(2222);
    expect(resolveConfig({ file }).http.port).toBe(1111);
  });

  it("caps a Subscribe message at 256 KiB by default, and never above grpc.max.message.bytes", () => {
    expect(defaultConfig().grpc.subscribeMaxBytes).toBe(256 * 1024);
    expect(defaultConfig({ "grpc.subscribe.max.bytes": "65536" }).grpc.subscribeMaxBytes).toBe(65536);
    expect(defaultConfig({ "grpc.subscribe.max.bytes": "2097152", "grpc.max.message.bytes": "1048576" }).grpc.subscribeMaxBytes).toBe(1048576);
    expect(defaultConfig({ "grpc.max.message.bytes": "65536" }).grpc.subscribeMaxBytes).toBe(65536);
    expect(() => defaultConfig({ "grpc.subscribe.max.bytes": "100" })).toThrow(/at least 1024/);
  });

  it("builds the interval flush policy from its three settings", () => {
    const c = defaultConfig({ "flush.mode": "interval", "flush.interval.ms": "20", "flush.bytes": "1000" });
    expect(c.flush).toEqual({ mode: "interval", intervalMs: 20, bytes: 1000 });
  });

  it.each([
    [{ "http.port": "eighty" }, /http.port.*integer/],
    [{ "http.port": "-5" }, /at least 0/],
    [{ "flush.mode": "sometimes" }, /one of batch, interval, none/],
    [{ "topics.auto.create": "yes" }, /true or false/],
  ])("refuses %o with INVALID_CONFIG", (flags, message) => {
    const attempt = () => resolveConfig({ flags: flags as Record<string, string> });
    expect(attempt).toThrow(TributaryError);
    expect(attempt).toThrow(message);
  });

  it("refuses unknown keys in the config file and unknown flags", () => {
    expect(() => resolveConfig({ file: { "http.prot": 1 } })).toThrow(/unknown setting in config file: http.prot/);
    expect(() => resolveConfig({ file: [1, 2] })).toThrow(/JSON object/);
  });

  it("accepts -1 only where it has a meaning", () => {
    expect(defaultConfig({ "retention.bytes": "-1" }).topicDefaults.retentionBytes).toBe(-1);
    expect(() => defaultConfig({ "segment.bytes": "-1" })).toThrow(/at least/);
  });

  it("serve reads --config FILE and flags, and the environment", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tributary-config-"));
    try {
      const path = join(dir, "broker.json");
      writeFileSync(path, JSON.stringify({ "data.dir": "/from/file", "http.port": 9001 }));
      const c = await loadServeConfig(["--config", path, "--http-port", "9002"], { TRIBUTARY_DATA_DIR: "/from/env" });
      expect(c).not.toBe("help");
      if (c === "help") return;
      expect(c.http.port).toBe(9002);
      expect(c.dataDir).toBe("/from/env");
      writeFileSync(path, "{not json");
      await expect(loadServeConfig(["--config", path], {})).rejects.toThrow(/not valid JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("topic settings", () => {
  it("validates overrides under Kafka's names and lays them over the defaults", () => {
    const overrides = validateTopicConfig({ "retention.ms": 1000, "cleanup.policy": "compact" });
    expect(overrides).toEqual({ "retention.ms": "1000", "cleanup.policy": "compact" });
    const t = topicSettings(defaultConfig().topicDefaults, overrides);
    expect(t.retentionMs).toBe(1000);
    expect(t.cleanupPolicy).toBe("compact");
    expect(t.segmentBytes).toBe(defaultConfig().topicDefaults.segmentBytes);
  });

  it("refuses unknown topic settings and bad values", () => {
    expect(() => validateTopicConfig({ "http.port": 1 })).toThrow(/unknown topic setting/);
    expect(() => validateTopicConfig({ "cleanup.policy": "shred" })).toThrow(/one of/);
  });
});

describe("README", () => {
  it("documents every setting with its flag and environment variable", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    for (const s of SETTINGS) {
      expect(readme, s.key).toContain(`\`${s.key}\``);
      expect(readme, s.key).toContain(`\`${flagName(s.key)}\``);
      expect(readme, s.key).toContain(`\`${envName(s.key)}\``);
    }
  });
});
