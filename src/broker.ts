/**
 * The broker: topics, partitions, and the produce and fetch semantics on top of the partition
 * logs. Gateways (HTTP now; gRPC and MQTT later) call only this surface.
 *
 * Produce: records are grouped by partition (explicit partition, else Kafka's murmur2 of the key,
 * else the keyless partitioner), each group is encoded once into RecordBatch v2 bytes and appended
 * once; the log assigns offsets in place. With acks=1 (and -1: on one node "all" is the leader)
 * the call resolves when the log says the batch is durable under its flush policy; with acks=0 it
 * resolves once the batch is handed to the log.
 *
 * Fetch: whole batches are read back from the same bytes, decoded, and trimmed to the asked
 * offset and record count. Readers never see past the high watermark, which only moves once
 * records are durable, so nothing read can vanish in a crash.
 *
 * @example
 *   const broker = await Broker.open(defaultConfig({ "data.dir": "/var/lib/tributary" }));
 *   await broker.createTopic("telemetry", 3);
 *   const [{ partition, offset }] = await broker.produce("telemetry", [{ key: null, value: bytes }]);
 */
import { TributaryError, isTributaryError } from "./errors.ts";
import {
  describeTopicSettings,
  topicSettings,
  validateTopicConfig,
  type BrokerConfig,
  type TopicSettings,
} from "./config.ts";
import { Metrics, LATENCY_BUCKETS_S } from "./metrics.ts";
import { createLogger, type Logger } from "./logger.ts";
import { Partition } from "./partition.ts";
import { KeylessPartitioner, partitionForKey } from "./partitioner.ts";
import { nodeFileSystem, type FileSystem } from "./runtime/fs.ts";
import { systemClock, type Clock } from "./runtime/clock.ts";
import { PartitionLog, type LogConfig } from "./storage/log.ts";
import {
  BATCH_HEADER_BYTES,
  decodeRecords,
  encodeBatch,
  readBatchHeader,
  splitBatches,
  type DecodedRecord,
  type RecordHeader,
  type RecordInput,
} from "./storage/record-batch.ts";
import { GroupCoordinator } from "./groups/coordinator.ts";
import { OFFSETS_TOPIC, OFFSETS_TOPIC_CONFIG } from "./groups/offsets-store.ts";
import type { IdempotenceInput, ProducerIdentity } from "./idempotence/types.ts";
import { ProducerIdAllocator } from "./idempotence/producer-ids.ts";
import {
  MAX_PARTITIONS,
  TopicMetadataStore,
  collisionKey,
  newTopicId,
  validateTopicName,
  type TopicRecord,
} from "./topic-metadata.ts";

export type { IdempotenceInput, ProducerIdentity } from "./idempotence/types.ts";
export type { GroupCoordinator } from "./groups/coordinator.ts";
export type * from "./groups/types.ts";

/** Topic-level settings under Kafka's names; values as Kafka prints them (strings) or numbers. */
export type TopicConfigInput = Record<string, string | number>;

export interface PartitionDescription {
  partition: number;
  logStartOffset: number;
  highWatermark: number;
  logEndOffset: number;
  sizeBytes: number;
}

export interface TopicDescription {
  name: string;
  partitions: PartitionDescription[];
  /** Every topic setting with its effective value, under Kafka's names. */
  config: Record<string, string>;
  createdAtMs: number;
}

export interface ProduceRecord {
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers?: RecordHeader[];
  /** Explicit partition; otherwise murmur2(key) for keyed records, the keyless partitioner otherwise. */
  partition?: number;
  timestamp?: number;
}

/** 0: reply once accepted in memory; 1 (and -1, "all", the same on one node): reply once durable. */
export type Acks = 0 | 1 | -1;

export interface ProduceResult {
  partition: number;
  /** -1 with acks=0, where the reply does not wait for the offset. */
  offset: number;
}

export interface FetchOptions {
  maxBytes?: number;
  maxRecords?: number;
  /** Long poll: wait up to this long for records at `offset` when there are none yet. */
  waitMs?: number;
  signal?: AbortSignal;
}

export interface FetchResult {
  records: DecodedRecord[];
  /** The offset to ask for next. */
  nextOffset: number;
  highWatermark: number;
  logStartOffset: number;
}

export interface BrokerDeps {
  fs?: FileSystem;
  clock?: Clock;
  logger?: Logger;
}

/** Bounds on one fetch, whatever the caller asks. */
export const FETCH_MAX_BYTES_LIMIT = 64 * 1024 * 1024;
export const FETCH_DEFAULT_MAX_BYTES = 1024 * 1024;
export const FETCH_MAX_RECORDS_LIMIT = 10_000;
export const FETCH_DEFAULT_MAX_RECORDS = 500;
/** Records in one produce call: a request is held in memory whole until it is durable. */
export const PRODUCE_MAX_RECORDS = 100_000;

interface Topic {
  record: TopicRecord;
  settings: TopicSettings;
  partitions: Partition[];
  keyless: KeylessPartitioner;
}

interface BrokerMetrics {
  recordsProduced: ReturnType<Metrics["counter"]>;
  bytesProduced: ReturnType<Metrics["counter"]>;
  produceErrors: ReturnType<Metrics["counter"]>;
  produceLatency: ReturnType<Metrics["histogram"]>;
  recordsFetched: ReturnType<Metrics["counter"]>;
  maintenanceRuns: ReturnType<Metrics["counter"]>;
}

export class Broker {
  readonly metrics = new Metrics();
  /** Consumer groups: membership, assignments, committed offsets (see src/groups/coordinator.ts). */
  readonly groups: GroupCoordinator;
  private readonly topics = new Map<string, Topic>();
  private readonly m: BrokerMetrics;
  private readonly store: TopicMetadataStore;
  /** Topic creation and deletion run one at a time: each rewrites the metadata file. */
  private adminChain: Promise<unknown> = Promise.resolve();
  private state: "opening" | "open" | "closing" | "closed" = "opening";
  private cancelMaintenance: (() => void) | null = null;
  private producerIds: ProducerIdAllocator | null = null;
  private maintenanceRunning: Promise<void> | null = null;

  private constructor(
    readonly config: BrokerConfig,
    private readonly fs: FileSystem,
    private readonly clock: Clock,
    readonly logger: Logger,
  ) {
    this.store = new TopicMetadataStore(fs, config.dataDir);
    this.groups = new GroupCoordinator(
      {
        partitionCount: (topic) => this.topics.get(topic)?.partitions.length,
        bounds: (topic, partition) => {
          const log = this.topics.get(topic)?.partitions[partition]?.log;
          return { logStartOffset: log?.logStartOffset ?? 0, highWatermark: log?.highWatermark ?? 0 };
        },
        offsetForTimestamp: (topic, partition, ts) => this.offsetForTimestamp(topic, partition, ts),
        appendOffsets: async (records) => {
          const results = await this.produceInner(OFFSETS_TOPIC, records.map((r) => ({ ...r, partition: 0 })), 1);
          return results[0]!.offset;
        },
        readOffsets: () => this.readWholePartition(OFFSETS_TOPIC, 0),
      },
      config.groups,
      clock,
      logger,
    );
    const mt = this.metrics;
    this.m = {
      recordsProduced: mt.counter("tributary_records_produced_total", "Records appended", ["topic"]),
      bytesProduced: mt.counter("tributary_bytes_produced_total", "Record batch bytes appended", ["topic"]),
      produceErrors: mt.counter("tributary_produce_errors_total", "Produce calls refused or failed, by error code", ["code"]),
      produceLatency: mt.histogram("tributary_produce_latency_seconds", "Produce call to acknowledgement", LATENCY_BUCKETS_S, ["acks"]),
      recordsFetched: mt.counter("tributary_records_fetched_total", "Records returned to readers", ["topic"]),
      maintenanceRuns: mt.counter("tributary_maintenance_runs_total", "Retention and compaction passes"),
    };
    const partitionGauge = (name: string, help: string, read: (p: Partition) => number) =>
      mt.gauge(name, help, ["topic", "partition"]).collect((set) => {
        for (const t of this.topics.values()) {
          for (const p of t.partitions) set({ topic: p.topic, partition: String(p.index) }, read(p));
        }
      });
    partitionGauge("tributary_partition_high_watermark", "Offset below which records are durable and readable", (p) => p.log.highWatermark);
    partitionGauge("tributary_partition_log_start_offset", "First offset still stored", (p) => p.log.logStartOffset);
    partitionGauge("tributary_partition_size_bytes", "Bytes of all segments", (p) => p.log.sizeBytes);
    mt.gauge("tributary_topics", "Topics on this broker").collect((set) => set(undefined, this.topics.size));
  }

  /** Open the broker on `config.dataDir`: load topic metadata and recover every partition log. */
  static async open(config: BrokerConfig, deps: BrokerDeps = {}): Promise<Broker> {
    const broker = new Broker(
      config,
      deps.fs ?? nodeFileSystem,
      deps.clock ?? systemClock,
      deps.logger ?? createLogger(config.logLevel),
    );
    await broker.load();
    return broker;
  }

  private async load(): Promise<void> {
    const records = await this.store.load();
    this.producerIds = await ProducerIdAllocator.open(this.fs, this.config.dataDir);
    const orphans = await this.store.removeOrphans(records);
    if (orphans.length > 0) this.logger.warn("removed topic directories without metadata", { directories: orphans });
    for (const record of records) {
      this.topics.set(record.name, await this.openTopic(record));
    }
    this.state = "open";
    if (!this.topics.has(OFFSETS_TOPIC)) await this.createTopicWith(OFFSETS_TOPIC, 1, OFFSETS_TOPIC_CONFIG, true);
    await this.groups.load();
    this.scheduleMaintenance();
    this.logger.info("broker open", { dataDir: this.config.dataDir, topics: records.length });
  }

  private async openTopic(record: TopicRecord): Promise<Topic> {
    const settings = topicSettings(this.config.topicDefaults, record.config);
    const partitions: Partition[] = [];
    try {
      for (let i = 0; i < record.partitions; i++) {
        const dir = this.store.partitionDir(record, i);
        await this.fs.mkdirp(dir);
        const log = await PartitionLog.open(dir, this.logConfig(settings), { fs: this.fs, clock: this.clock });
        partitions.push(new Partition(record.name, i, log, this.clock));
      }
    } catch (e) {
      await Promise.allSettled(partitions.map((p) => p.log.close()));
      throw e;
    }
    return { record, settings, partitions, keyless: new KeylessPartitioner(this.config.keylessPartitioner) };
  }

  private logConfig(s: TopicSettings): LogConfig {
    return {
      segmentBytes: s.segmentBytes,
      segmentMs: s.segmentMs,
      indexIntervalBytes: s.indexIntervalBytes,
      retentionMs: s.retentionMs,
      retentionBytes: s.retentionBytes,
      cleanupPolicy: s.cleanupPolicy,
      deleteRetentionMs: s.deleteRetentionMs,
      maxMessageBytes: s.maxMessageBytes,
      flush: this.config.flush,
      maxPendingBytes: this.config.maxPendingBytesPerPartition,
    };
  }

  /** True once every partition is open and recovered; false again while closing. */
  get ready(): boolean {
    return this.state === "open";
  }

  // ---- topics -------------------------------------------------------------------------------

  createTopic(name: string, partitions?: number, config: TopicConfigInput = {}): Promise<TopicDescription> {
    return this.createTopicWith(name, partitions, config, false);
  }

  private createTopicWith(name: string, partitions: number | undefined, config: TopicConfigInput, internal: boolean): Promise<TopicDescription> {
    return this.admin(async () => {
      validateTopicName(name, { internal });
      const count = partitions ?? this.config.defaultPartitions;
      if (!Number.isSafeInteger(count) || count < 1 || count > MAX_PARTITIONS) {
        throw new TributaryError("INVALID_PARTITIONS", `partitions must be an integer from 1 to ${MAX_PARTITIONS}, got ${String(count)}`);
      }
      if (typeof config !== "object" || config === null || Array.isArray(config)) {
        throw new TributaryError("INVALID_CONFIG", "topic config must be an object of Kafka setting names to values");
      }
      const overrides = validateTopicConfig(config);
      if (this.topics.has(name)) throw new TributaryError("TOPIC_EXISTS", `topic ${name} already exists`);
      const clash = [...this.topics.keys()].find((t) => collisionKey(t) === collisionKey(name));
      if (clash) {
        throw new TributaryError("INVALID_TOPIC_NAME", `topic ${name} collides with ${clash}: names may not differ only by '.' and '_'`);
      }
      const record: TopicRecord = { name, id: newTopicId(), partitions: count, config: overrides, createdAtMs: this.clock.now() };
      const topic = await this.openTopic(record);
      try {
        await this.store.save([...[...this.topics.values()].map((t) => t.record), record]);
      } catch (e) {
        await Promise.allSettled(topic.partitions.map((p) => p.log.close()));
        await this.fs.remove(this.store.topicDir(record));
        throw new TributaryError("STORAGE_ERROR", `could not write topic metadata: ${(e as Error).message}`, { cause: e });
      }
      this.topics.set(name, topic);
      this.logger.info("topic created", { topic: name, partitions: count, config: overrides });
      return this.describe(topic);
    });
  }

  /** Topics sorted by name; the broker's own (`__consumer_offsets`) only when asked for. */
  listTopics({ includeInternal = false } = {}): TopicDescription[] {
    return [...this.topics.values()].filter((t) => includeInternal || !isInternalTopic(t.record.name)).sort((a, b) => a.record.name.localeCompare(b.record.name)).map((t) => this.describe(t));
  }

  describeTopic(name: string): TopicDescription {
    return this.describe(this.topic(name));
  }

  deleteTopic(name: string): Promise<void> {
    return this.admin(async () => {
      const topic = this.topic(name);
      if (isInternalTopic(name)) throw new TributaryError("INVALID_TOPIC_NAME", `topic ${name} is internal to the broker and cannot be deleted`);
      this.topics.delete(name);
      try {
        await this.store.save([...this.topics.values()].map((t) => t.record));
      } catch (e) {
        this.topics.set(name, topic);
        throw new TributaryError("STORAGE_ERROR", `could not write topic metadata: ${(e as Error).message}`, { cause: e });
      }
      for (const p of topic.partitions) p.release();
      await Promise.allSettled(topic.partitions.map((p) => p.log.close()));
      await this.fs.remove(this.store.topicDir(topic.record));
      this.logger.info("topic deleted", { topic: name });
    });
  }

  private describe(t: Topic): TopicDescription {
    return {
      name: t.record.name,
      partitions: t.partitions.map((p) => ({
        partition: p.index,
        logStartOffset: p.log.logStartOffset,
        highWatermark: p.log.highWatermark,
        logEndOffset: p.log.logEndOffset,
        sizeBytes: p.log.sizeBytes,
      })),
      config: describeTopicSettings(t.settings),
      createdAtMs: t.record.createdAtMs,
    };
  }

  private topic(name: string): Topic {
    this.checkOpen();
    const t = this.topics.get(name);
    if (!t) throw new TributaryError("TOPIC_NOT_FOUND", `topic ${name} does not exist`);
    return t;
  }

  private partition(topic: string, index: number): Partition {
    const t = this.topic(topic);
    const p = Number.isSafeInteger(index) ? t.partitions[index] : undefined;
    if (!p) throw new TributaryError("PARTITION_NOT_FOUND", `topic ${topic} has partitions 0 to ${t.partitions.length - 1}, not ${index}`);
    return p;
  }

  private admin<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.adminChain.then(fn, fn);
    this.adminChain = run.catch(() => {});
    return run;
  }

  private checkOpen(): void {
    if (this.state !== "open") throw new TributaryError("NOT_READY", `the broker is ${this.state}`);
  }

  // ---- produce ------------------------------------------------------------------------------

  /**
   * A new idempotent producer identity, unique across restarts (InitProducerId without a
   * transactional id: always a fresh id at epoch 0).
   * @example const { producerId, producerEpoch } = await broker.initProducerId();
   */
  async initProducerId(): Promise<ProducerIdentity> {
    this.checkOpen();
    const producerId = await this.producerIds!.allocate();
    return { producerId, producerEpoch: 0 };
  }

  /**
   * Append records. With `idempotence`, every record must go to one partition and fit one batch;
   * a retry of one of the producer's last 5 batches on that partition gets the original offsets
   * without writing (OUT_OF_ORDER_SEQUENCE on a gap, PRODUCER_FENCED on an older epoch,
   * UNKNOWN_PRODUCER_ID for an id this broker never issued).
   * @example await broker.produce("t", [{ key, value, partition: 0 }], 1, { producerId, producerEpoch, baseSequence: 0 });
   */
  async produce(topicName: string, records: ProduceRecord[], acks: Acks = 1, idempotence?: IdempotenceInput): Promise<ProduceResult[]> {
    const started = performance.now();
    try {
      if (isInternalTopic(topicName)) throw new TributaryError("INVALID_TOPIC_NAME", `topic ${topicName} is internal: only the broker writes to it`);
      const results = idempotence
        ? await this.produceIdempotent(topicName, records, acks, idempotence)
        : await this.produceInner(topicName, records, acks);
      this.m.produceLatency.observe({ acks: String(acks) }, (performance.now() - started) / 1000);
      return results;
    } catch (e) {
      this.m.produceErrors.inc({ code: isTributaryError(e) ? e.code : "INTERNAL" });
      throw e;
    }
  }

  private async produceInner(topicName: string, records: ProduceRecord[], acks: Acks): Promise<ProduceResult[]> {
    if (acks !== 0 && acks !== 1 && acks !== -1) throw new TributaryError("INVALID_REQUEST", `acks must be 0, 1 or -1 (all), got ${String(acks)}`);
    if (records.length === 0) return [];
    if (records.length > PRODUCE_MAX_RECORDS) {
      throw new TributaryError("RECORD_TOO_LARGE", `at most ${PRODUCE_MAX_RECORDS} records per produce call, got ${records.length}`);
    }
    const topic = await this.topicForProduce(topicName);
    const groups = this.groupByPartition(topic, records);
    // Encode everything before appending anything, so a bad record refuses the whole call.
    const now = this.clock.now();
    const plans = [...groups].map(([index, members]) => ({
      partition: topic.partitions[index]!,
      members,
      batches: this.encodeForPartition(topic, members.map((m) => records[m]!), now),
    }));
    const results: ProduceResult[] = new Array(records.length);
    const appends: Promise<void>[] = [];
    for (const plan of plans) {
      let member = 0;
      for (const batch of plan.batches) {
        const first = member;
        const count = batch.count;
        member += count;
        const bytes = batch.bytes.length;
        const done = plan.partition.log.append(batch.bytes).then((r) => {
          for (let i = 0; i < count; i++) {
            results[plan.members[first + i]!] = { partition: plan.partition.index, offset: acks === 0 ? -1 : r.baseOffset + i };
          }
          this.m.recordsProduced.inc({ topic: topicName }, count);
          this.m.bytesProduced.inc({ topic: topicName }, bytes);
        });
        appends.push(done);
      }
    }
    if (acks === 0) {
      for (const a of appends) {
        a.catch((e: unknown) => {
          this.m.produceErrors.inc({ code: isTributaryError(e) ? e.code : "INTERNAL" });
          this.logger.warn("acks=0 append failed", { topic: topicName, error: e });
        });
      }
      return plans.flatMap((plan) => plan.members.map((m) => ({ m, partition: plan.partition.index })))
        .sort((a, b) => a.m - b.m)
        .map(({ partition }) => ({ partition, offset: -1 }));
    }
    await Promise.all(appends);
    return results;
  }

  private async produceIdempotent(topicName: string, records: ProduceRecord[], acks: Acks, id: IdempotenceInput): Promise<ProduceResult[]> {
    if (acks !== 0 && acks !== 1 && acks !== -1) throw new TributaryError("INVALID_REQUEST", `acks must be 0, 1 or -1 (all), got ${String(acks)}`);
    const { producerId, producerEpoch, baseSequence } = id;
    if (!Number.isSafeInteger(producerId) || producerId < 0) throw new TributaryError("INVALID_REQUEST", `producerId must be a non-negative integer, got ${String(producerId)}`);
    if (!Number.isInteger(producerEpoch) || producerEpoch < 0 || producerEpoch > INT16_MAX) throw new TributaryError("INVALID_REQUEST", `producerEpoch must be an integer from 0 to ${INT16_MAX}, got ${String(producerEpoch)}`);
    if (records.length === 0) throw new TributaryError("INVALID_REQUEST", "an idempotent produce call needs at least one record");
    if (!Number.isInteger(baseSequence) || baseSequence < 0 || baseSequence + records.length - 1 > INT32_MAX) {
      throw new TributaryError("INVALID_REQUEST", `baseSequence must be an integer from 0 with baseSequence + records - 1 <= ${INT32_MAX}, got ${String(baseSequence)}`);
    }
    if (records.length > PRODUCE_MAX_RECORDS) {
      throw new TributaryError("RECORD_TOO_LARGE", `at most ${PRODUCE_MAX_RECORDS} records per produce call, got ${records.length}`);
    }
    if (!this.producerIds!.issued(producerId)) {
      throw new TributaryError("UNKNOWN_PRODUCER_ID", `producer id ${producerId} was not issued by this broker; call initProducerId first`);
    }
    const topic = await this.topicForProduce(topicName);
    const groups = this.groupByPartition(topic, records);
    if (groups.size !== 1) {
      throw new TributaryError("INVALID_REQUEST", `an idempotent produce call must send all its records to one partition; these go to partitions ${[...groups.keys()].sort((a, b) => a - b).join(", ")} (set "partition" on each record)`);
    }
    const [index] = [...groups.keys()] as [number];
    const partition = topic.partitions[index]!;
    const batches = this.encodeForPartition(topic, records, this.clock.now(), { producerId, producerEpoch, baseSequence });
    if (batches.length !== 1) {
      throw new TributaryError("RECORD_TOO_LARGE", `an idempotent produce call must fit one batch of max.message.bytes (${topic.settings.maxMessageBytes}); send fewer records per call`);
    }
    const bytes = batches[0]!.bytes;
    const table = await partition.producerState((pid) => this.producerIds!.observe(pid));
    this.checkOpen();
    // From here to table.record: no await, so concurrent calls are checked in log order.
    const firstSeq = baseSequence;
    const lastSeq = baseSequence + records.length - 1;
    const verdict = table.check(producerId, producerEpoch, firstSeq, lastSeq);
    let batch;
    if (verdict.kind === "duplicate") {
      batch = verdict.batch;
    } else {
      const before = partition.log.logEndOffset;
      const appended = partition.log.append(bytes);
      if (partition.log.logEndOffset === before) {
        await appended; // refused before an offset was assigned: rethrows
        throw new Error("invariant broken: an append that assigned no offset resolved");
      }
      batch = { firstSeq, lastSeq, baseOffset: before, lastOffset: before + records.length - 1, done: appended.then(() => {}) };
      table.record(producerId, producerEpoch, batch);
      const done = appended.then(() => {
        this.m.recordsProduced.inc({ topic: topicName }, records.length);
        this.m.bytesProduced.inc({ topic: topicName }, bytes.length);
      });
      if (acks === 0) {
        done.catch((e: unknown) => this.logger.warn("acks=0 append failed", { topic: topicName, error: e }));
      } else {
        await done;
      }
    }
    if (acks === 0) return records.map(() => ({ partition: index, offset: -1 }));
    await batch.done;
    return records.map((_, i) => ({ partition: index, offset: batch.baseOffset + i }));
  }

  private async topicForProduce(name: string): Promise<Topic> {
    this.checkOpen();
    const existing = this.topics.get(name);
    if (existing) return existing;
    if (!this.config.autoCreateTopics) throw new TributaryError("TOPIC_NOT_FOUND", `topic ${name} does not exist`);
    try {
      await this.createTopic(name, this.config.defaultPartitions);
    } catch (e) {
      // Two producers may race to create it; either way it now exists.
      if (!(isTributaryError(e) && e.code === "TOPIC_EXISTS")) throw e;
    }
    return this.topic(name);
  }

  /** Partition index -> indexes of the records bound for it, in request order. */
  private groupByPartition(topic: Topic, records: ProduceRecord[]): Map<number, number[]> {
    const n = topic.partitions.length;
    const groups = new Map<number, number[]>();
    let sticky = -1;
    records.forEach((r, i) => {
      let p: number;
      if (r.partition !== undefined && r.partition !== null) {
        if (!Number.isSafeInteger(r.partition) || r.partition < 0 || r.partition >= n) {
          throw new TributaryError("PARTITION_NOT_FOUND", `topic ${topic.record.name} has partitions 0 to ${n - 1}, not ${String(r.partition)}`);
        }
        p = r.partition;
      } else if (r.key) {
        p = partitionForKey(r.key, n);
      } else if (this.config.keylessPartitioner === "sticky") {
        if (sticky < 0) sticky = topic.keyless.partitionForRequest(n);
        p = sticky;
      } else {
        p = topic.keyless.next(n);
      }
      const g = groups.get(p);
      if (g) g.push(i);
      else groups.set(p, [i]);
    });
    return groups;
  }

  /**
   * Encode a partition's records into as few batches as fit under max.message.bytes. A single
   * record that cannot fit alone is refused with RECORD_TOO_LARGE.
   */
  private encodeForPartition(topic: Topic, records: ProduceRecord[], now: number, idempotence?: IdempotenceInput): { bytes: Uint8Array; count: number }[] {
    const limit = topic.settings.maxMessageBytes;
    const compacted = topic.settings.cleanupPolicy !== "delete";
    const inputs: RecordInput[] = records.map((r) => {
      if (compacted && !r.key) {
        throw new TributaryError("INVALID_REQUEST", `topic ${topic.record.name} is compacted: every record needs a key`);
      }
      if (r.timestamp !== undefined && (!Number.isSafeInteger(r.timestamp) || r.timestamp < 0)) {
        throw new TributaryError("INVALID_REQUEST", `record timestamp must be a non-negative integer of milliseconds`);
      }
      return { key: r.key, value: r.value, headers: r.headers, timestamp: r.timestamp };
    });
    const out: { bytes: Uint8Array; count: number }[] = [];
    const encodeRange = (from: number, to: number): void => {
      const bytes = encodeBatch(inputs.slice(from, to), { timestamp: now, ...idempotence });
      if (bytes.length <= limit) {
        out.push({ bytes, count: to - from });
      } else if (to - from === 1) {
        throw new TributaryError("RECORD_TOO_LARGE", `a record of ${bytes.length - BATCH_HEADER_BYTES} bytes exceeds max.message.bytes (${limit}) of topic ${topic.record.name}`);
      } else {
        const mid = from + Math.floor((to - from) / 2);
        encodeRange(from, mid);
        encodeRange(mid, to);
      }
    };
    // Cut where the estimated size would pass the limit, so halving is the exception.
    let start = 0;
    let estimate = BATCH_HEADER_BYTES;
    inputs.forEach((r, i) => {
      const size = 24 + (r.key?.length ?? 0) + (r.value?.length ?? 0) + (r.headers ?? []).reduce((a, h) => a + h.key.length * 3 + (h.value?.length ?? 0) + 10, 0);
      if (i > start && estimate + size > limit) {
        encodeRange(start, i);
        start = i;
        estimate = BATCH_HEADER_BYTES;
      }
      estimate += size;
    });
    encodeRange(start, inputs.length);
    return out;
  }

  // ---- fetch --------------------------------------------------------------------------------

  async fetch(topicName: string, partitionIndex: number, offset: number, options: FetchOptions = {}): Promise<FetchResult> {
    const p = this.partition(topicName, partitionIndex);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new TributaryError("INVALID_REQUEST", `offset must be a non-negative integer, got ${String(offset)}`);
    const maxBytes = clampInt(options.maxBytes, FETCH_DEFAULT_MAX_BYTES, 1, FETCH_MAX_BYTES_LIMIT, "maxBytes");
    const maxRecords = clampInt(options.maxRecords, FETCH_DEFAULT_MAX_RECORDS, 1, FETCH_MAX_RECORDS_LIMIT, "maxRecords");
    const waitMs = clampInt(options.waitMs, 0, 0, Number.MAX_SAFE_INTEGER, "waitMs");
    this.checkRange(p, offset);
    if (offset === p.log.highWatermark && waitMs > 0) {
      await p.waitForRecords(offset, waitMs, options.signal);
      this.checkOpen();
    }
    const read = await p.log.read(offset, maxBytes);
    const records: DecodedRecord[] = [];
    let nextOffset = offset;
    for (const batch of splitBatches(read.batches)) {
      const header = readBatchHeader(batch);
      // Control batches (a replicated partition's Raft no-ops and membership changes) are not records.
      const decoded = header.isControl ? [] : decodeRecords(batch);
      for (const r of decoded) {
        if (r.offset < offset) continue;
        if (records.length >= maxRecords) break;
        records.push(r);
        nextOffset = r.offset + 1;
      }
      if (records.length >= maxRecords) break;
      // Compaction leaves gaps: past a batch's last offset delta there is nothing to ask for again.
      nextOffset = Math.max(nextOffset, header.baseOffset + header.lastOffsetDelta + 1);
    }
    if (records.length > 0) this.m.recordsFetched.inc({ topic: topicName }, records.length);
    return { records, nextOffset, highWatermark: read.highWatermark, logStartOffset: read.logStartOffset };
  }

  /** Every record of a partition up to its high watermark now, in offset order. */
  private async *readWholePartition(topic: string, partition: number): AsyncIterable<DecodedRecord> {
    const p = this.partition(topic, partition);
    const end = p.log.highWatermark;
    let offset = p.log.logStartOffset;
    while (offset < end) {
      const r = await this.fetch(topic, partition, offset, { maxRecords: FETCH_MAX_RECORDS_LIMIT });
      for (const rec of r.records) if (rec.offset < end) yield rec;
      if (r.nextOffset <= offset) break;
      offset = r.nextOffset;
    }
  }

  private checkRange(p: Partition, offset: number): void {
    const start = p.log.logStartOffset;
    const hw = p.log.highWatermark;
    if (offset < start || offset > hw) {
      throw new TributaryError("OFFSET_OUT_OF_RANGE", `offset ${offset} is outside ${p.topic}/${p.index}'s range ${start} to ${hw}`);
    }
  }

  offsetForTimestamp(topic: string, partition: number, timestampMs: number): Promise<number | null> {
    if (!Number.isSafeInteger(timestampMs)) throw new TributaryError("INVALID_REQUEST", "timestamp must be an integer of milliseconds");
    return this.partition(topic, partition).log.offsetForTimestamp(timestampMs);
  }

  // ---- maintenance --------------------------------------------------------------------------

  private scheduleMaintenance(): void {
    this.cancelMaintenance = this.clock.setTimer(this.config.maintenanceIntervalMs, () => {
      void this.runMaintenance().finally(() => {
        if (this.state === "open") this.scheduleMaintenance();
      });
    });
  }

  /** One pass of retention and compaction over every partition; one pass at a time. */
  runMaintenance(): Promise<void> {
    if (this.maintenanceRunning) return this.maintenanceRunning;
    this.maintenanceRunning = (async () => {
      for (const t of [...this.topics.values()]) {
        for (const p of t.partitions) {
          if (this.state !== "open") return;
          try {
            if (t.settings.cleanupPolicy.includes("delete")) {
              const deleted = await p.log.enforceRetention();
              if (deleted > 0) this.logger.info("retention deleted segments", { topic: p.topic, partition: p.index, segments: deleted });
            }
            if (t.settings.cleanupPolicy.includes("compact")) {
              const stats = await p.log.compact();
              if (stats.recordsRemoved > 0) this.logger.info("compacted", { topic: p.topic, partition: p.index, ...stats });
            }
          } catch (e) {
            this.logger.error("maintenance failed", { topic: p.topic, partition: p.index, error: e });
          }
        }
      }
      this.m.maintenanceRuns.inc();
    })().finally(() => {
      this.maintenanceRunning = null;
    });
    return this.maintenanceRunning;
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /** Stop taking requests, wake waiting readers, flush and close every log. */
  async close(): Promise<void> {
    if (this.state === "closing" || this.state === "closed") return;
    this.state = "closing";
    this.cancelMaintenance?.();
    this.groups.close();
    await this.maintenanceRunning;
    await this.adminChain;
    const all = [...this.topics.values()].flatMap((t) => t.partitions);
    for (const p of all) p.release();
    const results = await Promise.allSettled(all.map((p) => p.log.close()));
    this.state = "closed";
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length > 0) this.logger.error("some partition logs failed to close", { count: failed.length });
    this.logger.info("broker closed");
  }
}

const INT16_MAX = 0x7fff;

function isInternalTopic(name: string): boolean {
  return name.startsWith("__");
}
const INT32_MAX = 0x7fffffff;

function clampInt(v: number | undefined, dflt: number, min: number, max: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min) throw new TributaryError("INVALID_REQUEST", `${name} must be an integer of at least ${min}, got ${String(v)}`);
  return Math.min(v, max);
}
