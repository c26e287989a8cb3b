/**
 * Records of the internal compacted topic `__consumer_offsets` (one partition, created by the
 * broker on open, cleanup.policy=compact), where committed offsets live and survive restarts.
 *
 *   key    UTF-8 JSON array  [1, groupId, topic, partition]        (1: the key version)
 *   value  UTF-8 JSON object {"offset": N, "metadata": "...", "commitTimestampMs": T}
 *          or null: a tombstone (the group was deleted), which compaction later drops
 *
 * JSON rather than Kafka's binary schema: the topic is read back by this broker only, a few
 * hundred bytes per commit cost nothing next to a batch header, and `tributary consume
 * __consumer_offsets` shows it as text. Compaction keeps the newest record per key, so the topic
 * stays about one record per (group, topic, partition); on open the coordinator replays it in
 * offset order, the last record of a key winning.
 *
 * @example
 *   encodeOffsetKey("g", "t", 0)            // bytes of [1,"g","t",0]
 *   decodeOffsetRecord(key, value)          // { groupId: "g", topic: "t", partition: 0, value: { offset, metadata, commitTimestampMs } }
 */
export const OFFSETS_TOPIC = "__consumer_offsets";
/** Topic settings of the offsets topic: compacted, small segments so compaction can reach old commits soon. */
export const OFFSETS_TOPIC_CONFIG: Record<string, string | number> = {
  "cleanup.policy": "compact",
  "segment.bytes": 8 * 1024 * 1024,
  "delete.retention.ms": 86_400_000,
};

export interface StoredOffset {
  offset: number;
  metadata: string;
  commitTimestampMs: number;
}

export interface OffsetRecord {
  groupId: string;
  topic: string;
  partition: number;
  /** null: a tombstone. */
  value: StoredOffset | null;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeOffsetKey(groupId: string, topic: string, partition: number): Uint8Array {
  return enc.encode(JSON.stringify([1, groupId, topic, partition]));
}

export function encodeOffsetValue(v: StoredOffset | null): Uint8Array | null {
  return v === null ? null : enc.encode(JSON.stringify({ offset: v.offset, metadata: v.metadata, commitTimestampMs: v.commitTimestampMs }));
}

/** A record read back, or null when it is not one of ours (skipped, with the caller logging it). */
export function decodeOffsetRecord(key: Uint8Array | null, value: Uint8Array | null): OffsetRecord | null {
  if (!key) return null;
  try {
    const k = JSON.parse(dec.decode(key)) as unknown;
    if (!Array.isArray(k) || k[0] !== 1 || typeof k[1] !== "string" || typeof k[2] !== "string" || !Number.isSafeInteger(k[3])) return null;
    const base = { groupId: k[1], topic: k[2], partition: k[3] as number };
    if (value === null) return { ...base, value: null };
    const v = JSON.parse(dec.decode(value)) as Partial<StoredOffset>;
    if (!Number.isSafeInteger(v.offset) || typeof v.metadata !== "string" || !Number.isSafeInteger(v.commitTimestampMs)) return null;
    return { ...base, value: { offset: v.offset!, metadata: v.metadata, commitTimestampMs: v.commitTimestampMs! } };
  } catch {
    return null;
  }
}
