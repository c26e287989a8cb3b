/**
 * `ClusterNode`: this peer's part of the cluster. It holds the `RaftHost` (every local group), the
 * `Controller` (the metadata group), the local partition replicas, and the forwarded calls between
 * peers (the broker registers their handlers: produce and fetch forwarded to a leader, raw reads
 * for the edge's mirror (`mirror.read`) to a replica, metadata commands forwarded to the
 * controller's leader, status for `tributary cluster status`).
 *
 * Forwarded bodies are CBOR (plain RFC 8949: byte strings stay bytes). A call that meets an
 * election (NOT_LEADER), or a peer out of reach (PEER_UNAVAILABLE), is retried with a short
 * backoff until the request's deadline, so producers ride through a leader change.
 *
 * @example
 *   const cluster = await ClusterNode.open({ self: 1, peers, transport, fs, clock, random, logger, dataDir }, reconcile);
 *   const replica = await cluster.addReplica(record, 0, log, replicas);
 */
import { Decoder } from "cbor-x/decode";
import { Encoder } from "cbor-x/encode";
import { TributaryError, isTributaryError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { Clock } from "../runtime/clock.ts";
import { joinPath, writeFileAtomic, type FileSystem } from "../runtime/fs.ts";
import type { ConfChange } from "../raft/index.ts";
import { processBlockingRounds } from "../storage/flusher.ts";
import type { PartitionLog } from "../storage/log.ts";
import { Controller, resultError } from "./controller.ts";
import { RaftHost, type GroupLimits, type RaftTiming } from "./host.ts";
import { MetaStore, metaStoreDir } from "./meta-store.ts";
import { holdersOf, type ClusterMetadata, type MetaCommand, type MetaTopic } from "./metadata.ts";
import { replaceReplica } from "./placement.ts";
import { Reassigner } from "./reassign.ts";
import { PartitionReplica } from "./partition-replica.ts";
import type { BatchIndexLimits } from "./batch-index.ts";
import { ReplicaLog } from "./replica-log.ts";
import { META_GROUP, partitionGroupId, type GroupId, type NodeId, type PeerInfo, type Transport } from "./types.ts";

const cborDecoder = new Decoder({ mapsAsObjects: true, useRecords: false });
const cborEncoder = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true });

export function encodeBody(value: unknown): Uint8Array {
  return cborEncoder.encode(value);
}
export function decodeBody<T>(bytes: Uint8Array): T {
  return cborDecoder.decode(bytes) as T;
}

/** Bytes of replica entries kept in memory per partition for followers that lag. */
export const REPLICA_CACHE_BYTES = 8 << 20;
const RETRY_MIN_MS = 25;
const RETRY_MAX_MS = 400;

export interface ClusterOptions {
  readonly self: NodeId;
  readonly peers: readonly PeerInfo[];
  readonly transport: Transport;
  readonly fs: FileSystem;
  readonly clock: Clock;
  readonly random: () => number;
  readonly logger: Logger;
  readonly dataDir: string;
  readonly timing?: RaftTiming;
  readonly limits?: GroupLimits;
  /** How long a forwarded or retried request may take before it fails. */
  readonly requestTimeoutMs?: number;
  /** How long `removePeer` waits for the moves of the peer's replicas (default 10 minutes). */
  readonly moveTimeoutMs?: number;
  /** Size limits of each replica's batch index (batch-index.ts; the simulation makes them small). */
  readonly batchIndex?: BatchIndexLimits;
}

export type CallHandler = (from: NodeId, body: unknown) => Promise<unknown>;

export class ClusterNode {
  readonly self: NodeId;
  readonly host: RaftHost;
  readonly controller: Controller;
  readonly requestTimeoutMs: number;
  private readonly handlers = new Map<string, CallHandler>();
  private readonly replicas = new Map<GroupId, PartitionReplica>();
  private readonly reassigner: Reassigner;
  /** Replicas this peer held and deleted (see `retireReplica`), by group; kept in cluster/replica-tombstones.json. */
  private tombstones = new Map<GroupId, Tombstone>();
  private tombstoneWrites: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly unhookBlocking: () => void;

  private constructor(
    private readonly options: ClusterOptions,
    store: MetaStore,
    onMetadata: (metadata: ClusterMetadata) => Promise<void>,
    bootstrapVoters: readonly NodeId[],
  ) {
    this.self = options.self;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.host = new RaftHost({
      self: options.self,
      transport: options.transport,
      clock: options.clock,
      random: options.random,
      logger: options.logger,
      ...(options.timing ? { timing: options.timing } : {}),
      ...(options.limits ? { limits: options.limits } : {}),
      onCall: (from, method, body) => this.serve(from, method, body),
    });
    // A leader's appends are queued to leave at the end of the turn; a log about to block the
    // event loop on a lone write (storage/flusher.ts) sends them first, so followers write meanwhile.
    this.unhookBlocking = processBlockingRounds.onBeforeBlock(() => this.host.flushNow());
    this.controller = new Controller(
      store,
      async (metadata) => {
        options.transport.setPeers(this.peers);
        await onMetadata(metadata);
      },
      options.logger,
    );
    this.controller.group = this.host.addGroup(META_GROUP, { voters: bootstrapVoters }, store, this.controller);
    this.handle("meta.propose", async (_from, body) => {
      const { command } = body as { command: MetaCommand };
      return this.controller.propose(command);
    });
    this.handle("meta.confchange", async (_from, body) => this.controller.proposeConfChange(body as ConfChange));
    this.reassigner = new Reassigner({
      self: options.self,
      clock: options.clock,
      logger: options.logger,
      metadata: () => this.metadata,
      group: (id) => this.host.group(id),
      complete: (cmd) => this.proposeMeta(cmd),
    });
  }

  /**
   * Open the controller's store, join the metadata group and start ticking. The metadata group's
   * first voters are the peers configured when this peer first started (kept in
   * `cluster/bootstrap.json`); later membership comes from the group's own log, never from a
   * changed `cluster.peers`, so two peers never count a quorum over different voters.
   */
  static async open(options: ClusterOptions, onMetadata: (metadata: ClusterMetadata) => Promise<void>): Promise<ClusterNode> {
    const store = await MetaStore.open(metaStoreDir(options.dataDir), options.fs, options.logger);
    const voters = await bootstrapVotersOf(options);
    const node = new ClusterNode(options, store, onMetadata, voters);
    node.tombstones = await readTombstones(options);
    node.host.start();
    node.reassigner.start();
    return node;
  }

  get metadata(): ClusterMetadata {
    return this.controller.metadata;
  }

  /** The peers: as the metadata records them once it does, else as configured. */
  get peers(): readonly PeerInfo[] {
    const recorded = this.controller.metadata.peers();
    if (recorded.length === 0) return this.options.peers;
    const extra = this.options.peers.filter((p) => !recorded.some((r) => r.id === p.id));
    return [...recorded, ...extra].sort((a, b) => a.id - b.id);
  }

  peer(id: NodeId): PeerInfo | undefined {
    return this.peers.find((p) => p.id === id);
  }

  // ---- membership ----

  /**
   * Add a peer to the cluster without stopping it: its address goes into the metadata (so every
   * peer's transport reaches it and new topics may be placed on it), then it becomes a voter of
   * the metadata group. Start the new peer with the full `cluster.peers` (itself included).
   */
  async addPeer(peer: PeerInfo): Promise<void> {
    await this.proposeMeta({ type: "add-peer", peer });
    await this.confChange({ type: "add-voter", nodeId: peer.id });
  }

  /**
   * Remove a peer, live or dead: each partition it holds is first moved to a peer that holds none
   * of it (the least loaded; see `replaceReplica`), or, with no such peer, shrunk to the rest (a
   * warning: fewer copies), and this waits until those moves complete (`moveTimeoutMs`). Then it
   * leaves the metadata group, then the metadata. Run again after a timeout: moves under way go on.
   */
  async removePeer(id: NodeId): Promise<void> {
    const deadlineMs = this.options.clock.now() + (this.options.moveTimeoutMs ?? 600_000);
    for (;;) {
      const held = this.heldBy(id);
      if (held.length === 0) break;
      for (const { topic, partition } of held) {
        if (topic.targets?.[partition]) continue; // a move under way: wait for it, then look again
        const replicas = replaceReplica(topic.replicas[partition]!, id, this.metadata.peers().map((p) => p.id), this.replicaLoad());
        if (replicas.length < topic.replicas[partition]!.length) {
          this.options.logger.warn("no spare peer: the partition shrinks to fewer replicas", { topic: topic.record.name, partition, replicas: replicas.join(",") });
        }
        await this.reassign(topic.record.name, partition, replicas);
      }
      if (this.closed || this.options.clock.now() > deadlineMs) {
        throw new TributaryError("REQUEST_TIMED_OUT", `peer ${id}'s replicas are still moving (${this.heldBy(id).length} partitions left); they go on moving: run remove-peer again later`);
      }
      await this.sleep(50);
    }
    if (this.controller.group.node.confState().voters.includes(id)) await this.confChange({ type: "remove-voter", nodeId: id });
    await this.proposeMeta({ type: "remove-peer", id });
  }

  /**
   * Start moving a partition to `replicas` (preferred leader first); resolves once the move is
   * recorded, not done: the partition's leader drives it (reassign.ts), `cluster status` shows it.
   */
  async reassign(topic: string, partition: number, replicas: readonly NodeId[]): Promise<void> {
    const t = this.metadata.topic(topic);
    if (!t) throw new TributaryError("TOPIC_NOT_FOUND", `topic ${topic} does not exist`);
    await this.proposeMeta({ type: "reassign-partition", name: topic, topicId: t.record.id, partition, replicas: [...replicas] });
  }

  /** The partitions peer `id` holds or is to hold. */
  private heldBy(id: NodeId): { topic: MetaTopic; partition: number }[] {
    return this.metadata.topics().flatMap((topic) => topic.replicas.flatMap((_, partition) => (holdersOf(topic, partition).includes(id) ? [{ topic, partition }] : [])));
  }

  /** How many partitions each peer holds or is to hold: spares are drawn from the least loaded. */
  private replicaLoad(): Map<NodeId, number> {
    const load = new Map<NodeId, number>();
    for (const t of this.metadata.topics()) for (let p = 0; p < t.replicas.length; p++) for (const id of holdersOf(t, p)) load.set(id, (load.get(id) ?? 0) + 1);
    return load;
  }

  private async confChange(cc: ConfChange): Promise<void> {
    const result = await this.retrying(async () => {
      const g = this.controller.group;
      // A retry after an unknown outcome may find the change made: that is success.
      const voter = g.node.confState().voters.includes(cc.nodeId);
      if (voter === (cc.type === "add-voter")) return { ok: true as const, event: null };
      if (g.isLeader) return this.controller.proposeConfChange(cc);
      if (!g.leader) throw new TributaryError("NOT_LEADER", "the controller has no leader yet");
      return (await this.call(g.leader, "meta.confchange", cc)) as Awaited<ReturnType<Controller["proposeConfChange"]>>;
    }, { unknownOutcome: true });
    const err = resultError(result);
    if (err) throw err;
  }

  // ---- replicas ----

  /** Open the Raft group of a local replica over its (already opened) log. */
  async addReplica(topic: string, topicId: string, partition: number, dir: string, log: PartitionLog, voters: readonly NodeId[]): Promise<PartitionReplica> {
    const id = partitionGroupId(topicId, partition);
    // A replica this peer held before starts from the term and vote it had, and votes only as its old log would have.
    const tomb = this.tombstones.get(id);
    const hardState = tomb ? { hardState: { term: tomb.term, vote: tomb.vote } } : {};
    const store = await ReplicaLog.open(dir, log, { fs: this.options.fs, logger: this.options.logger }, {
      voters,
      cacheBytes: REPLICA_CACHE_BYTES,
      ...hardState,
      ...(this.options.batchIndex ? { indexLimits: this.options.batchIndex } : {}),
    });
    const replica = new PartitionReplica(topic, partition, log, store, this.options.logger);
    const voteFloor = tomb ? { voteFloor: { index: tomb.index, term: tomb.logTerm } } : {};
    replica.group = this.host.addGroup(id, { voters, applied: store.appliedHint, ...voteFloor }, store, replica);
    this.replicas.set(id, replica);
    return replica;
  }

  /**
   * Close a replica whose partition moved off this peer, before its files are deleted: first
   * record (durably) its term, vote and how far its log went. Raft's safety needs a voter never
   * to forget its vote or its log; when the replica comes back here it starts from that term and
   * vote and grants votes only to candidates at least as up to date as the log it had (see
   * RaftConfig.voteFloor), so a stale peer cannot win an election with an emptied log's vote.
   */
  async retireReplica(topicId: string, partition: number): Promise<void> {
    const id = partitionGroupId(topicId, partition);
    const r = this.replicas.get(id);
    if (!r) return;
    const n = r.group.node;
    const last = n.log.lastIndex();
    const mine: Tombstone = { term: n.term, vote: n.vote, index: last, logTerm: n.log.term(last) ?? 0 };
    this.tombstones.set(id, laterTombstone(this.tombstones.get(id), mine));
    await this.writeTombstones();
    this.removeReplica(topicId, partition);
  }

  /**
   * The same for a replica's files left from before (this peer was down when the replica moved
   * away), about to be deleted: the tombstone comes from the stored term, vote and log, and no Raft
   * group is started for it. A group would answer the leader while the files are still there; its
   * acknowledgements could count toward commits that the deletion then takes back.
   */
  async retireLeftover(topicId: string, partition: number, dir: string, log: PartitionLog): Promise<void> {
    const id = partitionGroupId(topicId, partition);
    if (this.replicas.has(id)) throw new Error(`invariant broken: replica ${id} is live; retireReplica it instead`);
    const store = await ReplicaLog.open(dir, log, { fs: this.options.fs, logger: this.options.logger }, { voters: [], cacheBytes: 0 });
    const { hardState } = store.initialState();
    const last = store.lastIndex();
    const mine: Tombstone = { term: hardState.term, vote: hardState.vote, index: last, logTerm: store.term(last) ?? 0 };
    this.tombstones.set(id, laterTombstone(this.tombstones.get(id), mine));
    await this.writeTombstones();
    await store.close();
  }

  /** This peer held a replica of the partition before and retired it (it has a tombstone). */
  hadReplica(topicId: string, partition: number): boolean {
    return this.tombstones.has(partitionGroupId(topicId, partition));
  }

  private writeTombstones(): Promise<void> {
    const run = this.tombstoneWrites.then(() => {
      // Groups of deleted topics need none (their ids are never used again).
      const live = new Set(this.metadata.topics().map((t) => t.record.id));
      for (const id of this.tombstones.keys()) if (!live.has(id.split("/")[0]!)) this.tombstones.delete(id);
      const body = { version: 1, groups: Object.fromEntries([...this.tombstones].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) };
      return writeFileAtomic(this.options.fs, tombstonesPath(this.options), new TextEncoder().encode(`${JSON.stringify(body)}\n`));
    });
    this.tombstoneWrites = run.catch(() => undefined);
    return run;
  }

  removeReplica(topicId: string, partition: number): void {
    const id = partitionGroupId(topicId, partition);
    const r = this.replicas.get(id);
    if (!r) return;
    r.rejectAll(new TributaryError("TOPIC_NOT_FOUND", `${r.topic} was deleted`));
    this.host.removeGroup(id);
    this.replicas.delete(id);
    void r.store.close().catch(() => {});
  }

  // ---- metadata ----

  /**
   * Apply a metadata command through the controller's leader, wherever it is; throws its refusal.
   * A command whose outcome was unknown is proposed again, so callers take "already done"
   * refusals (TOPIC_EXISTS for their own topic id, TOPIC_NOT_FOUND for a delete) as success.
   */
  async proposeMeta(command: MetaCommand): Promise<void> {
    const result = await this.retrying(async () => {
      const g = this.controller.group;
      if (g.isLeader) return this.controller.propose(command);
      if (!g.leader) throw new TributaryError("NOT_LEADER", "the controller has no leader yet");
      return (await this.call(g.leader, "meta.propose", { command })) as Awaited<ReturnType<Controller["propose"]>>;
    }, { unknownOutcome: true });
    const err = resultError(result);
    if (err) throw err;
  }

  // ---- forwarded calls ----

  handle(method: string, fn: CallHandler): void {
    this.handlers.set(method, fn);
  }

  /**
   * Call `method` on peer `to` with a CBOR body; the peer's TributaryError is rethrown here. One
   * attempt waits at most two election timeouts by default: a leader that went silent is replaced
   * by then, so a retry (`retrying`) asks the new one instead of spending the whole request there.
   */
  async call(to: NodeId, method: string, body: unknown, deadlineMs = this.options.clock.now() + this.attemptMs()): Promise<unknown> {
    if (to === this.self) {
      const h = this.handlers.get(method);
      if (!h) throw new Error(`invariant broken: no handler for ${method}`);
      return h(this.self, body);
    }
    const reply = await this.options.transport.call(to, method, encodeBody(body), deadlineMs);
    return decodeBody(reply);
  }

  /**
   * Run `fn` until it succeeds, retrying NOT_LEADER, NOT_COORDINATOR and PEER_UNAVAILABLE (an
   * election, a coordinator replaying offsets, a peer restarting: nothing was done) with backoff
   * until the request timeout. REQUEST_TIMED_OUT (it may have been done) is retried only when
   * `unknownOutcome` says doing it twice is harmless (an idempotent produce, a metadata command);
   * otherwise it goes back to the client, as every other error does.
   */
  async retrying<T>(fn: () => Promise<T>, options: { deadlineMs?: number; unknownOutcome?: boolean } = {}): Promise<T> {
    const deadlineMs = options.deadlineMs ?? this.options.clock.now() + this.requestTimeoutMs;
    let wait = RETRY_MIN_MS;
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        const code = isTributaryError(e) ? e.code : null;
        const again = code === "NOT_LEADER" || code === "PEER_UNAVAILABLE" || code === "NOT_COORDINATOR" || (code === "REQUEST_TIMED_OUT" && options.unknownOutcome === true);
        if (!again || this.closed || this.options.clock.now() + wait > deadlineMs) throw e;
      }
      await this.sleep(wait);
      wait = Math.min(RETRY_MAX_MS, wait * 2);
    }
  }

  private attemptMs(): number {
    const t = this.host.timing;
    return Math.min(this.requestTimeoutMs, 2 * t.electionTicks * t.tickMs);
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.options.clock.setTimer(ms, resolve));
  }

  private async serve(from: NodeId, method: string, body: Uint8Array): Promise<Uint8Array> {
    const h = this.handlers.get(method);
    if (!h) throw new TributaryError("INVALID_REQUEST", `unknown peer method ${method}`);
    // NOT_LEADER, not NOT_READY: the caller's retries (`retrying`) then go on to the next leader.
    if (this.closed) throw new TributaryError("NOT_LEADER", "this peer is shutting down and leads nothing; retry");
    return encodeBody(await h(from, decodeBody(body)));
  }

  // ---- status ----

  /** This peer's view of every local group: role, term, leader, commit, and followers' progress when leading. */
  status(): GroupStatus[] {
    const out: GroupStatus[] = [];
    for (const g of this.host.allGroups()) {
      const n = g.node;
      const voters = n.confState().voters;
      out.push({
        group: g.id,
        role: n.role,
        term: n.term,
        leader: n.lead,
        commit: n.log.committed,
        lastIndex: n.log.lastIndex(),
        voters: [...voters],
        progress: n.role === "leader" ? voters.map((id) => ({ peer: id, match: n.progress(id)?.match ?? 0 })) : [],
      });
    }
    return out;
  }

  /** Hand every group this peer leads to another voter (graceful shutdown), waiting up to `timeoutMs`. */
  async transferLeadership(timeoutMs: number): Promise<void> {
    const deadline = this.options.clock.now() + timeoutMs;
    const led = () => [...this.host.allGroups()].filter((g) => g.isLeader && g.node.confState().voters.length > 1);
    for (const g of led()) {
      const to = g.node.confState().voters.filter((id) => id !== this.self).sort((a, b) => (g.node.progress(b)?.match ?? 0) - (g.node.progress(a)?.match ?? 0))[0];
      if (to) g.poke((n) => n.transferLeadership(to));
    }
    while (led().length > 0 && this.options.clock.now() < deadline) await this.sleep(20);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.reassigner.stop();
    this.unhookBlocking();
    await this.host.close();
    for (const r of this.replicas.values()) r.rejectAll(new TributaryError("NOT_READY", "the broker is shutting down"));
    await Promise.allSettled([...this.replicas.values()].map((r) => r.store.close()));
    await this.options.transport.close();
  }
}

/** What a deleted replica leaves behind: its hard state and its log's last (index, term). */
interface Tombstone {
  term: number;
  vote: NodeId;
  index: number;
  logTerm: number;
}

/**
 * `cluster/replica-tombstones.json`, replaced atomically, UTF-8 JSON:
 *   {"version":1,"groups":{"<topicId>/<partition>":{"term":3,"vote":2,"index":16,"logTerm":3}}}
 */
function tombstonesPath(options: ClusterOptions): string {
  return joinPath(options.dataDir, "cluster", "replica-tombstones.json");
}

async function readTombstones(options: ClusterOptions): Promise<Map<GroupId, Tombstone>> {
  const file = tombstonesPath(options);
  const bytes = await options.fs.readFile(file);
  if (!bytes) return new Map();
  const parsed = JSON.parse(new TextDecoder().decode(bytes)) as { version?: number; groups?: Record<string, Tombstone> };
  const ok = (t: Tombstone) => [t.term, t.vote, t.index, t.logTerm].every((n) => Number.isSafeInteger(n) && n >= 0);
  if (parsed.version !== 1 || typeof parsed.groups !== "object" || parsed.groups === null || !Object.values(parsed.groups).every(ok)) {
    throw new TributaryError("CORRUPT_RECORD", `${file} is damaged: restore it (it keeps moved replicas' votes)`);
  }
  return new Map(Object.entries(parsed.groups));
}

/** The later of two tombstones of one group: the higher term (with its vote), the more up-to-date log. */
function laterTombstone(a: Tombstone | undefined, b: Tombstone): Tombstone {
  if (!a) return b;
  const hard = b.term > a.term || (b.term === a.term && a.vote === 0) ? { term: b.term, vote: b.vote } : { term: a.term, vote: a.vote };
  const log = b.logTerm > a.logTerm || (b.logTerm === a.logTerm && b.index >= a.index) ? { index: b.index, logTerm: b.logTerm } : { index: a.index, logTerm: a.logTerm };
  return { ...hard, ...log };
}

/** The metadata group's first voters: written at a peer's first start, read ever after. */
async function bootstrapVotersOf(options: ClusterOptions): Promise<NodeId[]> {
  const file = joinPath(options.dataDir, "cluster", "bootstrap.json");
  const bytes = await options.fs.readFile(file);
  if (bytes) {
    const parsed = JSON.parse(new TextDecoder().decode(bytes)) as { version?: number; voters?: unknown };
    if (parsed.version !== 1 || !Array.isArray(parsed.voters) || !parsed.voters.every((v) => Number.isSafeInteger(v) && v > 0)) {
      throw new TributaryError("CORRUPT_RECORD", `${file} is damaged: restore it (it names the cluster's first voters)`);
    }
    return parsed.voters as NodeId[];
  }
  const voters = options.peers.map((p) => p.id);
  await options.fs.mkdirp(joinPath(options.dataDir, "cluster"));
  await writeFileAtomic(options.fs, file, new TextEncoder().encode(`${JSON.stringify({ version: 1, voters })}\n`));
  return voters;
}

export interface GroupStatus {
  group: GroupId;
  role: string;
  term: number;
  leader: NodeId;
  commit: number;
  lastIndex: number;
  voters: NodeId[];
  progress: { peer: NodeId; match: number }[];
}
