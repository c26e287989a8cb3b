/**
 * CONTRACT STUB — implemented next. The exported names and types are what gateways build against.
 */
import type { DecodedRecord, RecordHeader } from "./storage/record-batch.ts";
import type { Metrics } from "./metrics.ts";

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

export class Broker {
  readonly metrics!: Metrics;

  createTopic(_name: string, _partitions: number, _config?: TopicConfigInput): Promise<TopicDescription> {
    throw new Error("not implemented");
  }
  listTopics(): TopicDescription[] {
    throw new Error("not implemented");
  }
  describeTopic(_name: string): TopicDescription {
    throw new Error("not implemented");
  }
  deleteTopic(_name: string): Promise<void> {
    throw new Error("not implemented");
  }
  produce(_topic: string, _records: ProduceRecord[], _acks?: Acks): Promise<ProduceResult[]> {
    throw new Error("not implemented");
  }
  fetch(_topic: string, _partition: number, _offset: number, _options?: FetchOptions): Promise<FetchResult> {
    throw new Error("not implemented");
  }
  offsetForTimestamp(_topic: string, _partition: number, _timestampMs: number): Promise<number | null> {
    throw new Error("not implemented");
  }
  /** True once every partition is open and recovered; false again while closing. */
  get ready(): boolean {
    throw new Error("not implemented");
  }
  close(): Promise<void> {
    throw new Error("not implemented");
  }
}
