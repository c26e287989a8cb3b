/**
 * The central's receiving side of mirroring (index.ts is the design): binding a link's topics to
 * their targets, admitting sends into the target partitions exactly once, answering positions,
 * and translating mirrored consumer-group offsets. Owned by the Broker, which reaches it through
 * thin methods (`mirrorOpen`, `mirrorAppend`, `mirrorPositions`, `mirrorCommitGroupOffsets`) and
 * gives it the narrow `CentralBroker` view below.
 *
 * **Binding.** A target's topic config holds `mirror.source` = `cluster/topic/topicId`, set when
 * the target is created by an open and never by a create request. One target per source topic
 * (a send names only the source), one source per target; a target with the name of an unbound
 * topic is refused (TOPIC_EXISTS), one bound to another source too (INVALID_CONFIG), in that
 * topic's welcome. Targets are read-only to producers (`checkNotMirrorTarget`).
 *
 * **Admission** runs where the target partition is led (a single node: here). Per partition the
 * leader keeps a `LeaderState`: the position including admitted writes not yet committed (what
 * the next send is checked against) and `last`, which resolves with the position and the newest
 * stamped batch once the last admitted write is committed (what acks, replays and positions
 * answer). The state is rebuilt from the log (central-log.ts) on first use, and again after a
 * leadership change or a failed append; a Raft leader rebuilds only once its own term's first
 * entry is applied and its whole log is committed, so the log then is the truth and a position
 * it answers can never vanish. From `admitSend` to the last append enqueued there is no await,
 * so concurrent sends of one source are admitted in log order. Batches are proposed one by one;
 * one refused at once (a full queue) stops the rest of that send, and the position stops before
 * it, so no batch is ever written after a hole.
 *
 * **Cluster.** Any peer takes a call; it is forwarded to the partition's leader as produce is
 * (peer methods `mirror.append`, `mirror.position`, `mirror.translate`; the payload travels still
 * compressed) and retried through elections until the request timeout. Retrying is safe even
 * when the outcome was unknown: a send is a replay the second time. The sends one peer takes for
 * a partition go on one at a time (`sendChains`), so forwarding and retries keep their order: a
 * continuation overtaking its predecessor into a target that holds nothing would otherwise be
 * taken as a start. (On a single node, sends are admitted in arrival order and pipelined.)
 *
 * **Retention floor.** `retentionFloor` gives the central offset of the newest committed stamped
 * batch; the broker's maintenance passes it to retention and compaction, which then leave the
 * segment holding it, and everything after, alone. Each replica computes it from its own log
 * (StampedTail), so followers keep it too.
 *
 * **Group offsets** (central-groups.ts): a source offset is translated on the leader
 * (central-log.ts `centralOffsetFor`); one beyond the position is pending. The commit goes
 * through the broker's group service under the same group id, with the source in its metadata.
 *
 * Limits (central-checks.ts): at most 1000 topics per open, 64 declared gaps per send, 1000 group
 * commits per call; a send inflates to at most grpc.max.message.bytes x 8, and inflated sends
 * held at once (until committed) to 256 MiB (more: OVERLOADED).
 *
 * @example
 *   const welcome = await broker.mirrorOpen({ link: "to-dc", cluster: "site7", topics: [binding] });
 *   const position = await broker.mirrorAppend({ source, fromOffset: 0, payload, compression: "gzip", gaps: [] });
 */
import { TributaryError, isTributaryError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { Metrics } from "../metrics.ts";
import type { Partition } from "../partition.ts";
import type { ClusterNode } from "../cluster/cluster.ts";
import { notLeader } from "../cluster/partition-replica.ts";
import type { NodeId } from "../cluster/types.ts";
import type { GroupService } from "../groups/service.ts";
import type { AppendResult } from "../storage/log.ts";
import type { BatchHeader } from "../storage/record-batch.ts";
import { MIRROR_SOURCE_KEY, type TopicRecord } from "../topic-metadata.ts";
import { MAX_TOPICS_PER_OPEN, checkBinding, checkHello, checkPartition, checkSend, invalid } from "./central-checks.ts";
import { commitMirroredOffsets } from "./central-groups.ts";
import { INFLATE_FACTOR, StampedTail, centralOffsetFor, newestStampedBatch, unpackSend, type SendCompression, type StampedBatch } from "./central-log.ts";
import { admitSend } from "./stamp.ts";
import { validateClusterId } from "./topics.ts";
import type { Gap, GroupOffsetCommit, GroupOffsetResult, LinkHello, SourcePartition, TopicBinding, TopicWelcome } from "./types.ts";

/** Inflated send bytes held at once, from inflation until their appends settle. */
export const MAX_INFLATED_INFLIGHT_BYTES = 256 * 1024 * 1024;

/** One send as the central receives it: the payload as it came (gzip or not). */
export interface CentralSend {
  readonly source: SourcePartition;
  readonly fromOffset: number;
  readonly payload: Uint8Array;
  readonly compression: SendCompression;
  readonly gaps: readonly Gap[];
}

export interface SourcePositions {
  readonly sourceTopic: string;
  readonly target: string;
  readonly targetTopicId: string;
  /** Per partition: the next source offset expected; null: nothing of it here. */
  readonly positions: readonly (number | null)[];
}

/** A topic as the central sees it (the broker's own topic objects fit). */
export interface CentralTopic {
  readonly record: TopicRecord;
  readonly settings: { readonly maxMessageBytes: number };
  /** By partition; null where this peer holds no replica. */
  readonly partitions: readonly (Partition | null)[];
}

/** What the central needs of its broker. */
export interface CentralBroker {
  /** `mirror.central`: off, every mirror call is refused. */
  readonly enabled: boolean;
  /** grpc.max.message.bytes: a send's payload is at most this, and inflates to INFLATE_FACTOR times it. */
  readonly maxSendBytes: number;
  readonly cluster: ClusterNode | null;
  readonly groups: GroupService;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** False while the broker opens or closes. */
  isOpen(): boolean;
  topics(): Iterable<CentralTopic>;
  topic(name: string): CentralTopic | undefined;
  /** Create a target topic bound to `source` (TOPIC_EXISTS when another create won). */
  createTarget(name: string, partitions: number, config: Record<string, string>, source: string): Promise<void>;
  /** The peer leading a partition, as far as this peer knows (0: unknown). */
  leaderOf(topic: CentralTopic, partition: number): NodeId;
}

interface Committed {
  readonly position: number | null;
  readonly newest: StampedBatch | null;
}

interface LeaderState {
  /** The Raft term it was built in (0 on a single node). */
  readonly term: number;
  /** Including admitted writes not committed yet: what the next send is admitted against. */
  position: number | null;
  /** Resolves once the last admitted write is committed. */
  last: Promise<Committed>;
}

type ServedMethod = "mirror.append" | "mirror.position" | "mirror.translate";
type WireSend = Pick<CentralSend, "fromOffset" | "payload" | "compression" | "gaps">;

/** Refuse a produce to a mirror target: only its link writes there. */
export function checkNotMirrorTarget(record: TopicRecord): void {
  const source = record.config[MIRROR_SOURCE_KEY];
  if (source === undefined) return;
  throw new TributaryError("INVALID_REQUEST", `topic ${record.name} is the mirror target of ${source.split("/").slice(0, 2).join("/")}: only its mirror link writes to it (an admin may delete it)`);
}

export class MirrorCentral {
  private readonly states = new WeakMap<Partition, LeaderState>();
  private readonly building = new WeakMap<Partition, Promise<LeaderState>>();
  private readonly tails = new WeakMap<Partition, StampedTail>();
  /** `cluster/topic/` -> target name, checked on every use. */
  private readonly targetNames = new Map<string, string>();
  private inflatedBytes = 0;
  /** Cluster: the last send taken here per target partition (`topicId/partition`), so the next one follows it. */
  private readonly sendChains = new Map<string, Promise<void>>();
  private readonly m;
  private readonly served: Record<ServedMethod, (p: Partition, t: CentralTopic, body: unknown) => Promise<unknown>> = {
    "mirror.append": (p, t, body) => this.appendHere(p, t, wireSend(body)),
    "mirror.position": (p) => this.positionHere(p),
    "mirror.translate": (p, _t, body) => this.translateHere(p, (body as { sourceOffset: number }).sourceOffset),
  };

  constructor(private readonly broker: CentralBroker) {
    const mt = broker.metrics;
    this.m = {
      written: mt.counter("tributary_mirror_central_batches_written_total", "Mirrored batches appended to targets", ["topic"]),
      bytes: mt.counter("tributary_mirror_central_bytes_written_total", "Mirrored batch bytes appended to targets", ["topic"]),
      replayed: mt.counter("tributary_mirror_central_batches_replayed_total", "Mirrored batches dropped as already written (replays)", ["topic"]),
    };
  }

  // ---- open ---------------------------------------------------------------------------------

  /** Bind each of the link's topics to its target (creating it), with the positions; refusals per topic. */
  async open(hello: LinkHello): Promise<TopicWelcome[]> {
    this.checkEnabled();
    checkHello(hello);
    const out: TopicWelcome[] = [];
    for (const b of hello.topics) out.push(await this.welcome(hello.cluster, b));
    return out;
  }

  private async welcome(cluster: string, b: TopicBinding): Promise<TopicWelcome> {
    const sourceTopic = typeof b?.sourceTopic === "string" ? b.sourceTopic : "";
    try {
      const { topic, created } = await this.bind(cluster, b);
      const n = topic.record.partitions;
      const positions = created ? new Array<null>(n).fill(null) : await Promise.all(Array.from({ length: n }, (_, i) => this.onLeader<number | null>(topic, i, "mirror.position", {})));
      return { sourceTopic, ok: true, targetTopicId: topic.record.id, positions };
    } catch (e) {
      // A refusal belongs to this topic; a passing trouble (an election) fails the open, which the edge retries.
      if (!isTributaryError(e) || e.retriable) throw e;
      return { sourceTopic, ok: false, code: e.code, message: e.message };
    }
  }

  private async bind(cluster: string, b: TopicBinding): Promise<{ topic: CentralTopic; created: boolean }> {
    checkBinding(b);
    const source = `${cluster}/${b.sourceTopic}/${b.sourceTopicId}`;
    const elsewhere = this.boundTo(`${cluster}/${b.sourceTopic}/`).find((t) => t.record.name !== b.target);
    if (elsewhere) throw new TributaryError("INVALID_CONFIG", `${cluster}/${b.sourceTopic} is already mirrored into ${elsewhere.record.name}, not ${b.target}: one target per source topic`);
    let created = false;
    if (!this.broker.topic(b.target)) {
      const { [MIRROR_SOURCE_KEY]: _ignored, ...config } = b.config ?? {};
      try {
        await this.broker.createTarget(b.target, b.partitions, config, source);
        created = true;
        this.broker.logger.info("mirror target created", { target: b.target, source });
      } catch (e) {
        if (!(isTributaryError(e) && e.code === "TOPIC_EXISTS")) throw e; // another open made it: check it like one that existed
      }
    }
    const topic = this.broker.topic(b.target);
    if (!topic) throw new TributaryError("NOT_READY", `mirror target ${b.target} was deleted while it was being bound; open again`);
    const bound = topic.record.config[MIRROR_SOURCE_KEY];
    if (bound === undefined) throw new TributaryError("TOPIC_EXISTS", `topic ${b.target} exists and is not a mirror target: choose another target (targetPrefix) or delete it`);
    if (bound !== source) throw new TributaryError("INVALID_CONFIG", `topic ${b.target} mirrors ${bound}, not ${source}: reset the link (delete the target) to mirror another source into it`);
    if (topic.record.partitions !== b.partitions) throw new TributaryError("INVALID_PARTITIONS", `mirror target ${b.target} has ${topic.record.partitions} partitions, the source ${b.partitions}`);
    return { topic, created };
  }

  // ---- positions ----------------------------------------------------------------------------

  /** The positions of every target bound to a source topic of `cluster` (or of those named). */
  async positions(cluster: string, sourceTopics: readonly string[] = []): Promise<SourcePositions[]> {
    this.checkEnabled();
    validateClusterId(cluster);
    if (!Array.isArray(sourceTopics) || sourceTopics.length > MAX_TOPICS_PER_OPEN) throw invalid(`at most ${MAX_TOPICS_PER_OPEN} source topics per call`);
    const wanted = new Set(sourceTopics);
    const out: SourcePositions[] = [];
    for (const t of this.boundTo(`${cluster}/`)) {
      const sourceTopic = t.record.config[MIRROR_SOURCE_KEY]!.split("/")[1]!;
      if (wanted.size > 0 && !wanted.has(sourceTopic)) continue;
      const positions = await Promise.all(Array.from({ length: t.record.partitions }, (_, i) => this.onLeader<number | null>(t, i, "mirror.position", {})));
      out.push({ sourceTopic, target: t.record.name, targetTopicId: t.record.id, positions });
    }
    return out.sort((a, b) => a.sourceTopic.localeCompare(b.sourceTopic));
  }

  /** The target a source topic of `cluster` is bound to, or undefined. */
  targetOf(cluster: string, sourceTopic: string): CentralTopic | undefined {
    const prefix = `${cluster}/${sourceTopic}/`;
    const cached = this.targetNames.get(prefix);
    const hit = cached === undefined ? undefined : this.broker.topic(cached);
    if (hit?.record.config[MIRROR_SOURCE_KEY]?.startsWith(prefix)) return hit;
    this.targetNames.delete(prefix);
    const found = this.boundTo(prefix);
    if (found.length > 1) throw new TributaryError("INVALID_CONFIG", `${cluster}/${sourceTopic} is bound to several targets (${found.map((t) => t.record.name).join(", ")}): delete all but one`);
    if (found[0]) this.targetNames.set(prefix, found[0].record.name);
    return found[0];
  }

  /** Targets whose binding starts with `prefix`. */
  private boundTo(prefix: string): CentralTopic[] {
    return [...this.broker.topics()].filter((t) => t.record.config[MIRROR_SOURCE_KEY]?.startsWith(prefix));
  }

  // ---- append -------------------------------------------------------------------------------

  /** Admit one send into its target partition; resolves with the position once what it wrote is committed. */
  async append(send: CentralSend): Promise<number | null> {
    this.checkEnabled();
    checkSend(send);
    const t = this.targetOf(send.source.cluster, send.source.topic);
    if (!t) throw new TributaryError("TOPIC_NOT_FOUND", `${send.source.cluster}/${send.source.topic} is not mirrored here: open the link first`);
    checkPartition(t, send.source.partition);
    const wire: WireSend = { fromOffset: send.fromOffset, payload: send.payload, compression: send.compression, gaps: send.gaps };
    if (!this.broker.cluster) return this.onLeader<number | null>(t, send.source.partition, "mirror.append", wire);
    // Forwarded calls and their retries can overtake each other on the way to the leader. While
    // the central holds nothing of a source, a continuation arriving first would look like a
    // start, and its predecessor then like a replay: a silent gap. So one send per partition at
    // a time goes from here (the WAN round trip stays pipelined; the commit wait does not).
    const key = `${t.record.id}/${send.source.partition}`;
    const run = (this.sendChains.get(key) ?? Promise.resolve()).then(() => this.onLeader<number | null>(t, send.source.partition, "mirror.append", wire));
    const settled = run.then(
      () => {},
      () => {},
    );
    this.sendChains.set(key, settled);
    void settled.then(() => {
      if (this.sendChains.get(key) === settled) this.sendChains.delete(key);
    });
    return run;
  }

  private async appendHere(p: Partition, t: CentralTopic, send: WireSend): Promise<number | null> {
    const { batches, headers, bytes } = unpackSend(send.payload, send.compression, this.broker.maxSendBytes * INFLATE_FACTOR, t.settings.maxMessageBytes);
    if (this.inflatedBytes > 0 && this.inflatedBytes + bytes > MAX_INFLATED_INFLIGHT_BYTES) {
      throw new TributaryError("OVERLOADED", `the central holds ${this.inflatedBytes} bytes of mirror sends not yet committed; retry later`);
    }
    this.inflatedBytes += bytes;
    try {
      const s = await this.leaderState(p);
      return await this.admit(p, t, s, send, batches, headers);
    } finally {
      this.inflatedBytes -= bytes;
    }
  }

  /** From admitSend to the last append enqueued: no await (concurrent sends are admitted in log order). */
  private admit(p: Partition, t: CentralTopic, s: LeaderState, send: WireSend, batches: Uint8Array[], headers: BatchHeader[]): Promise<number | null> {
    this.checkCurrent(p, s);
    const a = admitSend(s.position, send, headers);
    if (a.skipped > 0) this.m.replayed.inc({ topic: t.record.name }, a.skipped);
    const appends: Promise<AppendResult>[] = [];
    let refused: Promise<unknown> | null = null;
    let last = -1;
    for (const i of a.write) {
      const r = enqueue(p, t, batches[i]!);
      if (!r.accepted) {
        refused = r.done;
        break;
      }
      appends.push(r.done);
      last = i;
    }
    if (last >= 0) this.written(p, t, s, headers[last]!, appends, a.write.slice(0, appends.length).reduce((n, i) => n + batches[i]!.length, 0));
    if (refused) {
      return refused.then(() => {
        throw new Error("invariant broken: an append refused before it had an offset resolved");
      });
    }
    return s.last.then((c) => c.position);
  }

  /** The state after enqueuing `appends`, the last of them `lastHeader` (as sent: source offsets). */
  private written(p: Partition, t: CentralTopic, s: LeaderState, lastHeader: BatchHeader, appends: Promise<AppendResult>[], bytes: number): void {
    const position = lastHeader.baseOffset + lastHeader.lastOffsetDelta + 1;
    s.position = position;
    const committed = Promise.all(appends).then((results): Committed => {
      const r = results[results.length - 1]!;
      this.m.written.inc({ topic: t.record.name }, results.length);
      this.m.bytes.inc({ topic: t.record.name }, bytes);
      return { position, newest: { base: r.baseOffset, end: r.lastOffset + 1, from: lastHeader.baseOffset, to: position } };
    });
    s.last = committed;
    // Not written (or not known to be): rebuild from the log before admitting anything more.
    committed.catch(() => {
      if (this.states.get(p) === s) this.states.delete(p);
    });
  }

  private async positionHere(p: Partition): Promise<number | null> {
    const s = await this.leaderState(p);
    return (await s.last).position;
  }

  // ---- leader state -------------------------------------------------------------------------

  private async leaderState(p: Partition): Promise<LeaderState> {
    const term = this.leadingTerm(p);
    const have = this.states.get(p);
    if (have && have.term === term) return have;
    let build = this.building.get(p);
    if (!build) {
      this.checkSettled(p);
      const started = (async (): Promise<LeaderState> => {
        const newest = await newestStampedBatch(p.log);
        const position = newest?.to ?? null;
        return { term, position, last: Promise.resolve({ position, newest }) };
      })();
      build = started;
      this.building.set(p, started);
      const clear = () => {
        if (this.building.get(p) === started) this.building.delete(p);
      };
      started.then(clear, clear);
    }
    const built = await build;
    if (this.leadingTerm(p) !== built.term) throw notLeader(p.topic, p.index, p.replica?.leader ?? 0);
    const current = this.states.get(p);
    if (current && current.term === built.term) return current;
    this.states.set(p, built);
    return built;
  }

  /** The term this peer leads the partition in, once it may answer (0 on a single node); else NOT_LEADER. */
  private leadingTerm(p: Partition): number {
    const r = p.replica;
    if (!r) return 0;
    if (!r.isLeader) throw notLeader(p.topic, p.index, r.leader);
    const node = r.group.node;
    // Its own term's first entry applied: every entry before it is committed here for good.
    if (node.log.term(node.log.applied) !== node.term) throw new TributaryError("NOT_LEADER", `the new leader of ${p.topic}/${p.index} has not committed an entry of its term yet; retry`);
    return node.term;
  }

  /** A Raft leader rebuilds only from a log whose every entry is committed and applied. */
  private checkSettled(p: Partition): void {
    const node = p.replica?.group.node;
    if (node && node.log.applied !== node.log.lastIndex()) throw new TributaryError("NOT_LEADER", `the leader of ${p.topic}/${p.index} is still committing its log; retry`);
  }

  private checkCurrent(p: Partition, s: LeaderState): void {
    if (this.leadingTerm(p) !== s.term || this.states.get(p) !== s) throw notLeader(p.topic, p.index, p.replica?.leader ?? 0);
  }

  /** The replica's leader changed: what this peer kept of the partition's position is stale. */
  leaderChanged(p: Partition): void {
    this.states.delete(p);
    this.building.delete(p);
  }

  /** The central offset retention and compaction must keep (the newest stamped batch's segment on); null: no floor. */
  async retentionFloor(t: CentralTopic, p: Partition): Promise<number | null> {
    if (t.record.config[MIRROR_SOURCE_KEY] === undefined) return null;
    let tail = this.tails.get(p);
    if (!tail) {
      tail = new StampedTail(p.log);
      this.tails.set(p, tail);
    }
    return (await tail.refresh())?.base ?? null;
  }

  // ---- group offsets ------------------------------------------------------------------------

  /** Commit mirrored group offsets, translated to central offsets; one result per commit, in order. */
  commitGroupOffsets(cluster: string, commits: readonly GroupOffsetCommit[]): Promise<GroupOffsetResult[]> {
    this.checkEnabled();
    return commitMirroredOffsets(
      {
        targetOf: (c, topic) => this.targetOf(c, topic),
        translate: (t, partition, sourceOffset) => this.onLeader<number | null>(t, partition, "mirror.translate", { sourceOffset }),
        commit: (groupId, offsets) => this.broker.groups.commitOffsets({ groupId, memberId: "", generationId: -1, offsets }),
      },
      cluster,
      commits,
    );
  }

  /** The central offset for a source offset (committed data only); null: beyond the position, pending. */
  private async translateHere(p: Partition, sourceOffset: number): Promise<number | null> {
    const c = await (await this.leaderState(p)).last;
    if (c.position === null || c.newest === null || sourceOffset > c.position) return null;
    return centralOffsetFor(p.log, c.newest, sourceOffset);
  }

  // ---- routing ------------------------------------------------------------------------------

  /** Run a served method where the partition is led: here, or forwarded; elections are waited out. */
  private onLeader<T>(t: CentralTopic, index: number, method: ServedMethod, body: object): Promise<T> {
    const cluster = this.broker.cluster;
    if (!cluster) return this.served[method](t.partitions[index]!, t, body) as Promise<T>;
    const { name, id } = t.record;
    // A send is a replay the second time, positions and translations read: retrying is always safe.
    return cluster.retrying(async () => {
      const cur = this.broker.topic(name);
      if (!cur || cur.record.id !== id) throw new TributaryError("TOPIC_NOT_FOUND", `mirror target ${name} was deleted`);
      const p = cur.partitions[index];
      if (p?.replica?.isLeader) return (await this.served[method](p, cur, body)) as T;
      const leader = this.broker.leaderOf(cur, index);
      if (!leader || leader === cluster.self) throw notLeader(name, index, 0);
      return (await cluster.call(leader, method, { ...body, topic: name, topicId: id, partition: index })) as T;
    }, { unknownOutcome: true });
  }

  /** The peer methods other peers forward here (cluster mode). */
  serve(cluster: ClusterNode): void {
    for (const method of Object.keys(this.served) as ServedMethod[]) {
      cluster.handle(method, async (_from, body) => {
        const b = body as { topic: string; topicId: string; partition: number; hops?: number };
        if (!this.broker.isOpen()) throw notLeader(b.topic, b.partition, 0);
        const t = this.broker.topic(b.topic);
        if (!t || t.record.id !== b.topicId) throw new TributaryError("TOPIC_NOT_FOUND", `mirror target ${b.topic} does not exist here`);
        const p = t.partitions[b.partition];
        if (!p?.replica?.isLeader) {
          // As produce: a replica that knows the leader passes it on once, never twice.
          const leader = p?.replica?.leader ?? 0;
          if (leader && leader !== cluster.self && !b.hops) return cluster.call(leader, method, { ...b, hops: 1 });
          throw notLeader(b.topic, b.partition, leader);
        }
        return this.served[method](p, t, body);
      });
    }
  }

  private checkEnabled(): void {
    if (!this.broker.enabled) throw new TributaryError("INVALID_REQUEST", "this broker is not a mirror central: start it with mirror.central=true");
    if (!this.broker.isOpen()) throw new TributaryError("NOT_READY", "the broker is not open");
  }
}

/** Propose one batch; `accepted` false when it was refused before it got a place in the log. */
function enqueue(p: Partition, t: CentralTopic, batch: Uint8Array): { accepted: boolean; done: Promise<AppendResult> } {
  if (p.replica) {
    const log = p.replica.group.node.log;
    const before = log.lastIndex();
    const done = p.replica.append(batch, -1, t.settings.maxMessageBytes);
    return { accepted: log.lastIndex() !== before, done };
  }
  const before = p.log.logEndOffset;
  const done = p.log.append(batch);
  return { accepted: p.log.logEndOffset !== before, done };
}

function wireSend(body: unknown): WireSend {
  const b = body as WireSend;
  const payload = b.payload instanceof Uint8Array ? new Uint8Array(b.payload.buffer, b.payload.byteOffset, b.payload.byteLength) : new Uint8Array(0);
  return { fromOffset: b.fromOffset, payload, compression: b.compression, gaps: b.gaps ?? [] };
}
