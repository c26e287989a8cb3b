/**
 * gRPC produce load generator, run as its own process (with bun) so it does not share an event
 * loop with the broker. Keeps up to `inflight` batches of `batch` records of `recordBytes` bytes
 * outstanding for `durationMs`, either on one ProduceStream ("stream": the next batch goes out as
 * each ack comes back) or as unary Produce calls ("unary"), and prints one JSON line like
 * bench/http-load.ts: requests, errors, records, bytes, elapsedMs, p50, p99 (ms per batch).
 *
 * ACKS (default 1) is what every batch asks for: 0, 1, or all (-1: a quorum's durable write in a
 * cluster). RATE (stream only; default 0, as fast as the window allows) paces the stream at that
 * many records per second, open loop: batch i is due at start + i * batch / RATE and leaves then
 * (unless `inflight` batches are still unacknowledged, when it leaves as soon as one is), and its
 * latency runs from when it was due, so a broker that falls behind shows it in the percentiles
 * instead of slowing the producer down (no coordinated omission).
 *
 * The clock starts once the channel is connected (channelReady), so no batch's latency holds the
 * connect: on Bun it took about 40 ms, the p99 of a whole paced phase. WARMUP_MS (stream only;
 * default 0) runs the stream that long first, at the same rate, and counts nothing of it: the
 * first batches of a fresh generator took 17-25 ms on the 2-core VM against a p50 of 3, one to
 * three of the six batches a 3 s phase at 20,000 records/s may have over its p99.
 *
 * The request bytes are encoded once with protobuf-es; a stream batch differs only in its
 * sequence, written as field 1 in front of the shared bytes (protobuf fields may come in any
 * order), so the generator spends its time on the wire and not on encoding.
 *
 * usage: bun bench/grpc-load.ts stream|unary ADDRESS TOPIC RECORD_BYTES BATCH INFLIGHT DURATION_MS [ACKS [RATE [WARMUP_MS]]]
 */
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { decoder, methodPath } from "../gateways/grpc/bridge.ts";
import { connect } from "../gateways/grpc/client.ts";
import {
  ProduceRequestSchema,
  ProduceResponseSchema,
  ProducerService,
  ProduceStreamRequestSchema,
  ProduceStreamResponseSchema,
} from "../gateways/grpc/gen/tributary/v1/producer_pb.ts";
import { Acks } from "../gateways/grpc/gen/tributary/v1/records_pb.ts";
import { channelReady, sequencedRequest, unaryProduceLoad } from "./grpc-unary.ts";
import { percentile } from "./lib.ts";

const USAGE = "usage: bun bench/grpc-load.ts stream|unary ADDRESS TOPIC RECORD_BYTES BATCH INFLIGHT DURATION_MS [ACKS [RATE [WARMUP_MS]]]";
const ACKS: Record<string, Acks> = { "0": Acks.NONE, "1": Acks.LEADER, all: Acks.ALL, "-1": Acks.ALL };
const [mode, address, topic, recordBytesArg, batchArg, inflightArg, durationArg, acksArg = "1", rateArg = "0", warmupArg = "0"] = process.argv.slice(2);
const acks = ACKS[acksArg];
const ratePerS = Number(rateArg);
const warmupMs = Number(warmupArg);
if ((mode !== "stream" && mode !== "unary") || !address || !topic || acks === undefined || !(ratePerS >= 0) || !(warmupMs >= 0) || (mode === "unary" && (ratePerS > 0 || warmupMs > 0))) {
  console.error(`${USAGE}\n  ACKS: 0, 1 or all; RATE: records per second, stream only (0: unpaced); WARMUP_MS: stream only, not counted`);
  process.exit(2);
}
const recordBytes = Number(recordBytesArg);
const batch = Number(batchArg);
const inflight = Number(inflightArg);
const durationMs = Number(durationArg);

const enc = new TextEncoder();
const value = new Uint8Array(recordBytes).fill(120);
const records = Array.from({ length: batch }, (_, i) => ({ key: enc.encode(`device-${i % 100}`), value }));
const client = connect(address, { "grpc.max_send_message_length": -1, "grpc.max_receive_message_length": -1 });
const identity = (b: Buffer): Buffer => b;

await channelReady(client);
const latencies: number[] = [];
let requests = 0;
let errors = 0;
const started = performance.now();
/** Batches due from here on are counted (WARMUP_MS after the start). */
const counted = started + warmupMs;
const end = counted + durationMs;


async function runStream(): Promise<void> {
  const shared = toBinary(ProduceStreamRequestSchema, create(ProduceStreamRequestSchema, { topic, records, acks }));
  const method = ProducerService.method.produceStream;
  const stream = client.makeBidiStreamRequest(methodPath(method), identity, decoder(ProduceStreamResponseSchema), new grpc.Metadata(), {});
  /** Per outstanding sequence, when its batch was due (paced) or sent (unpaced). */
  const dueAt = new Map<bigint, number>();
  const intervalMs = ratePerS > 0 ? (batch / ratePerS) * 1000 : 0;
  let nextDue = started;
  let next = 1;
  let ended = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const send = (due: number) => {
    const seq = next++;
    dueAt.set(BigInt(seq), due);
    stream.write(sequencedRequest(seq, shared));
  };
  // Send what is due and fits in the window; end the stream once the time is up and all is acked.
  const pump = () => {
    const now = performance.now();
    while (dueAt.size < inflight && now < end && (intervalMs === 0 || nextDue <= now)) {
      send(intervalMs === 0 ? now : nextDue);
      nextDue += intervalMs;
    }
    if (now >= end && dueAt.size === 0 && !ended) {
      ended = true;
      clearTimeout(timer);
      stream.end();
    } else if (intervalMs > 0 && timer === undefined && now < end && dueAt.size < inflight) {
      // A full window waits for an ack (which pumps), not for a timer.
      timer = setTimeout(() => {
        timer = undefined;
        pump();
      }, Math.max(0, Math.min(nextDue, end) - now));
    }
  };
  await new Promise<void>((resolve, reject) => {
    stream.on("data", (ack: { sequence: bigint; error?: unknown }) => {
      const t0 = dueAt.get(ack.sequence);
      dueAt.delete(ack.sequence);
      if (ack.error) errors++;
      else if (t0 !== undefined && t0 >= counted) {
        latencies.push(performance.now() - t0);
        requests++;
      }
      pump();
    });
    stream.on("end", () => resolve());
    stream.on("error", reject);
    pump();
  });
}

async function runUnary(): Promise<void> {
  const counts = await unaryProduceLoad(client, { topic, records, acks }, inflight, end);
  requests += counts.requests;
  errors += counts.errors;
  latencies.push(...counts.latencies);
}

await (mode === "stream" ? runStream() : runUnary());
const elapsedMs = performance.now() - counted;
client.close();
latencies.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    requests,
    errors,
    records: requests * batch,
    bytes: requests * batch * recordBytes,
    elapsedMs,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  }),
);
process.exit(0);
