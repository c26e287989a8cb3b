/**
 * The seams of mirroring: how a source partition and its offsets are named, what one send to the
 * central carries, and `MirrorSink`, the interface every sink implements (the Tributary sink over
 * the central's `MirrorService`; a Kafka-protocol sink can follow). See index.ts for the design.
 */

/** A half-open range of source offsets: [from, to). Never empty where a range is reported. */
export interface OffsetRange {
  readonly from: number;
  readonly to: number;
}

/**
 * Why source offsets never reached the central:
 * - `disk-budget`: the edge deleted them unmirrored under `drop-oldest` (retention-policy.ts);
 * - `retention`: the edge's time/size retention deleted them unmirrored (a topic that is not
 *   mirror-aware, or data older than the link's last position it never sent);
 * - `central-lost`: the central had acknowledged them and no longer has them (restored from an
 *   older backup), and the edge has deleted them since, as it may once they are acknowledged.
 */
export type GapReason = "disk-budget" | "retention" | "central-lost";

export interface Gap extends OffsetRange {
  readonly reason: GapReason;
}

/** What the edge deleted unmirrored, kept in its drop ledger (see index.ts, "Checkpoints"). */
export interface DroppedRange extends OffsetRange {
  readonly reason: Exclude<GapReason, "central-lost">;
}

/** One partition of an edge topic, as the central knows it. */
export interface SourcePartition {
  /** The edge cluster's id (`mirror.cluster.id`), e.g. `site7`. */
  readonly cluster: string;
  readonly topic: string;
  readonly partition: number;
}

/** One topic of a link, as the edge announces it when it opens the link. */
export interface TopicBinding {
  readonly sourceTopic: string;
  /** The edge topic's random id: a topic deleted and created again is another source. */
  readonly sourceTopicId: string;
  /** The central topic it lands in (topics.ts: `site7.telemetry`). */
  readonly target: string;
  readonly partitions: number;
  /** Topic settings the central creates the target with when it does not exist (cleanup.policy, ...). */
  readonly config: Readonly<Record<string, string>>;
}

export interface LinkHello {
  /** The link's name (`mirror.links[].name`), unique per edge cluster. */
  readonly link: string;
  readonly cluster: string;
  readonly topics: readonly TopicBinding[];
}

/** The central's answer for one announced topic. */
export type TopicWelcome =
  | {
      readonly sourceTopic: string;
      readonly ok: true;
      /** The central's target topic id: a target deleted and created again is a reset central. */
      readonly targetTopicId: string;
      /** Per source partition: the next source offset the central expects; null: it holds none of it. */
      readonly positions: readonly (number | null)[];
    }
  | {
      readonly sourceTopic: string;
      readonly ok: false;
      /** A TributaryError code: the target is bound to another source, its name is taken, ... */
      readonly code: string;
      readonly message: string;
    };

/**
 * One send for one source partition: the data batches the edge read from `fromOffset` on, in
 * offset order. Between fromOffset and the first batch, and between batches, lie only batches
 * without records (control batches, batches compaction emptied), which are not sent. So the
 * central can tell a replay (batches below its position) from a gap (fromOffset above it), and a
 * gap is accepted only when `gaps` declares it.
 */
export interface SourceSend {
  readonly source: SourcePartition;
  /** Where the edge read from: the central's position as the edge last learnt it. */
  readonly fromOffset: number;
  /** RecordBatch v2, concatenated, as the edge stores them (baseOffset is the source offset), stamped (stamp.ts). */
  readonly batches: Uint8Array;
  /** Lost source offsets between the central's position and fromOffset (resume.ts), declared. */
  readonly gaps: readonly Gap[];
}

export interface MirrorAck {
  readonly source: SourcePartition;
  /**
   * The central's position: the end of its newest stamped batch of this source, so the next
   * source offset it expects. Everything below is durable there, or was declared lost.
   */
  readonly position: number;
  /**
   * Bytes the send took on the wire (its compressed payload), when the sink knows it: the uplink
   * cap counts these, so with compression the link runs at the cap on the wire. Absent: the
   * batches' own size is counted.
   */
  readonly wireBytes?: number;
}

/**
 * Where a link's records go. The edge opens the link (announcing its topics; the answer holds
 * the central's positions, which resume.ts turns into a plan), then sends. An ack means durable:
 * for the Tributary sink, committed by the central's Raft group of the target partition.
 *
 * Replays are harmless by contract: a sink drops what lies below its position and acknowledges
 * it, so the edge may resend after any failure without asking what arrived.
 *
 * @example
 *   const welcome = await sink.open({ link: "to-dc", cluster: "site7", topics: [binding] });
 *   const [ack] = await sink.send([{ source, fromOffset: 120, batches, gaps: [] }]);
 */
export interface MirrorSink {
  open(hello: LinkHello): Promise<readonly TopicWelcome[]>;
  /** Sends of distinct source partitions; one ack per send, in the same order. */
  send(sends: readonly SourceSend[]): Promise<readonly MirrorAck[]>;
  /** Committed offsets of mirrored consumer groups, in source offsets; one result per commit, in order. */
  commitGroupOffsets(cluster: string, commits: readonly GroupOffsetCommit[]): Promise<readonly GroupOffsetResult[]>;
  close(): Promise<void>;
}

/** A consumer group's committed offset at the edge, in source offsets. */
export interface GroupOffsetCommit {
  readonly group: string;
  readonly sourceTopic: string;
  readonly partition: number;
  /** The next source offset the group will read. */
  readonly sourceOffset: number;
  readonly metadata: string;
}

export type GroupOffsetResult =
  | { readonly ok: true; readonly commit: GroupOffsetCommit; readonly targetOffset: number }
  /** The source offset lies beyond the central's position: sent again later. */
  | { readonly ok: false; readonly commit: GroupOffsetCommit; readonly pending: true }
  | { readonly ok: false; readonly commit: GroupOffsetCommit; readonly pending: false; readonly code: string; readonly message: string };

/**
 * What mirror-aware retention at the edge asks of the mirror (implemented by the edge's mirror
 * service from its checkpoints; the broker's maintenance consults it before deleting segments).
 */
export interface MirrorRetentionSource {
  /** Offsets below it are at every central mirroring the topic; null: the topic is not mirrored. */
  mirroredBelow(topic: string, partition: number): number | null;
  /** Record ranges about to be deleted unmirrored in the drop ledger; durable (replicated) when it resolves, before any file goes. */
  recordDropped(topic: string, partition: number, ranges: readonly DroppedRange[]): Promise<void>;
}
