/**
 * The central's checks of what an edge sends it (helpers of central.ts): link hellos, topic
 * bindings, sends and group offset commits, each refused with a TributaryError naming the field,
 * and the limits they are held to.
 *
 * @example
 *   checkSend(send); // INVALID_REQUEST for a bad partition, too many gaps, an unknown compression, ...
 */
import { TributaryError } from "../errors.ts";
import { MAX_PARTITIONS, validateTopicName } from "../topic-metadata.ts";
import type { CentralSend, CentralTopic } from "./central.ts";
import { validateClusterId } from "./topics.ts";
import type { GroupOffsetCommit, LinkHello, TopicBinding } from "./types.ts";

export const MAX_TOPICS_PER_OPEN = 1000;
/** As many as the edge's drop ledger holds (ranges.ts MAX_LEDGER_RANGES). */
export const MAX_GAPS_PER_SEND = 64;
export const MAX_GROUP_COMMITS = 1000;
const GAP_REASONS: readonly string[] = ["disk-budget", "retention", "central-lost"];

export function invalid(message: string): TributaryError {
  return new TributaryError("INVALID_REQUEST", message);
}

export function checkHello(hello: LinkHello): void {
  if (typeof hello !== "object" || hello === null || typeof hello.link !== "string" || hello.link.length > 256) throw invalid("a link hello needs a link name of at most 256 characters");
  validateClusterId(hello.cluster);
  if (!Array.isArray(hello.topics) || hello.topics.length > MAX_TOPICS_PER_OPEN) throw invalid(`a link hello lists at most ${MAX_TOPICS_PER_OPEN} topics`);
}

export function checkBinding(b: TopicBinding): void {
  if (typeof b !== "object" || b === null) throw invalid("a topic binding must be an object");
  validateTopicName(b.sourceTopic);
  if (typeof b.sourceTopicId !== "string" || !/^[a-zA-Z0-9_-]{1,64}$/.test(b.sourceTopicId)) throw invalid(`source topic id of ${b.sourceTopic} must be 1 to 64 letters, digits, '_' or '-'`);
  validateTopicName(b.target);
  if (!Number.isSafeInteger(b.partitions) || b.partitions < 1 || b.partitions > MAX_PARTITIONS) {
    throw new TributaryError("INVALID_PARTITIONS", `partitions of ${b.sourceTopic} must be from 1 to ${MAX_PARTITIONS}, got ${String(b.partitions)}`);
  }
  if (b.config !== undefined && (typeof b.config !== "object" || b.config === null || !Object.values(b.config).every((v) => typeof v === "string"))) {
    throw new TributaryError("INVALID_CONFIG", `the config of ${b.sourceTopic} must map setting names to strings`);
  }
}

/** Bounds the gaps before admitSend normalises them (which asserts well-formed ranges). */
export function checkSend(send: CentralSend): void {
  const s = send?.source;
  if (typeof s !== "object" || s === null) throw invalid("a mirror send needs its source");
  validateClusterId(s.cluster);
  if (typeof s.topic !== "string" || s.topic === "") throw invalid("a mirror send needs its source topic");
  if (!Number.isSafeInteger(s.partition) || s.partition < 0) throw invalid(`a mirror send's partition must be a non-negative integer, got ${String(s.partition)}`);
  if (!(send.payload instanceof Uint8Array)) throw invalid("a mirror send's payload must be bytes");
  if (send.compression !== "none" && send.compression !== "gzip") throw invalid(`compression must be none or gzip, got ${String(send.compression)}`);
  if (!Array.isArray(send.gaps) || send.gaps.length > MAX_GAPS_PER_SEND) throw invalid(`a mirror send declares at most ${MAX_GAPS_PER_SEND} gaps`);
  for (const g of send.gaps) {
    const ok = Number.isSafeInteger(g?.from) && Number.isSafeInteger(g?.to) && g.from >= 0 && g.to >= g.from && GAP_REASONS.includes(g.reason);
    if (!ok) throw invalid(`a gap is {from, to} with 0 <= from <= to and a reason of ${GAP_REASONS.join(", ")}`);
  }
}

export function checkPartition(t: CentralTopic, partition: number): void {
  if (!Number.isSafeInteger(partition) || partition < 0 || partition >= t.record.partitions) {
    throw new TributaryError("PARTITION_NOT_FOUND", `mirror target ${t.record.name} has partitions 0 to ${t.record.partitions - 1}, not ${String(partition)}`);
  }
}

export function checkCommits(cluster: string, commits: readonly GroupOffsetCommit[]): void {
  validateClusterId(cluster);
  if (!Array.isArray(commits) || commits.length > MAX_GROUP_COMMITS) throw invalid(`at most ${MAX_GROUP_COMMITS} group offset commits per call`);
}

export function checkCommit(c: GroupOffsetCommit): void {
  if (typeof c?.group !== "string" || typeof c.sourceTopic !== "string") throw invalid("a group offset commit needs a group and a source topic");
  if (!Number.isSafeInteger(c.sourceOffset) || c.sourceOffset < 0) throw invalid(`a source offset must be a non-negative integer, got ${String(c.sourceOffset)}`);
  if (c.metadata !== undefined && typeof c.metadata !== "string") throw invalid("commit metadata must be a string");
}
