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
import { TributaryError, assert, isTributaryError } from "./errors.ts";
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
import { joinPath, nodeFileSystem, type FileSystem } from "./runtime/fs.ts";
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
import { callLocal, groupService, type GroupMethod, type GroupService } from "./groups/service.ts";
import type { BatchIndexLimits } from "./cluster/batch-index.ts";
import { ClusterNode, type GroupStatus } from "./cluster/cluster.ts";
import { holdersOf, type ClusterMetadata, type MetaTopic } from "./cluster/metadata.ts";
import { notLeader, unknownOutcome, type PartitionReplica } from "./cluster/partition-replica.ts";
import { partitionGroupId, type NodeId, type Transport } from "./cluster/types.ts";
import { OFFSETS_TOPIC, OFFSETS_TOPIC_CONFIG } from "./groups/offsets-store.ts";
import type { IdempotenceInput, ProducerIdentity } from "./idempotence/types.ts";
import { ProducerIdAllocator } from "./idempotence/producer-ids.ts";
import { MirrorRetentionDriver, type RetainedPartition } from "./mirror/retention-driver.ts";
import { MirrorCentral, checkNotMirrorTarget, type CentralSend, type SourcePositions } from "./mirror/central.ts";
import type { ReplicaRead } from "./mirror/remote-source.ts";
import type { GroupOffsetCommit, GroupOffsetResult, LinkHello, MirrorRetentionSource, TopicWelcome } from "./mirror/types.ts";
import {
  MAX_PARTITIONS,
  MIRROR_SOURCE_KEY,
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
  /** The registry /metrics renders; given when something made before the broker (the peer transport) counts into it too. */
  metrics?: Metrics;
  /** With `config.cluster`: the peer transport (gateways/peer/ makes the gRPC one), election jitter, and (tests) the batch index limits. */
  cluster?: { transport: Transport; random?: () => number; batchIndex?: BatchIndexLimits };
}

/** The cluster as `tributary cluster status` shows it. */
export interface ClusterStatus {
  self: NodeId;
  peers: { id: NodeId; address: string; reachable: boolean }[];
  controller: { leader: NodeId };
  partitions: {
    topic: string;
    partition: number;
    replicas: NodeId[];
    leader: NodeId;
    term: number;
    commit: number;
    /** Per replica: how many entries it is behind the leader's last index (leader's view). */
    lag: { peer: NodeId; entries: number }[];
    /** A move under way: the replicas it goes to, and the Raft group's voters so far (leader's view); null when none. */
    move: { target: NodeId[]; voters: NodeId[] } | null;
  }[];
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
  /** By partition index; null where this peer holds no replica (cluster with fewer replicas than peers). */
  partitions: (Partition | null)[];
  keyless: KeylessPartitioner;
  /** Cluster: each partition's replica peers (preferred leader first); null on a single node. */
  replicas: readonly (readonly NodeId[])[] | null;
  /** Cluster: per partition, the replicas a move under way goes to (null: none); null when nothing moves. */
  targets: readonly (readonly NodeId[] | null)[] | null;
}

interface BrokerMetrics {
  recordsProduced: ReturnType<Metrics["counter"]>;
  bytesProduced: ReturnType<Metrics["counter"]>;
  produceErrors: ReturnType<Metrics["counter"]>;
  produceLatency: ReturnType<Metrics["histogram"]>;
  recordsFetched: ReturnType<Metrics["counter"]>;
  maintenanceRuns: ReturnType<Metrics["counter"]>;
  mirrorDropped: ReturnType<Metrics["counter"]>;
}

/** A batch the broker encoded itself (encodeForPartition) carries the CRC it just computed. */
const ENCODED_HERE = { crcVerified: true } as const;

export class Broker {
  readonly metrics: Metrics;
  /** Consumer groups as the gateways call them: the coordinator here, or forwarded to the peer that coordinates. */
  readonly groups: GroupService;
  /** Membership, assignments, committed offsets (see src/groups/coordinator.ts); in a cluster active on one peer. */
  private readonly coordinator: GroupCoordinator;
  private readonly topics = new Map<string, Topic>();
  private readonly m: BrokerMetrics;
  private readonly store: TopicMetadataStore;
  /** Topic creation and deletion run one at a time: each rewrites the metadata file. */
  private adminChain: Promise<unknown> = Promise.resolve();
  private state: "opening" | "open" | "closing" | "closed" = "opening";
  private cancelMaintenance: (() => void) | null = null;
  private producerIds: ProducerIdAllocator | null = null;
  private maintenanceRunning: Promise<void> | null = null;
  /** Cluster mode: this peer's part of the cluster; null on a single node. */
  cluster: ClusterNode | null = null;
  /** Metadata changes are applied to the local topics one at a time, in log order. */
  private reconciling: Promise<void> = Promise.resolve();
  /** A reconcile that put off deleting a replica is to run again (one at a time). */
  private reconcileRetry = false;
  /** Set by openPartition when it put off creating a replica (see there). */
  private reconcileDeferred = false;
  /** Mirror-aware retention and the disk budget, once the mirror installed its source; null: retention as without mirroring. */
  private mirrorRetention: MirrorRetentionDriver | null = null;
  /** The central side of mirroring (src/mirror/central.ts): mirror targets, their positions, admission. */
  private readonly central: MirrorCentral;

  private constructor(
    readonly config: BrokerConfig,
    private readonly fs: FileSystem,
    private readonly clock: Clock,
    readonly logger: Logger,
    metrics: Metrics,
  ) {
    this.metrics = metrics;
    this.store = new TopicMetadataStore(fs, config.dataDir);
    this.coordinator = new GroupCoordinator(
      {
        partitionCount: (topic) => this.topics.get(topic)?.partitions.length,
        bounds: (topic, partition) => {
          const log = this.topics.get(topic)?.partitions[partition]?.log;
          // A partition held only by other peers: its bounds are the leader's (unknown here).
          return { logStartOffset: log?.logStartOffset ?? 0, highWatermark: log?.highWatermark ?? 0 };
        },
        offsetForTimestamp: (topic, partition, ts) => this.offsetForTimestamp(topic, partition, ts),
        appendOffsets: async (records) => {
          const results = await this.produceInner(OFFSETS_TOPIC, records.map((r) => ({ ...r, partition: 0 })), 1);
          for (const fn of this.offsetListeners) fn();
          return results[0]!.offset;
        },
        readOffsets: () => this.readWholePartition(OFFSETS_TOPIC, 0),
        ...(config.cluster ? { checkCoordinator: () => this.checkCoordinator() } : {}),
      },
      config.groups,
      clock,
      logger,
    );
    this.groups = groupService(this.coordinator, (method, args) => this.routeGroupCall(method, args));
    const broker = this;
    this.central = new MirrorCentral({
      enabled: config.mirrorCentral,
      maxSendBytes: config.grpc.maxMessageBytes,
      get cluster() {
        return broker.cluster;
      },
      groups: this.groups,
      logger,
      metrics,
      isOpen: () => this.state === "open",
      topics: () => this.topics.values(),
      topic: (name) => this.topics.get(name),
      createTarget: async (name, partitions, topicConfig, source) => {
        await this.createTopicWith(name, partitions, topicConfig, false, { [MIRROR_SOURCE_KEY]: source });
      },
      leaderOf: (topic, partition) => this.leaderOf(topic as Topic, partition),
    });
    const mt = this.metrics;
    this.m = {
      recordsProduced: mt.counter("tributary_records_produced_total", "Records appended", ["topic"]),
      bytesProduced: mt.counter("tributary_bytes_produced_total", "Record batch bytes appended", ["topic"]),
      produceErrors: mt.counter("tributary_produce_errors_total", "Produce calls refused or failed, by error code", ["code"]),
      produceLatency: mt.histogram("tributary_produce_latency_seconds", "Produce call to acknowledgement", LATENCY_BUCKETS_S, ["acks"]),
      recordsFetched: mt.counter("tributary_records_fetched_total", "Records returned to readers", ["topic"]),
      maintenanceRuns: mt.counter("tributary_maintenance_runs_total", "Retention and compaction passes"),
      mirrorDropped: mt.counter("tributary_mirror_dropped_offsets_total", "Offsets retention deleted before the mirror sent them (reason: disk-budget, retention)", ["topic", "reason"]),
    };
    mt.gauge("tributary_mirror_disk_used_bytes", "Bytes of every local partition log, as the disk budget counts them").collect((set) => set(undefined, this.diskUsedBytes()));
    mt.gauge("tributary_mirror_disk_budget_bytes", "mirror.disk.budget.bytes (-1: none)").collect((set) => set(undefined, config.mirrorRetention.diskBudgetBytes));
    mt.gauge("tributary_mirror_writes_refused", "1 while produce is refused because the disk budget is reached").collect((set) => set(undefined, this.mirrorRetention?.refusing ? 1 : 0));
    const partitionGauge = (name: string, help: string, read: (p: Partition) => number) =>
      mt.gauge(name, help, ["topic", "partition"]).collect((set) => {
        for (const t of this.topics.values()) {
          for (const p of t.partitions) if (p) set({ topic: p.topic, partition: String(p.index) }, read(p));
        }
      });
    partitionGauge("tributary_partition_high_watermark", "Offset below which records are durable and readable", (p) => p.log.highWatermark);
    partitionGauge("tributary_partition_log_start_offset", "First offset still stored", (p) => p.log.logStartOffset);
    partitionGauge("tributary_partition_size_bytes", "Bytes of all segments", (p) => p.log.sizeBytes);
    // Cluster: the replica's Raft state (0 on a single node).
    partitionGauge("tributary_partition_leader", "Peer id of the partition's leader as this peer knows it (0: none)", (p) => p.replica?.leader ?? 0);
    partitionGauge("tributary_partition_raft_term", "Raft term of the partition's group on this peer", (p) => p.replica?.group.node.term ?? 0);
    partitionGauge("tributary_partition_raft_commit_index", "Raft commit index of the partition's group on this peer", (p) => p.replica?.group.node.log.committed ?? 0);
    mt.gauge("tributary_topics", "Topics on this broker").collect((set) => set(undefined, this.topics.size));
  }

  /** Open the broker on `config.dataDir`: load topic metadata and recover every partition log. */
  static async open(config: BrokerConfig, deps: BrokerDeps = {}): Promise<Broker> {
    const broker = new Broker(
      config,
      deps.fs ?? nodeFileSystem,
      deps.clock ?? systemClock,
      deps.logger ?? createLogger(config.logLevel),
      deps.metrics ?? new Metrics(),
    );
    if (config.cluster) {
      if (!deps.cluster) throw new Error("invariant broken: a cluster config needs a peer transport in BrokerDeps.cluster");
      await broker.loadCluster(deps.cluster.transport, deps.cluster.random ?? Math.random, deps.cluster.batchIndex);
    } else {
      await broker.load();
    }
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
    await this.coordinator.load();
    this.scheduleMaintenance();
    this.logger.info("broker open", { dataDir: this.config.dataDir, topics: records.length });
  }

  /** Open a topic's local partitions: all of them on a single node; in a cluster, those this peer holds (`meta`). */
  private async openTopic(record: TopicRecord, meta: MetaTopic | null = null): Promise<Topic> {
    const settings = topicSettings(this.config.topicDefaults, record.config);
    const partitions: (Partition | null)[] = [];
    try {
      for (let i = 0; i < record.partitions; i++) partitions.push(await this.openPartition(record, settings, i, meta));
    } catch (e) {
      for (const p of partitions) if (p?.replica) this.cluster?.removeReplica(record.id, p.index);
      await Promise.allSettled(partitions.map((p) => p?.log.close()));
      throw e;
    }
    for (const p of partitions) if (p?.replica) this.watchLeadership(p);
    return { record, settings, partitions, keyless: new KeylessPartitioner(this.config.keylessPartitioner), replicas: meta?.replicas ?? null, targets: meta?.targets ?? null };
  }

  /**
   * One partition's log, and in a cluster its replica, or null where this peer holds none. A
   * replica this peer is to take in a move opens with the current replicas as its voters: it is
   * not one of them, so it never campaigns, and it learns its membership from the leader's log.
   */
  private async openPartition(record: TopicRecord, settings: TopicSettings, i: number, meta: MetaTopic | null): Promise<Partition | null> {
    const self = this.config.cluster?.nodeId ?? 0;
    if (meta && !holdersOf(meta, i).includes(self)) return null;
    const voters = meta?.replicas[i];
    const dir = this.store.partitionDir(record, i);
    // A new replica's first voters come from the placement; one replayed from the metadata log
    // after a restart may be an old one that counts this peer, whose replica has since moved
    // away (and may come back): wait for the current placement before creating it again.
    if (meta && this.cluster?.hadReplica(record.id, i) && !this.metadataCurrent() && !(await this.fs.exists(dir))) {
      this.reconcileDeferred = true;
      return null;
    }
    await this.fs.mkdirp(dir);
    // A replicated log's high watermark is its Raft commit, moved by the replica, not by its fsync.
    const log = await PartitionLog.open(dir, this.logConfig(settings), { fs: this.fs, clock: this.clock, logger: this.logger }, voters ? REPLICATED_LOG : {});
    const p = new Partition(record.name, i, log, this.clock);
    if (!voters) return p;
    try {
      p.replica = await this.cluster!.addReplica(record.name, record.id, i, dir, log, voters);
    } catch (e) {
      await log.close().catch(() => {});
      throw e;
    }
    return p;
  }

  /**
   * Bring a topic's local replicas in line with its placement (a move started or completed): open
   * those this peer is to hold, close and delete those it no longer holds (its removal from the
   * group is committed by then: a move completes only once the group's voters are the target),
   * and delete a partition directory left from before (this peer was down when its replica
   * moved away). Deleting waits until this peer has applied all the metadata it knows committed:
   * replaying the metadata log after a restart passes through old placements, and a replica that
   * one of them leaves out may be one this peer holds again later, with acknowledged records.
   * Returns whether a deletion was put off.
   */
  /** This peer applied all the metadata it knows committed (not replaying old placements). */
  private metadataCurrent(): boolean {
    const cluster = this.cluster!;
    return cluster.metadata.appliedIndex >= cluster.controller.group.node.log.committed;
  }

  private async reconcilePartitions(t: Topic, meta: MetaTopic): Promise<boolean> {
    const cluster = this.cluster!;
    const self = cluster.self;
    t.replicas = meta.replicas;
    t.targets = meta.targets ?? null;
    const current = this.metadataCurrent();
    let deferred = false;
    for (let i = 0; i < t.record.partitions; i++) {
      const want = holdersOf(meta, i).includes(self);
      const p = t.partitions[i] ?? null;
      if (want && !p) {
        const opened = await this.openPartition(t.record, t.settings, i, meta);
        t.partitions[i] = opened;
        if (opened?.replica) this.watchLeadership(opened);
        if (opened) this.logger.info("replica opened: this peer takes part in the partition's move", { topic: t.record.name, partition: i });
      } else if (!want && (p || (await this.fs.exists(this.store.partitionDir(t.record, i))))) {
        if (!current) {
          deferred = true;
          continue;
        }
        t.partitions[i] = null;
        if (p) {
          p.release();
          if (p.replica) await cluster.retireReplica(t.record.id, i);
          await p.log.close().catch(() => {});
        } else {
          // A directory left from before: its stored vote and log end are kept (retireLeftover),
          // without a Raft group that would answer the leader until the files go.
          const dir = this.store.partitionDir(t.record, i);
          const log = await PartitionLog.open(dir, this.logConfig(t.settings), { fs: this.fs, clock: this.clock, logger: this.logger }, REPLICATED_LOG);
          try {
            await cluster.retireLeftover(t.record.id, i, dir, log);
          } finally {
            await log.close().catch(() => {});
          }
        }
        await this.fs.remove(this.store.partitionDir(t.record, i));
        this.logger.info("replica dropped: the partition is placed on other peers", { topic: t.record.name, partition: i });
      }
    }
    return deferred;
  }

  // ---- cluster ------------------------------------------------------------------------------

  /** Cluster mode: the topics come from the controller's metadata, replayed from its log. */
  private async loadCluster(transport: Transport, random: () => number, batchIndex: BatchIndexLimits | undefined): Promise<void> {
    const c = this.config.cluster!;
    await this.fs.mkdirp(joinPath(this.config.dataDir, "meta")); // the producer-id counter lives there
    this.producerIds = await ProducerIdAllocator.open(this.fs, this.config.dataDir);
    this.cluster = await ClusterNode.open(
      {
        self: c.nodeId,
        peers: c.peers,
        transport,
        fs: this.fs,
        clock: this.clock,
        random,
        logger: this.logger,
        dataDir: this.config.dataDir,
        timing: { tickMs: c.tickMs, electionTicks: 10, heartbeatTicks: 1 },
        requestTimeoutMs: c.requestTimeoutMs,
        ...(batchIndex ? { batchIndex } : {}),
      },
      (metadata) => this.reconcile(metadata),
    );
    this.serveForwarded(this.cluster);
    this.central.serve(this.cluster);
    this.state = "open";
    void this.bootstrapCluster();
    this.scheduleMaintenance();
    this.logger.info("broker open as a cluster peer", { dataDir: this.config.dataDir, node: c.nodeId, peers: c.peers.map((p) => `${p.id}@${p.address}`) });
  }

  /** Bring the local topics in line with the metadata: open new ones, drop deleted ones. */
  private reconcile(metadata: ClusterMetadata): Promise<void> {
    const run = this.reconciling.then(async () => {
      if (this.state === "closing" || this.state === "closed") return;
      const wanted = new Map(metadata.topics().map((t) => [t.record.name, t]));
      for (const [name, t] of [...this.topics]) {
        const w = wanted.get(name);
        if (!w || w.record.id !== t.record.id) await this.dropTopic(t);
      }
      this.reconcileDeferred = false;
      let deferred = false;
      for (const [name, w] of wanted) {
        const t = this.topics.get(name);
        if (t) {
          deferred = (await this.reconcilePartitions(t, w)) || deferred;
          continue;
        }
        this.topics.set(name, await this.openTopic(w.record, w));
        this.logger.info("topic opened from the cluster metadata", { topic: name, partitions: w.record.partitions });
        deferred = (await this.reconcilePartitions(this.topics.get(name)!, w)) || deferred;
      }
      this.topicsChanged();
      // A deletion or creation put off until the metadata is applied to its end: look again shortly.
      if ((deferred || this.reconcileDeferred) && !this.reconcileRetry) {
        this.reconcileRetry = true;
        void this.cluster!.sleep(100).then(() => {
          this.reconcileRetry = false;
          return this.reconcile(this.cluster!.metadata);
        });
      }
    });
    this.reconciling = run.catch((e: unknown) => this.logger.error("could not apply cluster metadata", { error: e }));
    return run;
  }

  private async dropTopic(topic: Topic): Promise<void> {
    this.topics.delete(topic.record.name);
    for (const p of topic.partitions) {
      if (!p) continue;
      p.release();
      if (p.replica) this.cluster?.removeReplica(topic.record.id, p.index);
    }
    await Promise.allSettled(topic.partitions.map((p) => p?.log.close()));
    await this.fs.remove(this.store.topicDir(topic.record));
    this.logger.info("topic deleted", { topic: topic.record.name });
    this.topicsChanged();
  }

  /**
   * The metadata a new cluster starts from, proposed by every peer until it is there (duplicates
   * are harmless): the configured peers with their addresses (placement draws on them), then the
   * broker's own offsets topic.
   */
  private async bootstrapCluster(): Promise<void> {
    const cluster = this.cluster!;
    // Only voters of the metadata group: a peer removed from it is not brought back by an old config.
    const voter = (id: NodeId) => cluster.controller.group.node.confState().voters.includes(id);
    for (const peer of cluster.peers) {
      while (this.state === "open" && voter(peer.id) && !cluster.metadata.peers().some((p) => p.id === peer.id)) {
        try {
          await cluster.proposeMeta({ type: "add-peer", peer });
        } catch (e) {
          if (!(isTributaryError(e) && e.retriable)) this.logger.error("could not record a peer in the cluster metadata", { peer: peer.id, error: e });
          await cluster.sleep(200);
        }
      }
    }
    while (this.state === "open" && !this.topics.has(OFFSETS_TOPIC)) {
      try {
        await this.createTopicWith(OFFSETS_TOPIC, 1, OFFSETS_TOPIC_CONFIG, true);
      } catch (e) {
        if (isTributaryError(e) && e.code === "TOPIC_EXISTS") continue;
        if (!(isTributaryError(e) && e.retriable)) this.logger.error("could not create the offsets topic", { error: e });
        await this.cluster!.sleep(200);
      }
    }
  }

  /** A replica's leader changed: the producer state and the group coordinator follow the leader. */
  private watchLeadership(p: Partition): void {
    const replica = p.replica!;
    replica.onLeaderChange = (leader) => {
      p.resetProducerState();
      this.central.leaderChanged(p);
      if (p.topic === OFFSETS_TOPIC && p.index === 0) this.followCoordinator(leader);
      for (const l of this.leaderListeners) if (l.topic === p.topic && l.partition === p.index) l.fn();
    };
  }

  // ---- hooks for the edge's mirror (src/mirror/broker-host.ts) -------------------------------

  private readonly leaderListeners = new Set<{ topic: string; partition: number; fn: () => void }>();
  private readonly topicListeners = new Set<() => void>();

  private readonly offsetListeners = new Set<() => void>();

  /** Called after consumer-group offsets were committed through this peer's coordinator; returns an unsubscribe function. */
  onOffsetsCommitted(fn: () => void): () => void {
    this.offsetListeners.add(fn);
    return () => this.offsetListeners.delete(fn);
  }

  /** Called whenever a partition's leader changes here (cluster only); returns an unsubscribe function. */
  onLeaderChange(topic: string, partition: number, fn: () => void): () => void {
    const l = { topic, partition, fn };
    this.leaderListeners.add(l);
    return () => this.leaderListeners.delete(l);
  }

  /** Called after topics were created or deleted here; returns an unsubscribe function. */
  onTopicsChanged(fn: () => void): () => void {
    this.topicListeners.add(fn);
    return () => this.topicListeners.delete(fn);
  }

  private topicsChanged(): void {
    for (const fn of this.topicListeners) {
      try {
        fn();
      } catch (e) {
        this.logger.error("a topics listener threw", { error: e });
      }
    }
  }

  /** Topics with their ids, internal ones included. */
  topicRecords(): { name: string; id: string; partitions: number; config: Record<string, string> }[] {
    return [...this.topics.values()].map((t) => ({ name: t.record.name, id: t.record.id, partitions: t.record.partitions, config: describeTopicSettings(t.settings) }));
  }

  /** The local log of a partition and, in a cluster, whether this peer leads it; null where this peer holds no replica. */
  localPartition(topic: string, partition: number): { log: PartitionLog; leading: boolean } | null {
    const p = this.topics.get(topic)?.partitions[partition];
    if (!p) return null;
    return { log: p.log, leading: p.replica ? p.replica.isLeader : true };
  }

  /** Create an internal topic of one partition when it is missing (retried through elections in a cluster). */
  async ensureInternalTopic(name: string, config: TopicConfigInput): Promise<void> {
    while (this.state === "open" && !this.topics.has(name)) {
      try {
        await this.createTopicWith(name, 1, config, true);
      } catch (e) {
        if (isTributaryError(e) && e.code === "TOPIC_EXISTS") continue;
        if (!this.cluster || !(isTributaryError(e) && e.retriable)) throw e;
        await this.cluster.sleep(200);
      }
    }
    this.checkOpen();
  }

  /** Append keyed records to partition 0 of an internal topic with acks=all. */
  async appendInternal(topic: string, records: { key: Uint8Array; value: Uint8Array | null }[]): Promise<void> {
    assert(isInternalTopic(topic), `${topic} is not an internal topic`);
    await this.produceInner(topic, records.map((r) => ({ ...r, partition: 0 })), -1);
  }

  /** Every record of partition 0 of an internal topic up to its high watermark now. */
  readInternal(topic: string, fromOffset = 0): AsyncIterable<DecodedRecord> {
    assert(isInternalTopic(topic), `${topic} is not an internal topic`);
    return this.readWholePartition(topic, 0, fromOffset);
  }

  /** Groups are coordinated by the leader of __consumer_offsets, once it has replayed the offsets. */
  private coordinating: "no" | "loading" | "yes" = "no";
  private coordinatorEpoch = 0;

  private followCoordinator(leader: NodeId): void {
    const epoch = ++this.coordinatorEpoch;
    if (leader !== this.cluster?.self) {
      if (this.coordinating !== "no") this.coordinator.resign();
      this.coordinating = "no";
      return;
    }
    this.coordinating = "loading";
    // The new leader's log holds every committed commit; wait until the replica applied its own term's entry.
    void (async () => {
      const replica = this.topics.get(OFFSETS_TOPIC)?.partitions[0]?.replica;
      while (replica && epoch === this.coordinatorEpoch && replica.isLeader && replica.log.highWatermark < replica.log.logEndOffset) await this.cluster!.sleep(10);
      if (epoch !== this.coordinatorEpoch) return;
      try {
        await this.coordinator.takeOver();
        if (epoch === this.coordinatorEpoch) this.coordinating = "yes";
      } catch (e) {
        if (epoch === this.coordinatorEpoch && this.state === "open") this.logger.error("could not load consumer groups", { error: e });
        this.coordinating = "no";
      }
    })();
  }

  /** A group call: here when this peer coordinates (or is a single node), else at the coordinator. */
  private routeGroupCall(method: GroupMethod, args: unknown[]): Promise<unknown> {
    const cluster = this.cluster;
    if (!cluster) return callLocal(this.coordinator, method, args);
    return cluster.retrying(async () => {
      if (this.coordinating === "yes") return callLocal(this.coordinator, method, args);
      const t = this.topics.get(OFFSETS_TOPIC);
      const leader = t ? this.leaderOf(t, 0) : 0;
      if (!t || !leader || leader === cluster.self) this.checkCoordinator(); // throws NOT_COORDINATOR: retried
      return this.forward(t!, 0, leader, "groups", { method, args });
    });
  }

  private checkCoordinator(): void {
    if (this.coordinating === "yes") return;
    const t = this.topics.get(OFFSETS_TOPIC);
    const leader = t ? this.leaderOf(t, 0) : 0;
    const peer = leader && leader !== this.cluster?.self ? this.cluster?.peer(leader) : undefined;
    throw new TributaryError(
      "NOT_COORDINATOR",
      peer ? `peer ${peer.id} (${peer.address}) coordinates consumer groups; send group calls to its HTTP or gRPC listener` : "consumer groups have no coordinator yet (an election or a replay is running); retry",
    );
  }

  /** The peer that leads a partition (0 while unknown), as far as this peer knows. */
  private leaderOf(topic: Topic, index: number): NodeId {
    const local = topic.partitions[index]?.replica;
    if (local) return local.leader;
    const replicas = topic.replicas?.[index] ?? [];
    return this.remoteLeaders.get(partitionGroupId(topic.record.id, index)) ?? replicas[0] ?? 0;
  }

  /**
   * Where calls about partitions this peer holds no replica of go: their first replica until a call
   * there fails, then the next one (a follower that receives one forwards it to its leader once).
   */
  private readonly remoteLeaders = new Map<string, NodeId>();

  /** A call forwarded to `to` for a partition this peer holds no replica of failed: the next one asks the next replica. */
  private forwardFailed(topic: Topic, index: number, to: NodeId, e: unknown): void {
    if (topic.partitions[index]?.replica) return;
    const code = isTributaryError(e) ? e.code : null;
    if (code !== "PEER_UNAVAILABLE" && code !== "REQUEST_TIMED_OUT" && code !== "NOT_LEADER" && code !== "NOT_COORDINATOR") return;
    const replicas = topic.replicas?.[index] ?? [];
    if (replicas.length === 0) return;
    this.remoteLeaders.set(partitionGroupId(topic.record.id, index), replicas[(replicas.indexOf(to) + 1) % replicas.length]!);
  }

  /** Forward `method` about a partition to `to`, noting a failure (see forwardFailed). */
  private async forward<T>(topic: Topic, index: number, to: NodeId, method: string, body: unknown, deadlineMs?: number): Promise<T> {
    try {
      return (await this.cluster!.call(to, method, body, deadlineMs)) as T;
    } catch (e) {
      this.forwardFailed(topic, index, to, e);
      throw e;
    }
  }

  /**
   * Append one batch this broker encoded (encodeForPartition: its CRC is not checked again here)
   * to a partition wherever its leader is: here through the replica, elsewhere forwarded (where
   * the leader checks it); an election in between is waited out (retried until the request timeout).
   */
  private appendBatch(topic: Topic, index: number, batch: Uint8Array, acks: Acks, idempotent = false): Promise<{ baseOffset: number; lastOffset: number }> {
    const p = topic.partitions[index];
    if (!this.cluster) return p!.log.append(batch, ENCODED_HERE);
    const cluster = this.cluster;
    return cluster.retrying(async () => {
      const replica = p?.replica;
      if (replica?.isLeader) return this.appendAsLeader(p!, topic, batch, acks, idempotent, ENCODED_HERE);
      const leader = this.leaderOf(topic, index);
      if (!leader || leader === cluster.self) throw notLeader(topic.record.name, index, 0);
      return this.forward<{ baseOffset: number; lastOffset: number }>(topic, index, leader, "produce", { topic: topic.record.name, partition: index, batch, acks, idempotent });
    }, { unknownOutcome: idempotent });
  }

  /**
   * The leader's side of a produce: propose the batch; an idempotent one first goes through the
   * producer table (rebuilt from this leader's own log, so a retry of a batch the previous leader
   * replicated here is recognised).
   */
  private async appendAsLeader(p: Partition, topic: Topic, batch: Uint8Array, acks: Acks, idempotent: boolean, crc: { crcVerified?: boolean } = {}): Promise<{ baseOffset: number; lastOffset: number }> {
    const replica = p.replica!;
    const max = topic.settings.maxMessageBytes;
    if (!idempotent) return replica.append(batch, acks, max, crc);
    const h = readBatchHeader(batch);
    const table = await p.producerState((pid) => {
      if (pid % PEER_ID_SPACE === this.cluster!.self) this.producerIds!.observe(Math.floor(pid / PEER_ID_SPACE));
    });
    if (!replica.isLeader) throw notLeader(topic.record.name, p.index, replica.leader);
    // From here to table.record: no await, so concurrent calls are checked in log order.
    const firstSeq = h.baseSequence;
    const lastSeq = h.baseSequence + h.lastOffsetDelta;
    const verdict = table.check(h.producerId, h.producerEpoch, firstSeq, lastSeq);
    if (verdict.kind === "duplicate") {
      await verdict.batch.done;
      // The batch may be in this leader's log and not committed yet (rebuilt from the log's tail
      // after a leader change, or first sent with acks=1): acks=all answers once it is committed.
      if (acks === -1) await this.untilCommitted(p, topic, verdict.batch.lastOffset);
      return { baseOffset: verdict.batch.baseOffset, lastOffset: verdict.batch.lastOffset };
    }
    const appended = replica.append(batch, acks === 0 ? 1 : acks, max, crc);
    // Offsets are known once the leader's log has the batch; a duplicate waits for them.
    const rec = { firstSeq, lastSeq, baseOffset: -1, lastOffset: -1, done: Promise.resolve() };
    rec.done = appended.then((r) => {
      rec.baseOffset = r.baseOffset;
      rec.lastOffset = r.lastOffset;
    });
    table.record(h.producerId, h.producerEpoch, rec);
    rec.done.catch(() => p.resetProducerState()); // not written: the table must not vouch for it
    if (acks === 0) return { baseOffset: -1, lastOffset: -1 };
    return appended;
  }

  /**
   * Wait until this leader has committed the partition up to `lastOffset`, within the request
   * timeout. Only in the term it leads now: in that term no other leader can have replaced its
   * log's entries, so the offsets committed are the batch's. Otherwise REQUEST_TIMED_OUT (a new
   * leader may still commit it; the idempotent producer's retry is safe).
   */
  private async untilCommitted(p: Partition, topic: Topic, lastOffset: number): Promise<void> {
    const replica = p.replica!;
    const term = replica.group.node.term;
    const refuse = () => unknownOutcome(topic.record.name, p.index, replica.leader);
    const deadline = this.clock.now() + this.cluster!.requestTimeoutMs;
    while (p.log.highWatermark <= lastOffset) {
      const leftMs = deadline - this.clock.now();
      if (!replica.isLeader || replica.group.node.term !== term || leftMs <= 0) throw refuse();
      await p.waitForRecords(lastOffset, Math.min(leftMs, COMMIT_RECHECK_MS));
    }
    if (replica.group.node.term !== term) throw refuse();
  }

  /** Calls other peers forward here. */
  private serveForwarded(cluster: ClusterNode): void {
    cluster.handle("produce", async (_from, body) => {
      const { topic, partition, batch, acks, idempotent, hops } = body as { topic: string; partition: number; batch: Uint8Array; acks: Acks; idempotent: boolean; hops?: number };
      // Closing, this peer hands its leaderships over (close()): the caller retries at the next
      // leader. NOT_READY would end the caller's retries and fail a produce the cluster can take.
      if (this.state !== "open") throw notLeader(topic, partition, 0);
      const t = this.topic(topic);
      const p = this.partition(topic, partition);
      if (!p.replica?.isLeader) {
        // A replica that is not the leader knows who is: pass it on once (a peer without a replica
        // guessed the preferred leader). Never twice, so an election cannot bounce it around.
        const leader = p.replica?.leader ?? 0;
        if (leader && leader !== cluster.self && !hops) return cluster.call(leader, "produce", { ...(body as object), hops: 1 });
        throw notLeader(topic, partition, leader);
      }
      // The leader's own disk budget (the peer the produce entered by checked its own in produce()).
      if (!isInternalTopic(topic)) this.mirrorRetention?.checkWrites(topic);
      return this.appendAsLeader(p, t, new Uint8Array(batch), acks, idempotent === true);
    });
    cluster.handle("fetch", async (_from, body) => {
      const { topic, partition, offset, options } = body as { topic: string; partition: number; offset: number; options: FetchOptions };
      return this.fetch(topic, partition, offset, options);
    });
    cluster.handle("mirror.read", async (_from, body) => {
      const { topic, partition, offset, maxBytes, waitMs } = body as { topic: string; partition: number; offset: number; maxBytes: number; waitMs: number };
      if (this.state !== "open") throw notLeader(topic, partition, 0);
      const r = await this.readLocalReplica(topic, partition, offset, maxBytes, waitMs);
      // Who leads, as this replica knows: the caller asks it first next time.
      return { ...r, leader: this.localPartition(topic, partition)?.leading ? cluster.self : (this.partition(topic, partition).replica?.leader ?? 0) };
    });
    cluster.handle("status", async () => cluster.status());
    cluster.handle("groups", async (_from, body) => {
      const { method, args } = body as { method: GroupMethod; args: unknown[] };
      this.checkCoordinator();
      return callLocal(this.coordinator, method, args);
    });
  }

  /** Add a peer to the running cluster (see ClusterNode.addPeer). */
  async addPeer(id: number, address: string): Promise<void> {
    const cluster = this.clusterOrRefuse();
    if (!Number.isSafeInteger(id) || id < 1 || id > 0xffff || typeof address !== "string" || !/^.+:\d+$/.test(address)) {
      throw new TributaryError("INVALID_REQUEST", "a peer is {\"id\": 1 to 65535, \"address\": \"host:port\"} of its peer listener");
    }
    await cluster.addPeer({ id, address });
  }

  /** Remove a peer from the running cluster, moving its replicas off it first (see ClusterNode.removePeer). */
  async removePeer(id: number): Promise<void> {
    const cluster = this.clusterOrRefuse();
    if (!cluster.peer(id)) throw new TributaryError("INVALID_REQUEST", `peer ${id} is not in the cluster`);
    await cluster.removePeer(id);
  }

  /**
   * Start moving a partition's replicas to `replicas` (peer ids, preferred leader first); resolves
   * once the move is recorded. The partition's leader then adds and removes one replica at a time.
   */
  async reassignPartition(topic: string, partition: number, replicas: readonly number[]): Promise<void> {
    const cluster = this.clusterOrRefuse();
    if (!Array.isArray(replicas) || replicas.length === 0 || !replicas.every((id) => Number.isSafeInteger(id) && id > 0)) {
      throw new TributaryError("INVALID_REQUEST", "replicas is a non-empty list of peer ids");
    }
    if (!Number.isSafeInteger(partition) || partition < 0) throw new TributaryError("INVALID_REQUEST", "a partition is a non-negative integer");
    await cluster.reassign(topic, partition, replicas);
  }

  private clusterOrRefuse(): ClusterNode {
    this.checkOpen();
    if (!this.cluster) throw new TributaryError("INVALID_REQUEST", "this broker is a single node: no cluster.peers");
    return this.cluster;
  }

  /** Every peer's view, gathered for `tributary cluster status`; peers out of reach are marked so. */
  async clusterStatus(): Promise<ClusterStatus | null> {
    const cluster = this.cluster;
    if (!cluster) return null;
    const deadline = this.clock.now() + 1000;
    const views = await Promise.all(
      cluster.peers.map(async (peer) => {
        try {
          return { peer, groups: (await cluster.call(peer.id, "status", {}, deadline)) as GroupStatus[] };
        } catch {
          return { peer, groups: null };
        }
      }),
    );
    const byGroup = new Map<string, GroupStatus>();
    for (const v of views) for (const g of v.groups ?? []) if (g.role === "leader" && (byGroup.get(g.group)?.term ?? -1) < g.term) byGroup.set(g.group, g);
    const mine = new Map(cluster.status().map((g) => [g.group, g]));
    const partitions: ClusterStatus["partitions"] = [];
    for (const t of [...this.topics.values()].sort((a, b) => a.record.name.localeCompare(b.record.name))) {
      for (let i = 0; i < t.record.partitions; i++) {
        const id = partitionGroupId(t.record.id, i);
        const lead = byGroup.get(id) ?? mine.get(id);
        const last = lead?.lastIndex ?? 0;
        partitions.push({
          topic: t.record.name,
          partition: i,
          replicas: [...(t.replicas?.[i] ?? [])],
          leader: byGroup.get(id)?.leader ?? lead?.leader ?? 0,
          term: lead?.term ?? 0,
          commit: lead?.commit ?? 0,
          lag: (lead?.progress ?? []).map((pr) => ({ peer: pr.peer, entries: Math.max(0, last - pr.match) })),
          move: t.targets?.[i] ? { target: [...t.targets[i]!], voters: [...(lead?.voters ?? [])] } : null,
        });
      }
    }
    return {
      self: cluster.self,
      peers: views.map((v) => ({ id: v.peer.id, address: v.peer.address, reachable: v.groups !== null })),
      controller: { leader: cluster.controller.group.leader },
      partitions,
    };
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
      preallocateBytes: this.config.preallocateBytes,
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

  /** `binding`: config set by the broker itself, past the checks a create request gets (a mirror target's source). */
  private createTopicWith(name: string, partitions: number | undefined, config: TopicConfigInput, internal: boolean, binding: TopicRecord["config"] = {}): Promise<TopicDescription> {
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
      const record: TopicRecord = { name, id: newTopicId(), partitions: count, config: { ...overrides, ...binding }, createdAtMs: this.clock.now() };
      if (this.cluster) return this.createInCluster(this.cluster, record);
      const topic = await this.openTopic(record);
      try {
        await this.store.save([...[...this.topics.values()].map((t) => t.record), record]);
      } catch (e) {
        await Promise.allSettled(topic.partitions.map((p) => p?.log.close()));
        await this.fs.remove(this.store.topicDir(record));
        throw new TributaryError("STORAGE_ERROR", `could not write topic metadata: ${(e as Error).message}`, { cause: e });
      }
      this.topics.set(name, topic);
      this.logger.info("topic created", { topic: name, partitions: count, config: overrides });
      this.topicsChanged();
      return this.describe(topic);
    });
  }

  /** Cluster mode: the controller places and records the topic; every peer then opens its replicas. */
  private async createInCluster(cluster: ClusterNode, record: TopicRecord): Promise<TopicDescription> {
    // A new cluster records its peers first (bootstrapCluster); placement draws on them.
    await this.untilLocal(() => cluster.controller.group.node.confState().voters.every((id) => cluster.metadata.peers().some((p) => p.id === id)));
    try {
      await cluster.proposeMeta({ type: "create-topic", record, replicationFactor: this.config.cluster!.replicationFactor });
    } catch (e) {
      // A retry of our own command that had been applied after all.
      if (!(isTributaryError(e) && e.code === "TOPIC_EXISTS" && cluster.metadata.topic(record.name)?.record.id === record.id)) throw e;
    }
    await this.untilLocal(() => this.topics.get(record.name)?.record.id === record.id);
    this.logger.info("topic created", { topic: record.name, partitions: record.partitions, config: record.config });
    return this.describe(this.topics.get(record.name)!);
  }

  /** Wait (bounded by the request timeout) until this peer has applied a metadata change. */
  private async untilLocal(done: () => boolean): Promise<void> {
    const deadline = this.clock.now() + this.cluster!.requestTimeoutMs;
    while (!done()) {
      if (this.clock.now() > deadline) throw new TributaryError("NOT_READY", "the change is committed but this peer has not applied it yet; retry");
      await this.cluster!.sleep(10);
    }
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
      if (this.cluster) {
        await this.cluster.proposeMeta({ type: "delete-topic", name }).catch((e: unknown) => {
          if (!(isTributaryError(e) && e.code === "TOPIC_NOT_FOUND")) throw e;
        });
        await this.untilLocal(() => this.topics.get(name)?.record.id !== topic.record.id);
        return;
      }
      this.topics.delete(name);
      try {
        await this.store.save([...this.topics.values()].map((t) => t.record));
      } catch (e) {
        this.topics.set(name, topic);
        throw new TributaryError("STORAGE_ERROR", `could not write topic metadata: ${(e as Error).message}`, { cause: e });
      }
      await this.dropTopic(topic);
    });
  }

  private describe(t: Topic): TopicDescription {
    return {
      name: t.record.name,
      // A partition only other peers hold shows -1s: its numbers live with its replicas.
      partitions: t.partitions.map((p, i) => ({
        partition: i,
        logStartOffset: p?.log.logStartOffset ?? -1,
        highWatermark: p?.log.highWatermark ?? -1,
        logEndOffset: p?.log.logEndOffset ?? -1,
        sizeBytes: p?.log.sizeBytes ?? -1,
      })),
      config: { ...describeTopicSettings(t.settings), ...mirrorSourceOf(t.record) },
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
    if (p === undefined) throw new TributaryError("PARTITION_NOT_FOUND", `topic ${topic} has partitions 0 to ${t.partitions.length - 1}, not ${index}`);
    if (p === null) throw notLeader(topic, index, this.leaderOf(t, index));
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
    const counter = await this.producerIds!.allocate();
    // In a cluster the low 16 bits name the peer that issued the id, so ids never collide.
    const producerId = this.cluster ? counter * PEER_ID_SPACE + this.cluster.self : counter;
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
      const existing = this.topics.get(topicName);
      if (existing) checkNotMirrorTarget(existing.record);
      this.mirrorRetention?.checkWrites(topicName);
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
      index,
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
        const done = this.appendBatch(topic, plan.index, batch.bytes, acks).then((r) => {
          for (let i = 0; i < count; i++) {
            results[plan.members[first + i]!] = { partition: plan.index, offset: acks === 0 ? -1 : r.baseOffset + i };
          }
          this.m.recordsProduced.inc({ topic: topicName }, count);
          this.m.bytesProduced.inc({ topic: topicName }, bytes);
          this.mirrorRetention?.noteProduced(bytes);
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
      return plans.flatMap((plan) => plan.members.map((m) => ({ m, partition: plan.index })))
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
    if (this.cluster ? !this.cluster.peer(producerId % PEER_ID_SPACE) : !this.producerIds!.issued(producerId)) {
      throw new TributaryError("UNKNOWN_PRODUCER_ID", `producer id ${producerId} was not issued by this broker; call initProducerId first`);
    }
    const topic = await this.topicForProduce(topicName);
    const groups = this.groupByPartition(topic, records);
    if (groups.size !== 1) {
      throw new TributaryError("INVALID_REQUEST", `an idempotent produce call must send all its records to one partition; these go to partitions ${[...groups.keys()].sort((a, b) => a - b).join(", ")} (set "partition" on each record)`);
    }
    const [index] = [...groups.keys()] as [number];
    const batches = this.encodeForPartition(topic, records, this.clock.now(), { producerId, producerEpoch, baseSequence });
    if (batches.length !== 1) {
      throw new TributaryError("RECORD_TOO_LARGE", `an idempotent produce call must fit one batch of max.message.bytes (${topic.settings.maxMessageBytes}); send fewer records per call`);
    }
    const bytes = batches[0]!.bytes;
    if (this.cluster) {
      // The leader checks the sequence (the batch header carries id, epoch and sequence).
      const r = await this.appendBatch(topic, index, bytes, acks, true);
      return records.map((_, i) => ({ partition: index, offset: acks === 0 ? -1 : r.baseOffset + i }));
    }
    const partition = topic.partitions[index]!;
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
      const appended = partition.log.append(bytes, ENCODED_HERE);
      if (partition.log.logEndOffset === before) {
        await appended; // refused before an offset was assigned: rethrows
        throw new Error("invariant broken: an append that assigned no offset resolved");
      }
      batch = { firstSeq, lastSeq, baseOffset: before, lastOffset: before + records.length - 1, done: appended.then(() => {}) };
      table.record(producerId, producerEpoch, batch);
      const done = appended.then(() => {
        this.m.recordsProduced.inc({ topic: topicName }, records.length);
        this.m.bytesProduced.inc({ topic: topicName }, bytes.length);
        this.mirrorRetention?.noteProduced(bytes.length);
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
    const t = this.topic(topicName);
    if (this.cluster && t.partitions[partitionIndex] === null) {
      // No replica here: ask the leader (it serves committed records, as every replica does).
      const leader = this.leaderOf(t, partitionIndex);
      const { signal: _signal, ...wire } = options;
      // A long poll waits there: the call may take that long, plus the usual margin.
      const deadline = this.clock.now() + Math.min(options.waitMs ?? 0, this.config.http.maxWaitMs) + 2000;
      return this.forward<FetchResult>(t, partitionIndex, leader, "fetch", { topic: topicName, partition: partitionIndex, offset, options: wire }, deadline);
    }
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
  private async *readWholePartition(topic: string, partition: number, fromOffset = 0): AsyncIterable<DecodedRecord> {
    const p = this.partition(topic, partition);
    const end = p.log.highWatermark;
    let offset = Math.max(p.log.logStartOffset, fromOffset);
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

  // ---- mirroring (the edge's side, partitions without a replica here: src/mirror/remote-source.ts)

  /**
   * Raw whole batches of a partition (never past the high watermark) and its bounds, from a
   * replica of it: here when this peer holds one, else forwarded to the replica that answered
   * last (the leader when it named one; at first the leader as this peer knows it), or to the
   * next replica after one out of reach or behind (any replica's committed bytes are the same);
   * retried until the request timeout. `maxBytes` 0 asks for the bounds only; `waitMs` > 0
   * long-polls until the high watermark passes `offset`.
   */
  async readReplica(topic: string, partition: number, offset: number, maxBytes: number, waitMs: number): Promise<ReplicaRead> {
    const cluster = this.cluster;
    const t = this.topic(topic);
    const local = Number.isSafeInteger(partition) ? t.partitions[partition] : undefined;
    if (!cluster || local !== null) return this.readLocalReplica(topic, partition, offset, maxBytes, waitMs); // PARTITION_NOT_FOUND when undefined
    const group = partitionGroupId(t.record.id, partition);
    const replicas = (t.replicas?.[partition] ?? []).filter((r) => r !== cluster.self);
    return cluster.retrying(async () => {
      // The replica that answered last (the leader when it named one), else the leader as known.
      const to = this.mirrorReadFrom.get(group) ?? this.leaderOf(t, partition);
      if (!to) throw notLeader(topic, partition, 0);
      const body = { topic, partition, offset, maxBytes, waitMs };
      // A long poll waits there: the call may take that long, plus the usual margin (else one attempt's default).
      const call = waitMs > 0 ? cluster.call(to, "mirror.read", body, this.clock.now() + Math.min(waitMs, MIRROR_READ_MAX_WAIT_MS) + 2000) : cluster.call(to, "mirror.read", body);
      const reply = await call.catch((e: unknown) => {
        // Out of reach, or behind: this call's retry and the next calls go to the next replica.
        const next = replicas[(replicas.indexOf(to) + 1) % Math.max(1, replicas.length)];
        this.rememberReadFrom(group, next ?? 0);
        throw e;
      });
      const { leader, ...r } = reply as ReplicaRead & { leader: NodeId };
      this.rememberReadFrom(group, leader || to);
      return { ...r, batches: new Uint8Array(r.batches) };
    }, { unknownOutcome: true }); // a read done twice is harmless
  }

  /** This peer's side of `readReplica`: its own replica (one behind `offset` refuses with NOT_LEADER: the caller asks another). */
  private async readLocalReplica(topic: string, partition: number, offset: number, maxBytes: number, waitMs: number): Promise<ReplicaRead> {
    const p = this.partition(topic, partition);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new TributaryError("INVALID_REQUEST", `offset must be a non-negative integer, got ${String(offset)}`);
    const bytes = clampInt(maxBytes, 0, 0, MIRROR_READ_MAX_BYTES, "maxBytes");
    const wait = Math.min(clampInt(waitMs, 0, 0, Number.MAX_SAFE_INTEGER, "waitMs"), MIRROR_READ_MAX_WAIT_MS);
    // Behind the caller (a follower, or a new leader that has not learnt the commit yet): another replica has it.
    if (p.replica && offset > p.log.highWatermark) {
      throw new TributaryError("NOT_LEADER", `${topic}/${partition} is committed up to ${p.log.highWatermark} here, not ${offset} yet; retry at another replica`);
    }
    if (bytes > 0) this.checkRange(p, offset);
    if (wait > 0 && offset >= p.log.highWatermark) {
      if (this.mirrorReadWaits >= MIRROR_READ_MAX_WAITS) throw new TributaryError("OVERLOADED", `${MIRROR_READ_MAX_WAITS} mirror reads already wait here; retry later`);
      this.mirrorReadWaits++;
      try {
        await p.waitForRecords(offset, wait);
      } finally {
        this.mirrorReadWaits--;
      }
      this.checkOpen();
    }
    const batches = bytes > 0 ? (await p.log.read(offset, bytes)).batches : new Uint8Array(0);
    const log = p.log;
    return { batches, highWatermark: log.highWatermark, logStartOffset: log.logStartOffset, logEndOffset: log.logEndOffset, sizeBytes: log.sizeBytes };
  }

  /** Mirror reads long-polling here now (MIRROR_READ_MAX_WAITS at most). */
  private mirrorReadWaits = 0;
  /** Per partition group without a replica here: the peer the next mirror read asks first. */
  private readonly mirrorReadFrom = new Map<string, NodeId>();

  private rememberReadFrom(group: string, peer: NodeId): void {
    // Bounded: groups of deleted topics would stay forever; forgetting only costs a retry.
    if (this.mirrorReadFrom.size >= MIRROR_READ_FROM_MAX && !this.mirrorReadFrom.has(group)) this.mirrorReadFrom.clear();
    if (peer) this.mirrorReadFrom.set(group, peer);
    else this.mirrorReadFrom.delete(group);
  }

  // ---- mirroring (the central's side: src/mirror/central.ts) ---------------------------------

  /**
   * Bind a mirror link's topics to their targets (creating them) and answer the positions; each
   * topic refused on its own (its welcome says why).
   * @example const [w] = await broker.mirrorOpen({ link: "to-dc", cluster: "site7", topics: [{ sourceTopic: "t", sourceTopicId, target: "site7.t", partitions: 1, config: {} }] });
   */
  mirrorOpen(hello: LinkHello): Promise<TopicWelcome[]> {
    return this.central.open(hello);
  }

  /** Admit one mirror send into its target partition (acks=all); resolves with the position (null: none). */
  mirrorAppend(send: CentralSend): Promise<number | null> {
    return this.central.append(send);
  }

  /** Positions of the targets of `cluster`'s source topics (all, or those named). */
  mirrorPositions(cluster: string, sourceTopics: readonly string[] = []): Promise<SourcePositions[]> {
    return this.central.positions(cluster, sourceTopics);
  }

  /** Commit an edge's group offsets (source offsets) here, translated; one result per commit. */
  mirrorCommitGroupOffsets(cluster: string, commits: readonly GroupOffsetCommit[]): Promise<GroupOffsetResult[]> {
    return this.central.commitGroupOffsets(cluster, commits);
  }

  /** The target topic a source topic of `cluster` is mirrored into here, or null (the gateways' ACL checks). */
  mirrorTargetOf(cluster: string, sourceTopic: string): string | null {
    try {
      return this.central.targetOf(cluster, sourceTopic)?.record.name ?? null;
    } catch {
      return null;
    }
  }

  /** Every target of a source cluster here. */
  mirrorTargetsOf(cluster: string): string[] {
    return [...this.topics.values()].filter((t) => t.record.config[MIRROR_SOURCE_KEY]?.startsWith(`${cluster}/`)).map((t) => t.record.name);
  }

  // ---- maintenance --------------------------------------------------------------------------

  private scheduleMaintenance(): void {
    this.cancelMaintenance = this.clock.setTimer(this.config.maintenanceIntervalMs, () => {
      void this.runMaintenance().finally(() => {
        if (this.state === "open") this.scheduleMaintenance();
      });
    });
  }

  /**
   * One pass of retention and compaction over every partition; one pass at a time. With a
   * mirror retention source installed, the mirror-aware pass (src/mirror/retention-driver.ts)
   * takes the place of each user topic's own time/size retention.
   */
  runMaintenance(): Promise<void> {
    if (this.maintenanceRunning) return this.maintenanceRunning;
    this.maintenanceRunning = (async () => {
      const mirror = this.mirrorRetention;
      if (mirror && this.state === "open") {
        await mirror.request().catch((e: unknown) => this.logger.error("mirror retention failed", { error: e }));
      }
      for (const t of [...this.topics.values()]) {
        for (const p of t.partitions) {
          if (this.state !== "open") return;
          if (!p) continue;
          try {
            // A mirror target keeps the segment of its newest stamped batch: its position lives there.
            const floor = await this.central.retentionFloor(t, p);
            if (t.settings.cleanupPolicy.includes("delete") && !(mirror && mirrorRetained(t))) {
              const deleted = await p.log.enforceRetention(floor);
              if (deleted > 0) this.logger.info("retention deleted segments", { topic: p.topic, partition: p.index, segments: deleted });
            }
            if (t.settings.cleanupPolicy.includes("compact")) {
              const stats = await p.log.compact(floor);
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

  // ---- mirror-aware retention ------------------------------------------------------------------

  /**
   * Install (or remove, with null) what the mirror knows of its positions: from now on retention
   * keeps unmirrored segments of user topics, the disk budget (`mirror.disk.budget.bytes`)
   * applies, and produce is refused while it says so. Without one, retention is as without mirroring.
   * @example broker.setMirrorRetention({ mirroredBelow: (t, p) => checkpoints.get(t, p), recordDropped: (t, p, r) => ledger.add(t, p, r) });
   */
  setMirrorRetention(source: MirrorRetentionSource | null): void {
    const previous = this.mirrorRetention;
    this.mirrorRetention = null;
    // The old driver's pass, if one runs, ends before the new one's first: never two deleting at once.
    const stopped = previous ? previous.stop() : Promise.resolve();
    if (!source) return;
    this.mirrorRetention = new MirrorRetentionDriver(
      {
        source,
        partitions: () => this.retainedPartitions(),
        clock: this.clock,
        logger: this.logger,
        countDropped: (topic, reason, offsets) => this.m.mirrorDropped.inc({ topic, reason }, offsets),
        previous: stopped,
      },
      this.config.mirrorRetention,
    );
  }

  /**
   * The mirror's positions moved (an ack, a checkpoint): re-plan now while writes are refused,
   * so they resume without waiting for the maintenance interval. Resolves when that pass ends.
   */
  mirrorPositionsMoved(): Promise<void> {
    const mirror = this.mirrorRetention;
    if (!mirror?.refusing || this.state !== "open") return Promise.resolve();
    return mirror.request().catch((e: unknown) => this.logger.error("mirror retention failed", { error: e }));
  }

  /** True while produce to user topics is refused because the disk budget is reached. */
  get mirrorWritesRefused(): boolean {
    return this.mirrorRetention?.refusing ?? false;
  }

  /** What the disk budget counts: the bytes of every local partition log. */
  private diskUsedBytes(): number {
    let n = 0;
    for (const t of this.topics.values()) for (const p of t.partitions) if (p) n += p.log.sizeBytes;
    return n;
  }

  private retainedPartitions(): RetainedPartition[] {
    const out: RetainedPartition[] = [];
    for (const t of [...this.topics.values()].sort((a, b) => a.record.name.localeCompare(b.record.name))) {
      const candidate = mirrorRetained(t);
      const { retentionMs, retentionBytes, mirrorAware } = t.settings;
      for (const p of t.partitions) if (p) out.push({ topic: p.topic, partition: p.index, log: p.log, candidate, retentionMs, retentionBytes, mirrorAware });
    }
    return out;
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /** Stop taking requests, wake waiting readers, flush and close every log. */
  async close(): Promise<void> {
    if (this.state === "closing" || this.state === "closed") return;
    this.coordinatorEpoch++;
    this.state = "closing";
    this.cancelMaintenance?.();
    this.coordinator.close();
    // First of all, hand over what this peer leads, so the site does not wait for an election
    // timeout (a maintenance pass finishing meanwhile must not delay it).
    const handover = this.cluster?.transferLeadership(2000).catch(() => {});
    // Not awaited: a pass waiting on the drop ledger must not hold up shutdown; it deletes nothing once
    // stopped, and a deletion under way finishes before its log closes (the log runs one at a time).
    void this.mirrorRetention?.stop();
    await this.maintenanceRunning;
    await this.adminChain;
    if (this.cluster) {
      await handover;
      await this.cluster.close();
      await this.reconciling;
    }
    const all = [...this.topics.values()].flatMap((t) => t.partitions).filter((p): p is Partition => p !== null);
    for (const p of all) p.release();
    const results = await Promise.allSettled(all.map((p) => p.log.close()));
    this.state = "closed";
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length > 0) this.logger.error("some partition logs failed to close", { count: failed.length });
    this.logger.info("broker closed");
  }
}

const INT16_MAX = 0x7fff;
/** A replicated partition's log: its Raft log, so compaction keeps every batch (an index each). */
const REPLICATED_LOG = { highWatermark: "external", keepEmptyBatches: true } as const;
/** How often a produce waiting for a commit checks that this peer still leads. */
const COMMIT_RECHECK_MS = 100;
/** Bounds of a forwarded mirror read (readReplica): the longest long poll, bytes per read, concurrent long polls served. */
const MIRROR_READ_MAX_WAIT_MS = 5000;
const MIRROR_READ_MAX_BYTES = 8 << 20;
const MIRROR_READ_MAX_WAITS = 64;
const MIRROR_READ_FROM_MAX = 4096;
/** Producer ids in a cluster: counter * PEER_ID_SPACE + the issuing peer's id. */
const PEER_ID_SPACE = 0x10000;

function mirrorSourceOf(record: TopicRecord): Record<string, string> {
  const source = record.config[MIRROR_SOURCE_KEY];
  return source === undefined ? {} : { [MIRROR_SOURCE_KEY]: source };
}

function isInternalTopic(name: string): boolean {
  return name.startsWith("__");
}

/** A topic whose old segments the mirror-aware pass deletes (when installed): a user topic with cleanup.policy delete. */
function mirrorRetained(t: Topic): boolean {
  return !isInternalTopic(t.record.name) && t.settings.cleanupPolicy.includes("delete");
}
const INT32_MAX = 0x7fffffff;

function clampInt(v: number | undefined, dflt: number, min: number, max: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min) throw new TributaryError("INVALID_REQUEST", `${name} must be an integer of at least ${min}, got ${String(v)}`);
  return Math.min(v, max);
}
