/**
 * The controller's state machine (pure, deterministic): the cluster's topics with their replica
 * placement, and the peers with their addresses. Every peer applies the same committed commands
 * in the same order and so holds the same state; nothing here reads a clock or randomness (the
 * topic id and creation time come inside the command, chosen once by the proposer).
 *
 * ## Commands (the data of a Normal Raft entry in the metadata group)
 *
 * JSON in UTF-8, one object with a `type` and a format version `v` (1):
 *
 *   {"v":1,"type":"create-topic","record":{name,id,partitions,config,createdAtMs},"replicationFactor":3}
 *   {"v":1,"type":"delete-topic","name":"telemetry"}
 *   {"v":1,"type":"add-peer","peer":{"id":4,"address":"10.0.0.4:9093"}}   (adds, or changes the address)
 *   {"v":1,"type":"remove-peer","id":4}
 *   {"v":1,"type":"reassign-partition","name":"telemetry","topicId":"a1b2","partition":0,"replicas":[1,2,4]}
 *   {"v":1,"type":"complete-reassignment","name":"telemetry","topicId":"a1b2","partition":0,"replicas":[1,2,4]}
 *
 * A reassignment is two commands: `reassign-partition` records the target replicas of a partition
 * (a move under way; one at a time per partition), and the partition's leader, once its Raft group's
 * voters are the target (see reassign.ts), proposes `complete-reassignment`, which makes the target
 * the partition's replicas. Between the two, every peer in replicas or target holds a local replica.
 *
 * Placement is computed when a create-topic is APPLIED, from the peers and the round-robin cursor
 * in the state, so every peer computes the same replicas. A command this version does not know
 * (a newer peer proposed it) is refused at apply and changes nothing: upgrade every peer before
 * using new commands. Membership of the metadata group itself is a Raft conf change; add-peer and
 * remove-peer keep the addresses the transport dials and the set placement draws from.
 *
 * ## Snapshot
 *
 * JSON in UTF-8, keys in a fixed order and topics sorted by name, so equal states give equal bytes:
 *
 *   {"v":1,"appliedIndex":42,"nextPlacement":7,"peers":[{id,address}...],
 *    "topics":[{"record":{...},"replicas":[[1,2,3],...],"targets":[[1,2,4],null,...]}...]}
 *
 * `targets` is present only while some partition of the topic moves (null for those that do not).
 *
 * @example
 *   const md = new ClusterMetadata();
 *   md.apply(1, { type: "add-peer", peer: { id: 1, address: "a:9093" } });
 *   const r = md.apply(2, { type: "create-topic", record, replicationFactor: 1 });
 *   if (r.ok && r.event?.type === "topic-created") openReplicas(r.event.replicas);
 */
import { TributaryError, type ErrorCode } from "../errors.ts";
import { EntryType, type Entry } from "../raft/index.ts";
import { MAX_PARTITIONS, collisionKey, validateTopicName, type TopicRecord } from "../topic-metadata.ts";
import { assignReplicas } from "./placement.ts";
import type { NodeId, PeerInfo } from "./types.ts";

const FORMAT_VERSION = 1;
/** Bound on the peers one cluster lists: placement and heartbeats are per peer. */
export const MAX_PEERS = 64;
/** Bound on the bytes of one peer address (host:port). */
const MAX_ADDRESS_BYTES = 255;
/** Topic ids name directories (`<name>~<id>`) and Raft groups (`<id>/<partition>`): no separators. */
const TOPIC_ID = /^[0-9a-zA-Z]{1,64}$/;

export type MetaCommand =
  | { readonly type: "create-topic"; readonly record: TopicRecord; readonly replicationFactor: number }
  | { readonly type: "delete-topic"; readonly name: string }
  | { readonly type: "add-peer"; readonly peer: PeerInfo }
  | { readonly type: "remove-peer"; readonly id: NodeId }
  | ReassignCommand;

/** Start moving a partition to `replicas` (reassign-partition), or record that the move is done (complete-reassignment). */
export interface ReassignCommand {
  readonly type: "reassign-partition" | "complete-reassignment";
  readonly name: string;
  readonly topicId: string;
  readonly partition: number;
  readonly replicas: readonly NodeId[];
}

/** A topic as the controller holds it: the record and, per partition, its replicas (preferred leader first). */
export interface MetaTopic {
  readonly record: TopicRecord;
  readonly replicas: readonly (readonly NodeId[])[];
  /** Per partition, the replicas a move under way goes to (null: no move); absent when no partition moves. */
  readonly targets?: readonly (readonly NodeId[] | null)[];
}

/** The peers that hold (or are to hold) a local replica of a partition: its replicas and any move's target. */
export function holdersOf(topic: MetaTopic, partition: number): NodeId[] {
  const target = topic.targets?.[partition] ?? [];
  return [...new Set([...(topic.replicas[partition] ?? []), ...target])];
}

/** What an applied command changed, so the broker can open or close its local replicas. */
export type MetaEvent =
  | { readonly type: "topic-created"; readonly topic: MetaTopic }
  | { readonly type: "topic-deleted"; readonly topic: MetaTopic }
  | { readonly type: "peers-changed"; readonly peers: readonly PeerInfo[] }
  | { readonly type: "replicas-changed"; readonly topic: MetaTopic; readonly partition: number };

export interface ApplyError {
  readonly code: ErrorCode;
  readonly message: string;
}

/** `event: null`: nothing changed because the index was applied before (a replay after restart). */
export type ApplyResult = { readonly ok: true; readonly event: MetaEvent | null } | { readonly ok: false; readonly error: ApplyError };

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

export function encodeCommand(cmd: MetaCommand): Uint8Array {
  return enc.encode(JSON.stringify({ v: FORMAT_VERSION, ...cmd }));
}

/** The command in `bytes`; INVALID_REQUEST when they are not one this version knows. */
export function decodeCommand(bytes: Uint8Array): MetaCommand {
  const o = parseObject(bytes, "metadata command");
  if (o.v !== FORMAT_VERSION) throw invalid(`metadata command has format version ${String(o.v)}, this peer knows ${FORMAT_VERSION}`);
  switch (o.type) {
    case "create-topic":
      return { type: o.type, record: topicRecordOf(o.record), replicationFactor: intOf(o.replicationFactor, "replicationFactor") };
    case "delete-topic":
      return { type: o.type, name: stringOf(o.name, "name") };
    case "add-peer":
      return { type: o.type, peer: peerOf(o.peer) };
    case "remove-peer":
      return { type: o.type, id: intOf(o.id, "id") };
    case "reassign-partition":
    case "complete-reassignment":
      return { type: o.type, name: stringOf(o.name, "name"), topicId: stringOf(o.topicId, "topicId"), partition: intOf(o.partition, "partition"), replicas: idsOf(o.replicas, "replicas") };
    default:
      throw invalid(`unknown metadata command type ${JSON.stringify(o.type)}`);
  }
}

export class ClusterMetadata {
  private readonly topicsByName = new Map<string, MetaTopic>();
  private peerList: PeerInfo[] = [];
  private applied = 0;
  /** The round-robin cursor: the first leader of the next topic is peers[nextPlacement mod n]. */
  private cursor = 0;

  get appliedIndex(): number {
    return this.applied;
  }

  get nextPlacement(): number {
    return this.cursor;
  }

  /** Topics sorted by name. */
  topics(): MetaTopic[] {
    return [...this.topicsByName.values()].sort((a, b) => compare(a.record.name, b.record.name));
  }

  topic(name: string): MetaTopic | undefined {
    return this.topicsByName.get(name);
  }

  /** The replicas of one partition, preferred leader first; undefined for an unknown topic or partition. */
  replicasOf(name: string, partition: number): readonly NodeId[] | undefined {
    return this.topicsByName.get(name)?.replicas[partition];
  }

  /** Peers sorted by id. */
  peers(): readonly PeerInfo[] {
    return this.peerList;
  }

  /**
   * Apply a committed command at `index`. Deterministic: an invalid command changes nothing but
   * the applied index and says why; an index at or below the applied one is ignored.
   */
  apply(index: number, cmd: MetaCommand): ApplyResult {
    if (index <= this.applied) return { ok: true, event: null };
    this.applied = index;
    try {
      return { ok: true, event: this.execute(cmd) };
    } catch (e) {
      if (!(e instanceof TributaryError)) throw e;
      return { ok: false, error: { code: e.code, message: e.message } };
    }
  }

  /**
   * Apply one committed Raft entry: a command, or something that only moves the applied index
   * (the empty entry a new leader appends, a conf change). Undecodable data is refused like an
   * invalid command, so every peer still agrees.
   */
  applyEntry(entry: Entry): ApplyResult {
    if (entry.type !== EntryType.Normal || entry.data.byteLength === 0) {
      if (entry.index > this.applied) this.applied = entry.index;
      return { ok: true, event: null };
    }
    let cmd: MetaCommand;
    try {
      cmd = decodeCommand(entry.data);
    } catch (e) {
      if (!(e instanceof TributaryError)) throw e;
      if (entry.index <= this.applied) return { ok: true, event: null };
      this.applied = entry.index;
      return { ok: false, error: { code: e.code, message: e.message } };
    }
    return this.apply(entry.index, cmd);
  }

  private execute(cmd: MetaCommand): MetaEvent {
    switch (cmd.type) {
      case "create-topic":
        return this.createTopic(cmd.record, cmd.replicationFactor);
      case "delete-topic":
        return this.deleteTopic(cmd.name);
      case "add-peer":
        return this.addPeer(cmd.peer);
      case "remove-peer":
        return this.removePeer(cmd.id);
      case "reassign-partition":
        return this.reassign(cmd);
      case "complete-reassignment":
        return this.completeReassignment(cmd);
      default:
        throw invalid(`unknown metadata command type ${JSON.stringify((cmd as { type: unknown }).type)}`);
    }
  }

  private createTopic(given: TopicRecord, replicationFactor: number): MetaEvent {
    // Canonical field and config key order, so every peer's snapshot bytes are equal.
    const record = topicRecordOf(given);
    // Internal names ("__consumer_offsets") are allowed: gateways refuse them from clients.
    validateTopicName(record.name, { internal: true });
    if (!TOPIC_ID.test(record.id)) throw invalid(`topic id must be 1 to 64 letters and digits, got ${JSON.stringify(record.id)}`);
    if (!Number.isSafeInteger(record.partitions) || record.partitions < 1 || record.partitions > MAX_PARTITIONS) {
      throw new TributaryError("INVALID_PARTITIONS", `partitions must be an integer from 1 to ${MAX_PARTITIONS}, got ${String(record.partitions)}`);
    }
    if (this.topicsByName.has(record.name)) throw new TributaryError("TOPIC_EXISTS", `topic ${record.name} already exists`);
    for (const t of this.topicsByName.values()) {
      if (collisionKey(t.record.name) === collisionKey(record.name)) {
        throw new TributaryError("INVALID_TOPIC_NAME", `topic ${record.name} collides with ${t.record.name}: names may not differ only by '.' and '_'`);
      }
      // Replica groups are named by topic id, so two live topics never share one.
      if (t.record.id === record.id) throw invalid(`topic id ${record.id} is already used by topic ${t.record.name}`);
    }
    const ids = this.peerList.map((p) => p.id);
    const replicas = assignReplicas(record.partitions, replicationFactor, ids, this.cursor);
    this.cursor = (this.cursor + record.partitions) % ids.length;
    const topic: MetaTopic = { record, replicas };
    this.topicsByName.set(record.name, topic);
    return { type: "topic-created", topic };
  }

  private deleteTopic(name: string): MetaEvent {
    const topic = this.topicsByName.get(name);
    if (!topic) throw new TributaryError("TOPIC_NOT_FOUND", `topic ${name} does not exist`);
    this.topicsByName.delete(name);
    return { type: "topic-deleted", topic };
  }

  private addPeer(peer: PeerInfo): MetaEvent {
    checkPeer(peer);
    const others = this.peerList.filter((p) => p.id !== peer.id);
    const clash = others.find((p) => p.address === peer.address);
    if (clash) throw invalid(`address ${peer.address} is already peer ${clash.id}'s`);
    if (others.length >= MAX_PEERS) throw invalid(`a cluster has at most ${MAX_PEERS} peers`);
    this.peerList = [...others, { id: peer.id, address: peer.address }].sort((a, b) => a.id - b.id);
    return { type: "peers-changed", peers: this.peerList };
  }

  private removePeer(id: NodeId): MetaEvent {
    if (!this.peerList.some((p) => p.id === id)) throw invalid(`peer ${id} is not a member`);
    // Nothing moves replicas yet: removing a peer that holds some would leave them unplaced.
    for (const t of this.topics()) {
      const p = t.replicas.findIndex((_, i) => holdersOf(t, i).includes(id));
      if (p >= 0) throw invalid(`peer ${id} still holds a replica of ${t.record.name} partition ${p}; reassign it first`);
    }
    this.peerList = this.peerList.filter((p) => p.id !== id);
    return { type: "peers-changed", peers: this.peerList };
  }

  /** The topic and partition a reassignment command names, checked. */
  private movedPartition(cmd: ReassignCommand): MetaTopic {
    const topic = this.topicsByName.get(cmd.name);
    if (!topic || topic.record.id !== cmd.topicId) throw new TributaryError("TOPIC_NOT_FOUND", `topic ${cmd.name} (id ${cmd.topicId}) does not exist`);
    if (cmd.partition >= topic.record.partitions) throw new TributaryError("INVALID_PARTITIONS", `topic ${cmd.name} has no partition ${cmd.partition}`);
    return topic;
  }

  private reassign(cmd: ReassignCommand): MetaEvent {
    const topic = this.movedPartition(cmd);
    const replicas = cmd.replicas;
    if (replicas.length === 0 || new Set(replicas).size !== replicas.length) throw invalid(`replicas must be distinct peers, at least one, got [${replicas.join(",")}]`);
    const unknown = replicas.find((id) => !this.peerList.some((p) => p.id === id));
    if (unknown !== undefined) throw invalid(`peer ${unknown} is not a member`);
    const current = topic.targets?.[cmd.partition];
    if (current) {
      if (sameIds(current, replicas)) return { type: "replicas-changed", topic, partition: cmd.partition };
      throw invalid(`${cmd.name} partition ${cmd.partition} is already moving to [${current.join(",")}]; wait until that move completes`);
    }
    if (sameIds(topic.replicas[cmd.partition]!, replicas)) return { type: "replicas-changed", topic, partition: cmd.partition };
    const targets = topic.replicas.map((_, i) => (i === cmd.partition ? [...replicas] : (topic.targets?.[i] ?? null)));
    return this.replaceTopic({ record: topic.record, replicas: topic.replicas, targets }, cmd.partition);
  }

  private completeReassignment(cmd: ReassignCommand): MetaEvent {
    const topic = this.movedPartition(cmd);
    const target = topic.targets?.[cmd.partition];
    if (!target || !sameIds(target, cmd.replicas)) {
      // A retry of a completion already applied finds the replicas in place: nothing to do.
      if (sameIds(topic.replicas[cmd.partition]!, cmd.replicas)) return { type: "replicas-changed", topic, partition: cmd.partition };
      throw invalid(`${cmd.name} partition ${cmd.partition} is not moving to [${cmd.replicas.join(",")}]`);
    }
    const replicas = topic.replicas.map((rs, i) => (i === cmd.partition ? [...target] : rs));
    const targets = topic.targets!.map((t, i) => (i === cmd.partition ? null : t));
    return this.replaceTopic({ record: topic.record, replicas, ...(targets.some((t) => t) ? { targets } : {}) }, cmd.partition);
  }

  private replaceTopic(topic: MetaTopic, partition: number): MetaEvent {
    this.topicsByName.set(topic.record.name, topic);
    return { type: "replicas-changed", topic, partition };
  }

  snapshot(): Uint8Array {
    const topics = this.topics().map((t) => ({ record: t.record, replicas: t.replicas, ...(t.targets ? { targets: t.targets } : {}) }));
    return enc.encode(JSON.stringify({ v: FORMAT_VERSION, appliedIndex: this.applied, nextPlacement: this.cursor, peers: this.peerList, topics }));
  }

  /** The state `snapshot()` wrote; CORRUPT_RECORD when the bytes are not one (they passed a CRC: damage or a bug). */
  static restore(bytes: Uint8Array): ClusterMetadata {
    try {
      return ClusterMetadata.parseSnapshot(bytes);
    } catch (e) {
      if (!(e instanceof TributaryError)) throw e;
      throw new TributaryError("CORRUPT_RECORD", `metadata snapshot: ${e.message}`, { cause: e });
    }
  }

  private static parseSnapshot(bytes: Uint8Array): ClusterMetadata {
    const o = parseObject(bytes, "metadata snapshot");
    if (o.v !== FORMAT_VERSION) throw invalid(`format version ${String(o.v)}, this peer knows ${FORMAT_VERSION}`);
    if (!Array.isArray(o.peers) || !Array.isArray(o.topics)) throw invalid("it must list peers and topics");
    const md = new ClusterMetadata();
    md.applied = intOf(o.appliedIndex, "appliedIndex");
    md.cursor = intOf(o.nextPlacement, "nextPlacement");
    md.peerList = (o.peers as unknown[]).map(peerOf);
    for (const item of o.topics as unknown[]) {
      if (typeof item !== "object" || item === null) throw invalid("a topic entry is not an object");
      const t = item as { record?: unknown; replicas?: unknown; targets?: unknown };
      const record = topicRecordOf(t.record);
      if (!Array.isArray(t.replicas) || t.replicas.length !== record.partitions) throw invalid(`topic ${record.name} lacks replicas for each partition`);
      const replicas = (t.replicas as unknown[]).map((rs) => {
        if (!Array.isArray(rs) || !rs.every((id) => Number.isSafeInteger(id))) throw invalid(`topic ${record.name} replicas are not peer ids`);
        return rs as NodeId[];
      });
      if (t.targets !== undefined && (!Array.isArray(t.targets) || t.targets.length !== record.partitions)) throw invalid(`topic ${record.name} targets are not one per partition`);
      const targets = t.targets === undefined ? undefined : (t.targets as unknown[]).map((rs) => (rs === null ? null : idsOf(rs, `topic ${record.name} targets`)));
      md.topicsByName.set(record.name, { record, replicas, ...(targets ? { targets } : {}) });
    }
    return md;
  }
}

function invalid(message: string): TributaryError {
  return new TributaryError("INVALID_REQUEST", message);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function parseObject(bytes: Uint8Array, what: string): Record<string, unknown> {
  let o: unknown;
  try {
    o = JSON.parse(dec.decode(bytes));
  } catch (e) {
    throw new TributaryError("INVALID_REQUEST", `${what} is not JSON in UTF-8`, { cause: e });
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw invalid(`${what} is not a JSON object`);
  return o as Record<string, unknown>;
}

function intOf(v: unknown, field: string): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw invalid(`${field} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return v as number;
}

function stringOf(v: unknown, field: string): string {
  if (typeof v !== "string") throw invalid(`${field} must be a string, got ${JSON.stringify(v)}`);
  return v;
}

function idsOf(v: unknown, field: string): NodeId[] {
  if (!Array.isArray(v) || v.length > MAX_PEERS) throw invalid(`${field} must be a list of at most ${MAX_PEERS} peer ids`);
  return v.map((id, i) => intOf(id, `${field}[${i}]`));
}

function sameIds(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

function peerOf(v: unknown): PeerInfo {
  if (typeof v !== "object" || v === null) throw invalid("peer must be an object {id, address}");
  const p = v as Record<string, unknown>;
  return { id: intOf(p.id, "peer.id"), address: stringOf(p.address, "peer.address") };
}

function checkPeer(peer: PeerInfo): void {
  if (!Number.isSafeInteger(peer.id) || peer.id < 1 || peer.id > 0xffffffff) throw invalid(`peer id must be an integer from 1 to 2^32-1, got ${peer.id}`);
  if (peer.address.length === 0 || enc.encode(peer.address).byteLength > MAX_ADDRESS_BYTES) {
    throw invalid(`peer ${peer.id}'s address must be 1 to ${MAX_ADDRESS_BYTES} bytes of host:port`);
  }
}

function topicRecordOf(v: unknown): TopicRecord {
  if (typeof v !== "object" || v === null) throw invalid("record must be a topic record object");
  const r = v as Record<string, unknown>;
  const config = r.config;
  if (typeof config !== "object" || config === null || Array.isArray(config) || !Object.values(config).every((s) => typeof s === "string")) {
    throw invalid("record.config must be an object of setting names to strings");
  }
  const sorted = Object.fromEntries(Object.entries(config as Record<string, string>).sort(([a], [b]) => compare(a, b)));
  return {
    name: stringOf(r.name, "record.name"),
    id: stringOf(r.id, "record.id"),
    partitions: intOf(r.partitions, "record.partitions"),
    config: sorted as TopicRecord["config"],
    createdAtMs: intOf(r.createdAtMs, "record.createdAtMs"),
  };
}
