/**
 * Every broker setting in one table. The table drives the command-line flags (`--http-port`),
 * the environment variables (`TRIBUTARY_HTTP_PORT`), the config file (JSON with the same dotted
 * keys: `{"http.port": 8480}`) and the README's configuration section, so they cannot drift.
 *
 * Precedence, highest first: flag, environment variable, config file, default.
 *
 * Topic-level settings (`retention.ms`, `cleanup.policy`, ...) use Kafka's names; the broker-wide
 * values here are the defaults for topics that do not set their own.
 *
 * @example
 *   const config = resolveConfig({ flags: { "http.port": "9000" }, env: process.env, file: null });
 */
import { TributaryError } from "./errors.ts";
import type { CleanupPolicy, FlushPolicy } from "./storage/log.ts";
import type { LogLevel } from "./logger.ts";
import type { DiskFullPolicy } from "./mirror/retention-policy.ts";
import { validateClusterId } from "./mirror/topics.ts";

type Kind = "int" | "string" | "bool" | "enum";

export interface SettingSpec {
  key: string;
  kind: Kind;
  default: string | number | boolean;
  values?: readonly string[];
  /** Smallest accepted value for ints; -1 is also accepted where `minusOneMeans` is set. */
  min?: number;
  minusOneMeans?: string;
  doc: string;
}

export const SETTINGS = [
  { key: "data.dir", kind: "string", default: "./data", doc: "Directory holding topic metadata and partition logs." },
  { key: "http.host", kind: "string", default: "127.0.0.1", doc: "Address the HTTP gateway listens on." },
  { key: "http.port", kind: "int", default: 8480, min: 0, doc: "HTTP gateway port (0 picks a free port)." },
  { key: "http.max.request.bytes", kind: "int", default: 8 * 1024 * 1024, min: 1024, doc: "Largest HTTP request body; larger requests get 413." },
  { key: "http.max.wait.ms", kind: "int", default: 30_000, min: 0, doc: "Longest long poll a fetch may ask for (`waitMs` is capped to it)." },
  { key: "http.max.long.polls", kind: "int", default: 1000, min: 1, doc: "Concurrent long-poll fetches; more get 503." },
  { key: "http.max.streams", kind: "int", default: 100, min: 1, doc: "Concurrent Server-Sent Events streams; more get 503." },
  { key: "grpc.host", kind: "string", default: "127.0.0.1", doc: "Address the gRPC gateway listens on." },
  { key: "grpc.port", kind: "int", default: 8481, min: 0, doc: "gRPC gateway port (0 picks a free port)." },
  { key: "grpc.max.message.bytes", kind: "int", default: 8 * 1024 * 1024, min: 1024, doc: "Largest gRPC message received or sent; larger ones get RESOURCE_EXHAUSTED." },
  { key: "grpc.subscribe.max.bytes", kind: "int", default: 256 * 1024, min: 1024, doc: "Largest Subscribe message, in encoded bytes (records are split across messages; one record larger than this goes out alone). Capped at grpc.max.message.bytes." },
  { key: "grpc.stream.max.inflight", kind: "int", default: 32, min: 1, doc: "Batches a ProduceStream client may have unacknowledged; past it the server stops reading the stream." },
  { key: "mqtt.config", kind: "string", default: "", doc: "JSON file of MQTT bridge connections and mapping rules; empty: no bridge." },
  { key: "mqtt.principal", kind: "string", default: "", doc: "With authentication on: the principal the MQTT bridge runs as (its ACL rules apply to every mapping rule)." },
  { key: "mirror.cluster.id", kind: "string", default: "", doc: "This edge cluster's id in mirrored records and central topic names (1-64 letters, digits, '_', '-'); needed with mirror.config." },
  { key: "mirror.config", kind: "string", default: "", doc: "JSON file of mirror links to central clusters (see Mirroring); empty: nothing is mirrored." },
  { key: "mirror.checkpoint.interval.ms", kind: "int", default: 1000, min: 10, doc: "Longest time between writing a mirror link's acknowledged positions to __mirror_checkpoints (they are written at shutdown too)." },
  { key: "auth.tokens.file", kind: "string", default: "", doc: "Token file (salted hashes, see Security); set: every request needs a bearer token. Empty: no authentication, loopback only." },
  { key: "auth.acl.file", kind: "string", default: "", doc: "ACL file (JSON, see Security); with authentication on and no ACL file, everything is denied." },
  { key: "tls.cert.file", kind: "string", default: "", doc: "PEM certificate chain of the HTTP and gRPC listeners; set (with tls.key.file): both serve TLS only. Re-read on SIGHUP." },
  { key: "tls.key.file", kind: "string", default: "", doc: "PEM private key for tls.cert.file. Re-read on SIGHUP." },
  { key: "tls.ca.file", kind: "string", default: "", doc: "PEM CA certificates for client certificates; set: mutual TLS, every connection needs a certificate from these CAs, and a gRPC call without a bearer token runs as its subject CN (Bun only; see Security)." },
  { key: "insecure", kind: "bool", default: false, doc: "Allow listening beyond loopback without authentication (logged loudly at start)." },
  { key: "group.min.session.timeout.ms", kind: "int", default: 6000, min: 1, doc: "Shortest session timeout a consumer group member may ask for." },
  { key: "group.max.session.timeout.ms", kind: "int", default: 1_800_000, min: 1, doc: "Longest session timeout a consumer group member may ask for." },
  { key: "group.initial.rebalance.delay.ms", kind: "int", default: 3000, min: 0, doc: "How long a new group waits for more members before its first assignment." },
  { key: "cluster.node.id", kind: "int", default: 0, min: 0, doc: "This peer's id in cluster.peers (0: no cluster, a single node)." },
  { key: "cluster.peers", kind: "string", default: "", doc: "Every peer of the cluster, this one included: `id@host:port` of each peer listener, comma-separated (e.g. `1@10.0.0.1:8482,2@10.0.0.2:8482,3@10.0.0.3:8482`). Empty: a single node." },
  { key: "cluster.listen.host", kind: "string", default: "", doc: "Address the peer listener binds to; empty: the host of this peer's entry in cluster.peers." },
  { key: "replication.factor", kind: "int", default: 3, min: 1, doc: "Replicas of each new topic's partitions (at most the number of peers; fewer peers: all of them)." },
  { key: "cluster.tick.ms", kind: "int", default: 100, min: 10, doc: "Raft tick: heartbeats go every tick, an election starts after 10 to 20 silent ticks." },
  { key: "cluster.request.timeout.ms", kind: "int", default: 10_000, min: 100, doc: "How long a produce, fetch or admin call forwarded between peers may retry (through an election) before it fails." },
  { key: "mirror.central", kind: "bool", default: false, doc: "Run in the central role: serve MirrorService on the gRPC listener, so edge clusters mirror their topics into this one (each target topic bound to its source, read-only to producers)." },
  { key: "log.level", kind: "enum", default: "info", values: ["debug", "info", "warn", "error"], doc: "Broker log level (JSON lines on stderr)." },
  { key: "flush.mode", kind: "enum", default: "batch", values: ["batch", "interval", "none"], doc: "When appends are fdatasync'ed, and so acknowledged: see Durability." },
  { key: "flush.interval.ms", kind: "int", default: 50, min: 1, doc: "With flush.mode=interval: longest time between two syncs." },
  { key: "flush.bytes", kind: "int", default: 4 * 1024 * 1024, min: 1, doc: "With flush.mode=interval: sync as soon as this many bytes wait." },
  { key: "log.preallocate.bytes", kind: "int", default: 1024 * 1024, min: 0, doc: "How far ahead of its appends the active segment's file is extended (a sparse ftruncate: no disk used until written), so an fdatasync has no file size to commit: on ext4 here, a fifth less time and 30% fewer bytes written to the device per synced append. Cut back to the data when the segment rolls or the broker stops. 0: every append grows the file." },
  { key: "partition.max.pending.bytes", kind: "int", default: 16 * 1024 * 1024, min: 65536, doc: "Appended but not yet durable bytes per partition before producers wait; at 4x they get 503." },
  { key: "topics.auto.create", kind: "bool", default: false, doc: "Create a topic on first produce instead of answering 404." },
  { key: "default.partitions", kind: "int", default: 1, min: 1, doc: "Partitions of an auto-created topic, or of a create request that names none." },
  { key: "partitioner.keyless", kind: "enum", default: "sticky", values: ["sticky", "round-robin"], doc: "Where keyless records go: one partition per request, rotating (sticky), or rotating per record." },
  { key: "mirror.disk.budget.bytes", kind: "int", default: -1, min: 1, minusOneMeans: "none", doc: "With mirroring: bytes the data directory may hold (all partition logs); at it, mirrored segments go first, then mirror.disk.full.policy applies (-1: no budget)." },
  { key: "mirror.disk.full.policy", kind: "enum", default: "refuse", values: ["refuse", "drop-oldest"], doc: "With mirroring, at the disk budget once mirrored segments are gone: refuse produce (503, retriable) until the mirror catches up, or delete the oldest unmirrored segments (counted, logged, in the drop ledger)." },
  { key: "maintenance.interval.ms", kind: "int", default: 60_000, min: 100, doc: "How often retention and compaction run." },
  { key: "segment.bytes", kind: "int", default: 64 * 1024 * 1024, min: 4096, doc: "Topic default: roll a segment past this size." },
  { key: "segment.ms", kind: "int", default: 7 * 24 * 3600_000, min: 1000, doc: "Topic default: roll a segment this old." },
  { key: "retention.ms", kind: "int", default: 7 * 24 * 3600_000, min: 1, minusOneMeans: "forever", doc: "Topic default: delete closed segments whose newest record is older (-1: keep)." },
  { key: "retention.bytes", kind: "int", default: -1, min: 1, minusOneMeans: "no limit", doc: "Topic default: delete oldest closed segments while a partition is larger (-1: no limit)." },
  { key: "cleanup.policy", kind: "enum", default: "delete", values: ["delete", "compact", "compact,delete"], doc: "Topic default: delete old segments, compact by key, or both." },
  { key: "delete.retention.ms", kind: "int", default: 24 * 3600_000, min: 0, doc: "Topic default: how long compaction keeps tombstones." },
  { key: "max.message.bytes", kind: "int", default: 1024 * 1024, min: 128, doc: "Topic default: largest record batch a partition accepts." },
  { key: "index.interval.bytes", kind: "int", default: 4096, min: 1, doc: "Topic default: bytes between sparse index entries." },
  { key: "mirror.aware", kind: "bool", default: true, doc: "Topic default: with mirroring, time and size retention keep segments holding records not yet mirrored (false: retention as without mirroring; what it deletes unmirrored is counted as dropped)." },
] as const satisfies readonly SettingSpec[];

export type SettingKey = (typeof SETTINGS)[number]["key"];
type Values = Record<SettingKey, string | number | boolean>;

/** Settings a topic may override at creation, under Kafka's names. */
export const TOPIC_SETTING_KEYS = [
  "segment.bytes",
  "segment.ms",
  "retention.ms",
  "retention.bytes",
  "cleanup.policy",
  "delete.retention.ms",
  "max.message.bytes",
  "index.interval.bytes",
  "mirror.aware",
] as const satisfies readonly SettingKey[];
export type TopicSettingKey = (typeof TOPIC_SETTING_KEYS)[number];

export interface TopicSettings {
  segmentBytes: number;
  segmentMs: number;
  retentionMs: number;
  retentionBytes: number;
  cleanupPolicy: CleanupPolicy;
  deleteRetentionMs: number;
  maxMessageBytes: number;
  indexIntervalBytes: number;
  /** With mirroring: time/size retention keeps unmirrored segments (src/mirror/retention-policy.ts). */
  mirrorAware: boolean;
}

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** Client CA bundle; "" : no client certificates (no mutual TLS). */
  caFile: string;
}

export interface ClusterSettings {
  nodeId: number;
  peers: { id: number; address: string }[];
  /** Bind address of the peer listener. */
  listenHost: string;
  listenPort: number;
  replicationFactor: number;
  tickMs: number;
  requestTimeoutMs: number;
}

export interface BrokerConfig {
  dataDir: string;
  http: {
    host: string;
    port: number;
    maxRequestBytes: number;
    maxWaitMs: number;
    maxLongPolls: number;
    maxStreams: number;
  };
  grpc: {
    host: string;
    port: number;
    maxMessageBytes: number;
    subscribeMaxBytes: number;
    streamMaxInflight: number;
  };
  /** Path of the MQTT bridge's JSON config; "" when there is no bridge. */
  mqttConfigPath: string;
  /** Mirroring to central clusters (src/mirror/edge.ts); configPath "" when nothing is mirrored. */
  mirror: { clusterId: string; configPath: string; checkpointIntervalMs: number };
  security: {
    /** "" when authentication is off. */
    tokensFile: string;
    aclFile: string;
    insecure: boolean;
    /** The principal the MQTT bridge runs as ("" when authentication is off). */
    mqttPrincipal: string;
  };
  /** TLS of the HTTP and gRPC listeners; null: plain text. */
  tls: TlsFiles | null;
  groups: {
    minSessionTimeoutMs: number;
    maxSessionTimeoutMs: number;
    initialRebalanceDelayMs: number;
  };
  /** null: a single node (no peers). */
  cluster: ClusterSettings | null;
  /** `mirror.central`: edge clusters mirror into this broker (src/mirror/central.ts). */
  mirrorCentral: boolean;
  logLevel: LogLevel;
  flush: FlushPolicy;
  maxPendingBytesPerPartition: number;
  /** `log.preallocate.bytes`: LogConfig.preallocateBytes of every partition log. */
  preallocateBytes: number;
  autoCreateTopics: boolean;
  defaultPartitions: number;
  keylessPartitioner: "sticky" | "round-robin";
  maintenanceIntervalMs: number;
  /** Mirror-aware retention at the edge (applies once a MirrorRetentionSource is installed). */
  mirrorRetention: {
    /** -1: no budget. */
    diskBudgetBytes: number;
    diskFullPolicy: DiskFullPolicy;
  };
  topicDefaults: TopicSettings;
}

export const envName = (key: string): string => `TRIBUTARY_${key.replace(/\./g, "_").toUpperCase()}`;
export const flagName = (key: string): string => `--${key.replace(/\./g, "-")}`;

function specOf(key: string): SettingSpec | undefined {
  return (SETTINGS as readonly SettingSpec[]).find((s) => s.key === key);
}

/** Parse one raw value (from a flag, env var or file) for a setting; INVALID_CONFIG on anything off. */
export function parseSetting(spec: SettingSpec, raw: unknown, source: string): string | number | boolean {
  const bad = (why: string) => new TributaryError("INVALID_CONFIG", `${spec.key} from ${source}: ${why}`);
  switch (spec.kind) {
    case "string":
      if (typeof raw !== "string" || (raw.length === 0 && spec.default !== "")) throw bad("expected a non-empty string");
      return raw;
    case "bool":
      if (raw === true || raw === "true" || raw === "1") return true;
      if (raw === false || raw === "false" || raw === "0") return false;
      throw bad("expected true or false");
    case "enum":
      if (typeof raw !== "string" || !spec.values?.includes(raw)) throw bad(`expected one of ${spec.values?.join(", ")}`);
      return raw;
    case "int": {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n)) throw bad("expected an integer");
      if (n === -1 && spec.minusOneMeans) return n;
      if (spec.min !== undefined && n < spec.min) throw bad(`must be at least ${spec.min}`);
      return n;
    }
  }
}

export interface ConfigSources {
  /** Dotted keys from command-line flags. */
  flags?: Record<string, string>;
  env?: Record<string, string | undefined>;
  /** Parsed JSON of the config file, or null. */
  file?: unknown;
}

export function resolveConfig(sources: ConfigSources): BrokerConfig {
  const values = {} as Values;
  const file = sources.file ?? {};
  if (typeof file !== "object" || file === null || Array.isArray(file)) {
    throw new TributaryError("INVALID_CONFIG", "the config file must hold a JSON object of dotted keys");
  }
  for (const key of Object.keys(file)) {
    if (!specOf(key)) throw new TributaryError("INVALID_CONFIG", `unknown setting in config file: ${key}`);
  }
  for (const key of Object.keys(sources.flags ?? {})) {
    if (!specOf(key)) throw new TributaryError("INVALID_CONFIG", `unknown flag: ${flagName(key)}`);
  }
  for (const spec of SETTINGS as readonly SettingSpec[]) {
    const flag = sources.flags?.[spec.key];
    const env = sources.env?.[envName(spec.key)];
    const fromFile = (file as Record<string, unknown>)[spec.key];
    let v = spec.default;
    if (flag !== undefined) v = parseSetting(spec, flag, flagName(spec.key));
    else if (env !== undefined && env !== "") v = parseSetting(spec, env, envName(spec.key));
    else if (fromFile !== undefined) v = parseSetting(spec, fromFile, "the config file");
    values[spec.key as SettingKey] = v;
  }
  return toBrokerConfig(values);
}

function toBrokerConfig(v: Values): BrokerConfig {
  const n = (k: SettingKey) => v[k] as number;
  const s = (k: SettingKey) => v[k] as string;
  const mode = s("flush.mode");
  const flush: FlushPolicy =
    mode === "interval"
      ? { mode: "interval", intervalMs: n("flush.interval.ms"), bytes: n("flush.bytes") }
      : mode === "none"
        ? { mode: "none" }
        : { mode: "batch" };
  return {
    dataDir: s("data.dir"),
    http: {
      host: s("http.host"),
      port: n("http.port"),
      maxRequestBytes: n("http.max.request.bytes"),
      maxWaitMs: n("http.max.wait.ms"),
      maxLongPolls: n("http.max.long.polls"),
      maxStreams: n("http.max.streams"),
    },
    grpc: {
      host: s("grpc.host"),
      port: n("grpc.port"),
      maxMessageBytes: n("grpc.max.message.bytes"),
      // Capped rather than refused: a smaller grpc.max.message.bytes alone must not need this set too.
      subscribeMaxBytes: Math.min(n("grpc.subscribe.max.bytes"), n("grpc.max.message.bytes")),
      streamMaxInflight: n("grpc.stream.max.inflight"),
    },
    mqttConfigPath: s("mqtt.config"),
    mirror: mirrorFrom(s("mirror.cluster.id"), s("mirror.config"), n("mirror.checkpoint.interval.ms")),
    security: {
      tokensFile: s("auth.tokens.file"),
      aclFile: s("auth.acl.file"),
      insecure: v["insecure"] as boolean,
      mqttPrincipal: s("mqtt.principal"),
    },
    tls: tlsFrom(s("tls.cert.file"), s("tls.key.file"), s("tls.ca.file")),
    groups: {
      minSessionTimeoutMs: n("group.min.session.timeout.ms"),
      maxSessionTimeoutMs: n("group.max.session.timeout.ms"),
      initialRebalanceDelayMs: n("group.initial.rebalance.delay.ms"),
    },
    cluster: clusterFrom(n("cluster.node.id"), s("cluster.peers"), s("cluster.listen.host"), n("replication.factor"), n("cluster.tick.ms"), n("cluster.request.timeout.ms")),
    mirrorCentral: v["mirror.central"] as boolean,
    logLevel: s("log.level") as LogLevel,
    flush,
    maxPendingBytesPerPartition: n("partition.max.pending.bytes"),
    preallocateBytes: n("log.preallocate.bytes"),
    autoCreateTopics: v["topics.auto.create"] as boolean,
    defaultPartitions: n("default.partitions"),
    keylessPartitioner: s("partitioner.keyless") as "sticky" | "round-robin",
    maintenanceIntervalMs: n("maintenance.interval.ms"),
    mirrorRetention: { diskBudgetBytes: n("mirror.disk.budget.bytes"), diskFullPolicy: s("mirror.disk.full.policy") as DiskFullPolicy },
    topicDefaults: topicSettingsFrom((k) => v[k]),
  };
}

/** A mirror config file needs the edge cluster's id, and an id must be one. */
function mirrorFrom(clusterId: string, configPath: string, checkpointIntervalMs: number): BrokerConfig["mirror"] {
  if (configPath !== "" && clusterId === "") throw new TributaryError("INVALID_CONFIG", "mirror.config is set but mirror.cluster.id is not: name this edge cluster");
  if (clusterId !== "") validateClusterId(clusterId);
  return { clusterId, configPath, checkpointIntervalMs };
}

/** Parse and check `cluster.peers`; null without peers. */
function clusterFrom(nodeId: number, peersText: string, listenHost: string, replicationFactor: number, tickMs: number, requestTimeoutMs: number): ClusterSettings | null {
  if (peersText.trim() === "") {
    if (nodeId !== 0) throw new TributaryError("INVALID_CONFIG", "cluster.node.id is set but cluster.peers is empty: list every peer as id@host:port");
    return null;
  }
  const peers = peersText.split(",").map((item) => {
    const m = /^\s*(\d+)@(\[[0-9a-fA-F:.]+\]|[^:@\s]+):(\d+)\s*$/.exec(item);
    const id = m ? Number(m[1]) : NaN;
    const port = m ? Number(m[3]) : NaN;
    if (!m || !Number.isSafeInteger(id) || id < 1 || id > 0xffff || !(port >= 1 && port <= 65535)) {
      throw new TributaryError("INVALID_CONFIG", `cluster.peers: "${item.trim()}" is not id@host:port (id from 1 to 65535)`);
    }
    return { id, address: `${m[2]}:${port}` };
  });
  const ids = new Set(peers.map((p) => p.id));
  if (ids.size !== peers.length) throw new TributaryError("INVALID_CONFIG", "cluster.peers lists an id twice");
  const self = peers.find((p) => p.id === nodeId);
  if (!self) throw new TributaryError("INVALID_CONFIG", `cluster.node.id ${nodeId} is not one of cluster.peers (${[...ids].join(", ")})`);
  const colon = self.address.lastIndexOf(":");
  return {
    nodeId,
    peers: peers.sort((a, b) => a.id - b.id),
    listenHost: listenHost || self.address.slice(0, colon).replace(/^\[|\]$/g, ""),
    listenPort: Number(self.address.slice(colon + 1)),
    replicationFactor: Math.min(replicationFactor, peers.length),
    tickMs,
    requestTimeoutMs,
  };
}

function tlsFrom(certFile: string, keyFile: string, caFile: string): TlsFiles | null {
  if ((certFile === "") !== (keyFile === "")) throw new TributaryError("INVALID_CONFIG", "tls.cert.file and tls.key.file go together: set both or neither");
  if (certFile === "") {
    if (caFile !== "") throw new TributaryError("INVALID_CONFIG", "tls.ca.file (mutual TLS) needs tls.cert.file and tls.key.file");
    return null;
  }
  return { certFile, keyFile, caFile };
}

function topicSettingsFrom(get: (k: TopicSettingKey) => string | number | boolean): TopicSettings {
  return {
    segmentBytes: get("segment.bytes") as number,
    segmentMs: get("segment.ms") as number,
    retentionMs: get("retention.ms") as number,
    retentionBytes: get("retention.bytes") as number,
    cleanupPolicy: get("cleanup.policy") as CleanupPolicy,
    deleteRetentionMs: get("delete.retention.ms") as number,
    maxMessageBytes: get("max.message.bytes") as number,
    indexIntervalBytes: get("index.interval.bytes") as number,
    mirrorAware: get("mirror.aware") as boolean,
  };
}

/** The defaults alone: what `tributary serve` uses with no flags, env or file. */
export function defaultConfig(overrides: Partial<Record<SettingKey, string>> = {}): BrokerConfig {
  return resolveConfig({ flags: overrides });
}

/**
 * A topic's overrides, validated: only topic-level keys, each parsed like the broker setting of
 * the same name. Returns the overrides as Kafka prints them (strings).
 */
export function validateTopicConfig(input: Record<string, unknown>): Record<TopicSettingKey, string> {
  const out = {} as Record<TopicSettingKey, string>;
  for (const [key, raw] of Object.entries(input)) {
    if (!(TOPIC_SETTING_KEYS as readonly string[]).includes(key)) {
      throw new TributaryError("INVALID_CONFIG", `unknown topic setting: ${key} (known: ${TOPIC_SETTING_KEYS.join(", ")})`);
    }
    const spec = specOf(key)!;
    out[key as TopicSettingKey] = String(parseSetting(spec, typeof raw === "number" ? raw : String(raw), "the topic config"));
  }
  return out;
}

/** Effective settings of a topic: its overrides over the broker defaults. */
export function topicSettings(defaults: TopicSettings, overrides: Partial<Record<TopicSettingKey, string>>): TopicSettings {
  const def: Record<TopicSettingKey, string | number | boolean> = {
    "segment.bytes": defaults.segmentBytes,
    "segment.ms": defaults.segmentMs,
    "retention.ms": defaults.retentionMs,
    "retention.bytes": defaults.retentionBytes,
    "cleanup.policy": defaults.cleanupPolicy,
    "delete.retention.ms": defaults.deleteRetentionMs,
    "max.message.bytes": defaults.maxMessageBytes,
    "index.interval.bytes": defaults.indexIntervalBytes,
    "mirror.aware": defaults.mirrorAware,
  };
  return topicSettingsFrom((k) => {
    const o = overrides[k];
    return o === undefined ? def[k] : parseSetting(specOf(k)!, o, "the topic config");
  });
}

/** Every topic setting with its effective value, as Kafka prints them. */
export function describeTopicSettings(t: TopicSettings): Record<TopicSettingKey, string> {
  return {
    "segment.bytes": String(t.segmentBytes),
    "segment.ms": String(t.segmentMs),
    "retention.ms": String(t.retentionMs),
    "retention.bytes": String(t.retentionBytes),
    "cleanup.policy": t.cleanupPolicy,
    "delete.retention.ms": String(t.deleteRetentionMs),
    "max.message.bytes": String(t.maxMessageBytes),
    "index.interval.bytes": String(t.indexIntervalBytes),
    "mirror.aware": String(t.mirrorAware),
  };
}
