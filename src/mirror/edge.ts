/**
 * `MirrorEdge`: the mirror links of one edge broker, their checkpoints, mirrored groups, status
 * and metrics. In a cluster it runs on one peer only, the leader of `__mirror_checkpoints` (as
 * the group coordinator follows the leader of `__consumer_offsets`): the host reports leadership
 * once this peer leads the topic with its whole log committed, and the edge then replays the
 * checkpoints and starts the links; losing it stops them. On a single node that is at once.
 *
 * `retention` (a `MirrorRetentionSource`) answers on every peer: each link's topic selection is
 * known from the config, and a peer that does not lead tails its local replica of
 * `__mirror_checkpoints` every `checkpointIntervalMs` (the positions are written no more often),
 * so its own mirror-aware retention deletes what the central holds, and keeps the rest.
 *
 * The sink is made by an injected factory (src/ never imports gateways/): the composition root
 * (cli/serve.ts) builds the Tributary gRPC sink, tests the in-memory central.
 *
 * @example
 *   const edge = new MirrorEdge({ clusterId: "site7", config, host: broker.mirrorHost(), sinkFor, clock, random: Math.random, logger, metrics, checkpointIntervalMs: 1000 });
 *   await edge.start();
 *   edge.status();   // { cluster, leading, links: [{ name, state, partitions: [...] }] }
 */
import { TributaryError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { Metrics } from "../metrics.ts";
import type { Clock } from "../runtime/clock.ts";
import { MirrorCheckpoints } from "./checkpoints.ts";
import type { MirrorConfig, MirrorLinkConfig } from "./config.ts";
import { GroupOffsetsMirror } from "./group-offsets.ts";
import { MirrorLink, type LinkStatus } from "./runner.ts";
import type { MirrorHost } from "./source.ts";
import { selects } from "./topics.ts";
import type { DroppedRange, MirrorRetentionSource, MirrorSink } from "./types.ts";

/** Makes a connection to a link's central (cli/serve.ts: the gRPC sink; tests: MemCentral). */
export type LinkSinkFactory = (link: MirrorLinkConfig) => MirrorSink;

export interface MirrorEdgeOptions {
  readonly clusterId: string;
  readonly config: MirrorConfig;
  readonly host: MirrorHost;
  readonly sinkFor: LinkSinkFactory;
  readonly clock: Clock;
  readonly random: () => number;
  readonly logger: Logger;
  readonly metrics?: Metrics;
  readonly checkpointIntervalMs: number;
  /** How often mirrored groups' offsets are read and sent (also 100 ms after a commit here). Default 5000. */
  readonly groupSyncIntervalMs?: number;
  /** Told whenever an acknowledged position moves (edge retention re-plans while it refuses writes). */
  readonly onPositionsMoved?: () => void;
}

export interface LinkStatusWithLedger extends LinkStatus {
  /** Per partition the link carries: what the edge dropped unmirrored (the drop ledger). */
  readonly dropped: readonly { topic: string; partition: number; ranges: readonly DroppedRange[]; droppedOffsets: number }[];
  readonly pendingGroupOffsets: number;
}

/** What a gateway needs of the edge's mirror (HTTP GET /v1/mirror, gRPC AdminService.DescribeMirror). */
export interface MirrorControl {
  status(): MirrorStatus;
  pause(link: string): void;
  resume(link: string): void;
}

export interface MirrorStatus {
  readonly cluster: string;
  /** True where the links run (this peer leads __mirror_checkpoints). */
  readonly leading: boolean;
  readonly links: readonly LinkStatusWithLedger[];
}

interface RunningLink {
  readonly config: MirrorLinkConfig;
  readonly link: MirrorLink;
  readonly groups: GroupOffsetsMirror;
}

const ENSURE_RETRY_MS = 1000;
const COMMIT_SYNC_DELAY_MS = 100;
const LINK_STATES = ["connecting", "connected", "backing-off", "paused", "throttled", "stopped"] as const;

export class MirrorEdge {
  readonly checkpoints: MirrorCheckpoints;
  private links: RunningLink[] = [];
  private leading = false;
  /** Bumped on every leadership change: a replay that finishes late for an old one is dropped. */
  private epoch = 0;
  private readonly paused = new Set<string>();
  private unsubscribe: (() => void) | null = null;
  private unsubscribeCommits: (() => void) | null = null;
  private cancelGroupTimer: (() => void) | null = null;
  private cancelCommitSync: (() => void) | null = null;
  private cancelRefresh: (() => void) | null = null;
  private refreshing = false;
  /** Leadership changes queued or running: a refresh waits until they are done. */
  private transitions = 0;
  private state: "new" | "running" | "stopped" = "new";
  private transition: Promise<void> = Promise.resolve();
  private readonly bytesSent;

  constructor(private readonly o: MirrorEdgeOptions) {
    this.checkpoints = new MirrorCheckpoints(o.host.checkpoints, o.clock, { intervalMs: o.checkpointIntervalMs, logger: o.logger, onMoved: o.onPositionsMoved });
    for (const l of o.config.links) this.checkpoints.registerLink(l.name, (t) => selects(l.mapping, t));
    this.bytesSent = o.metrics?.counter("tributary_mirror_bytes_sent_total", "Bytes on the wire (compressed) of sends acknowledged by the central, by lane", ["link", "lane"]);
    if (o.metrics) this.registerGauges(o.metrics);
  }

  /** What edge retention asks before deleting (valid on every peer, leading or not). */
  get retention(): MirrorRetentionSource {
    return this.checkpoints;
  }

  /**
   * Create __mirror_checkpoints if missing and follow its leadership. Resolves once the topic
   * exists, or after the first failed attempt (a cluster without quorum yet): then it keeps
   * trying in the background, so the broker serves meanwhile.
   */
  async start(): Promise<void> {
    if (this.state !== "new") return;
    this.state = "running";
    this.scheduleGroupSync();
    this.scheduleRefresh();
    // A commit is sent soon after it is made (a burst of commits, once).
    this.unsubscribeCommits = this.o.host.groups.onCommit(() => {
      this.cancelCommitSync ??= this.o.clock.setTimer(COMMIT_SYNC_DELAY_MS, () => {
        this.cancelCommitSync = null;
        void this.syncGroups();
      });
    });
    await this.ensureThenFollow();
  }

  private async ensureThenFollow(): Promise<void> {
    try {
      await this.o.host.checkpoints.ensure();
    } catch (e) {
      if (this.state !== "running") return;
      this.o.logger.warn("mirror: could not create __mirror_checkpoints yet; retrying", { error: e });
      this.o.clock.setTimer(ENSURE_RETRY_MS, () => void this.ensureThenFollow());
      return;
    }
    if (this.state === "running") this.unsubscribe = this.o.host.checkpoints.onLeadership((leading) => this.follow(leading));
  }

  /** Stop the links, write their positions, stop following leadership. */
  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "stopped";
    this.unsubscribe?.();
    this.unsubscribeCommits?.();
    this.cancelGroupTimer?.();
    this.cancelCommitSync?.();
    this.cancelRefresh?.();
    this.epoch++;
    await this.transition;
    await this.stopLinks(true);
    this.checkpoints.close();
  }

  pause(name: string): void {
    this.linkOrRefuse(name);
    this.paused.add(name);
    this.links.find((l) => l.config.name === name)?.link.pause();
  }

  resume(name: string): void {
    this.linkOrRefuse(name);
    this.paused.delete(name);
    this.links.find((l) => l.config.name === name)?.link.resume();
  }

  /** Read and send mirrored groups' committed offsets now (also run every groupSyncIntervalMs). */
  async syncGroups(): Promise<void> {
    await Promise.all(
      this.links.map((l) =>
        l.groups.sync(l.link.sink).catch((e: unknown) => this.o.logger.warn("mirror: could not send group offsets; retried", { link: l.config.name, error: e })),
      ),
    );
  }

  status(): MirrorStatus {
    const links = this.o.config.links.map((c): LinkStatusWithLedger => {
      const running = this.links.find((l) => l.config.name === c.name);
      const s = running?.link.status() ?? idleStatus(c.name, this.paused.has(c.name));
      const dropped = s.partitions.flatMap((p) => {
        const l = this.checkpoints.ledger(p.topic, p.partition);
        return l ? [{ topic: p.topic, partition: p.partition, ranges: l.ranges, droppedOffsets: l.droppedOffsets }] : [];
      });
      return { ...s, dropped, pendingGroupOffsets: running?.groups.pending ?? 0 };
    });
    return { cluster: this.o.clusterId, leading: this.leading, links };
  }

  private linkOrRefuse(name: string): void {
    if (!this.o.config.links.some((l) => l.name === name)) throw new TributaryError("INVALID_REQUEST", `no mirror link named ${JSON.stringify(name)}`);
  }

  /** Leadership of __mirror_checkpoints changed: replay and start, or stop. One change at a time. */
  private follow(leading: boolean): void {
    const epoch = ++this.epoch;
    this.transitions++;
    this.transition = this.transition.then(async () => {
      if (epoch !== this.epoch || this.state !== "running") return;
      await this.stopLinks(false);
      this.leading = false;
      if (!leading) return;
      try {
        await this.checkpoints.load();
      } catch (e) {
        this.o.logger.error("mirror: could not replay the checkpoints; the links stay stopped until leadership changes", { error: e });
        return;
      }
      if (epoch !== this.epoch || this.state !== "running") return;
      this.leading = true;
      this.links = this.o.config.links.map((c) => this.startLink(c));
      this.o.logger.info("mirror: links started", { links: this.links.map((l) => l.config.name) });
    }).finally(() => {
      this.transitions--;
    });
  }

  private startLink(c: MirrorLinkConfig): RunningLink {
    const link = new MirrorLink({
      name: c.name,
      cluster: this.o.clusterId,
      mapping: c.mapping,
      uplink: c.uplink,
      source: this.o.host.source,
      connect: () => this.o.sinkFor(c),
      checkpoints: this.checkpoints,
      clock: this.o.clock,
      random: this.o.random,
      logger: this.o.logger,
      lag: { stallAfterMs: c.stallAfterMs },
      onSent: (lane, bytes) => this.bytesSent?.inc({ link: c.name, lane }, bytes),
    });
    const groups = new GroupOffsetsMirror({ link: c.name, cluster: this.o.clusterId, groups: c.groups, carries: (t) => selects(c.mapping, t), reader: this.o.host.groups, logger: this.o.logger });
    link.start();
    if (this.paused.has(c.name)) link.pause();
    return { config: c, link, groups };
  }

  private async stopLinks(final: boolean): Promise<void> {
    const links = this.links;
    this.links = [];
    await Promise.all(links.map((l) => l.link.stop()));
    if (links.length === 0 && !final) return;
    // Positions acknowledged since the last write: written now (a peer that lost leadership may fail to; the next leader plans anyway).
    await this.checkpoints.flush().catch((e: unknown) => this.o.logger.warn("mirror: could not write the last checkpoints", { error: e }));
  }

  /** While another peer leads, follow the positions it writes through the local replica. */
  private scheduleRefresh(): void {
    if (this.state !== "running") return;
    this.cancelRefresh = this.o.clock.setTimer(this.o.checkpointIntervalMs, () => {
      this.cancelRefresh = null;
      void this.refreshAsFollower().finally(() => this.scheduleRefresh());
    });
  }

  private async refreshAsFollower(): Promise<void> {
    // Leading (or a replay under way for a leadership change): the links' own positions are newer.
    if (this.leading || this.refreshing || this.transitions > 0) return;
    this.refreshing = true;
    try {
      await this.checkpoints.refresh();
    } catch (e) {
      // No local replica yet, or the topic not created: the next pass tries again.
      this.o.logger.debug("mirror: could not read __mirror_checkpoints here yet", { error: e });
    } finally {
      this.refreshing = false;
    }
  }

  private scheduleGroupSync(): void {
    if (this.state !== "running") return;
    this.cancelGroupTimer = this.o.clock.setTimer(this.o.groupSyncIntervalMs ?? 5000, () => {
      void this.syncGroups().finally(() => this.scheduleGroupSync());
    });
  }

  private registerGauges(m: Metrics): void {
    const labels = ["link", "topic", "partition"];
    const perPartition = (name: string, help: string, read: (l: NonNullable<LinkStatus["partitions"][number]["lag"]>) => number | null) =>
      m.gauge(name, help, labels).collect((set) => {
        for (const l of this.status().links) {
          for (const p of l.partitions) {
            const v = p.lag ? read(p.lag) : null;
            if (v !== null) set({ link: l.name, topic: p.topic, partition: String(p.partition) }, v);
          }
        }
      });
    perPartition("tributary_mirror_lag_records", "Offsets of the source partition not yet at the central", (s) => s.lagRecords);
    perPartition("tributary_mirror_lag_bytes", "Bytes of the source partition not yet at the central (estimated)", (s) => s.lagBytes);
    perPartition("tributary_mirror_lag_seconds", "Age of the oldest record not yet at the central", (s) => s.lagSeconds);
    perPartition("tributary_mirror_last_advance_timestamp_seconds", "When the central's position last moved (Unix seconds)", (s) => (s.lastAdvanceMs === null ? null : s.lastAdvanceMs / 1000));
    perPartition("tributary_mirror_drain_seconds", "Estimated time to catch up at the measured rates (absent: not shrinking)", (s) => s.drainSeconds);
    perPartition("tributary_mirror_stalled", "1 when the source has lag and the central's position has not moved for a while", (s) => (s.stalled ? 1 : 0));
    m.gauge("tributary_mirror_link_state", "1 for the state each mirror link is in", ["link", "state"]).collect((set) => {
      for (const l of this.status().links) for (const st of LINK_STATES) set({ link: l.name, state: st }, l.state === st ? 1 : 0);
    });
  }
}

/** A link not running here (another peer leads, or not started yet). */
function idleStatus(name: string, paused: boolean): LinkStatus {
  return {
    name,
    state: paused ? "paused" : "stopped",
    lastError: null,
    reconnects: 0,
    uplink: { bytesSent: { live: 0, backlog: 0 }, sends: { live: 0, backlog: 0 }, inflight: 0, tokens: 0 },
    summary: { partitions: 0, lagRecords: 0, lagBytes: 0, maxLagSeconds: 0, sendBytesPerSec: 0, sourceBytesPerSec: 0, drainSeconds: 0, stalledPartitions: 0 },
    partitions: [],
  };
}
