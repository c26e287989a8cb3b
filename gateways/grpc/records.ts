/**
 * How records look over gRPC: bytes stay bytes. A proto Record becomes a broker ProduceRecord
 * without copying its key and value (they are views into the request buffer until the broker
 * encodes them into a batch), and the per-record offsets of a produce call are folded into
 * OffsetRuns (one run per partition for a typical batch). Stored records go out through
 * record-replies.ts, which writes them into wire bytes directly.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Acks as BrokerAcks, IdempotenceInput, ProduceRecord, ProduceResult } from "../../src/broker.ts";
import { PRODUCE_MAX_RECORDS } from "../../src/broker.ts";
import { TributaryError } from "../../src/errors.ts";
import { Acks, type Idempotence, type OffsetRunSchema, type Record } from "./gen/tributary/v1/records_pb.ts";

export function toProduceRecords(records: Record[]): ProduceRecord[] {
  if (records.length > PRODUCE_MAX_RECORDS) {
    throw new TributaryError("RECORD_TOO_LARGE", `at most ${PRODUCE_MAX_RECORDS} records per request, got ${records.length}`);
  }
  const out: ProduceRecord[] = new Array<ProduceRecord>(records.length);
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    const p: ProduceRecord = { key: r.key ?? null, value: r.value ?? null };
    if (r.headers.length > 0) p.headers = r.headers.map((h) => ({ key: h.key, value: h.value ?? null }));
    if (r.partition !== undefined) p.partition = r.partition;
    if (r.timestampMs !== undefined) p.timestamp = safeNumber(r.timestampMs, `records[${i}].timestamp_ms`);
    out[i] = p;
  }
  return out;
}

export function toBrokerAcks(acks: Acks): BrokerAcks {
  switch (acks) {
    case Acks.UNSPECIFIED:
    case Acks.LEADER:
      return 1;
    case Acks.NONE:
      return 0;
    case Acks.ALL:
      return -1;
    default:
      throw new TributaryError("INVALID_REQUEST", `acks ${String(acks)} is not an Acks value`);
  }
}

export function toIdempotence(i: Idempotence | undefined): IdempotenceInput | undefined {
  if (!i) return undefined;
  return { producerId: safeNumber(i.producerId, "idempotence.producer_id"), producerEpoch: i.producerEpoch, baseSequence: i.baseSequence };
}

/** An int64 from the wire as a JavaScript number, or INVALID_REQUEST past 2^53. */
export function safeNumber(v: bigint, where: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new TributaryError("INVALID_REQUEST", `${where} ${v} is out of range`);
  return n;
}

/** Per-record results, in record order, folded into runs of consecutive offsets of one partition. */
export function toOffsetRuns(results: ProduceResult[]): MessageInitShape<typeof OffsetRunSchema>[] {
  const runs: { partition: number; base: number; count: number }[] = [];
  let last: { partition: number; base: number; count: number } | undefined;
  for (const r of results) {
    if (last && last.partition === r.partition && (r.offset === -1 ? last.base === -1 : last.base + last.count === r.offset)) {
      last.count++;
    } else {
      last = { partition: r.partition, base: r.offset, count: 1 };
      runs.push(last);
    }
  }
  return runs.map((r) => ({ partition: r.partition, baseOffset: BigInt(r.base), count: r.count }));
}
