/**
 * The side-by-side benchmarks' gRPC load generator (bench/vs.ts, bench/profile.ts). It grew apart
 * from bench/grpc-load.ts (acks and an open-loop RATE as arguments, used by bench:cluster) while
 * both were written at once; they are to become one. Run as its own process (with bun) so it does not share an event loop with
 * the broker.
 *
 *   stream | unary: keeps `inflight` batches of `batch` records of `recordBytes` bytes outstanding
 *     for `durationMs`, either on one ProduceStream ("stream": the next batch goes out as each ack
 *     comes back) or as unary Produce calls ("unary"), and times each batch until its ack.
 *   catchup: reads COUNT records of partition 0 from its start with Subscribe (a live tail from
 *     EARLIEST) and reports the rate; DURATION_MS is a deadline. The backlog was written before.
 *
 * Options (env), for the side-by-side benchmarks (bench/vs.ts):
 *   LOAD_ACKS=all   produce with acks=all (default: the broker's default, acks=1).
 *   LOAD_E2E=1      stream mode: a Subscribe tail on partition 0 (from LATEST) runs alongside, and
 *                   end-to-end latency is matched by offset (bench/load-stats.ts).
 *   LOAD_RATE=N     pace the batches to N records/s (0: as fast as acks allow).
 *   LOAD_COUNT=N    stream mode: stop after N records (DURATION_MS still bounds the run); fills
 *                   a backlog for the catch-up read.
 *
 * Prints one JSON line (LoadResult in bench/lib.ts): records, bytes, elapsedMs, p50, p99, p999
 * (ms per batch until its ack), e2e p50/p99 and errors.
 *
 * The request bytes are encoded once with protobuf-es; a stream batch differs only in its
 * sequence, written as field 1 in front of the shared bytes (protobuf fields may come in any
 * order), so the generator spends its time on the wire and not on encoding.
 *
 * usage: bun bench/vs-grpc-load.ts stream|unary ADDRESS TOPIC RECORD_BYTES BATCH INFLIGHT DURATION_MS
 *        bun bench/grpc-load.ts catchup ADDRESS TOPIC COUNT DURATION_MS
 */
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { decoder, methodPath } from "../gateways/grpc/bridge.ts";
import { connect, serverStream } from "../gateways/grpc/client.ts";
import { ConsumerService, StartPosition } from "../gateways/grpc/gen/tributary/v1/consumer_pb.ts";
import {
  ProduceRequestSchema,
  ProduceResponseSchema,
  ProducerService,
  ProduceStreamRequestSchema,
  ProduceStreamResponseSchema,
} from "../gateways/grpc/gen/tributary/v1/producer_pb.ts";
import { Acks } from "../gateways/grpc/gen/tributary/v1/records_pb.ts";
import { channelReady, sequencedRequest, unaryProduceLoad } from "./grpc-unary.ts";
import { endToEnd, loadSummary, Pacer, SeqTimes } from "./load-stats.ts";

const [mode, address, topic, ...rest] = process.argv.slice(2);
if ((mode !== "stream" && mode !== "unary" && mode !== "catchup") || !address || !topic) {
  console.error("usage: bun bench/vs-grpc-load.ts stream|unary ADDRESS TOPIC RECORD_BYTES BATCH INFLIGHT DURATION_MS | catchup ADDRESS TOPIC COUNT DURATION_MS");
  process.exit(2);
}
const client = connect(address, { "grpc.max_send_message_length": -1, "grpc.max_receive_message_length": -1 });
// Every clock below starts connected, as bench/nats-load.ts's does after `connect`.
await channelReady(client);
const identity = (b: Buffer): Buffer => b;
const acks = process.env.LOAD_ACKS === "all" ? Acks.ALL : Acks.UNSPECIFIED;
/** Records per Subscribe message: the server's default. */
const SUBSCRIBE_MAX_RECORDS = 500;


interface Tail {
  count: number;
  bytes: number;
  cancel(): void;
}

/** A Subscribe tail of partition 0 that stamps each record's offset with when it arrived. */
function tail(received: SeqTimes, position: StartPosition): Tail {
  const call = serverStream(client, ConsumerService.method.subscribe, { topic, partition: 0, start: { case: "position", value: position }, maxRecords: SUBSCRIBE_MAX_RECORDS });
  const t: Tail = { count: 0, bytes: 0, cancel: () => call.cancel() };
  call.on("data", (m: { records: { offset: bigint; value?: Uint8Array }[] }) => {
    const now = performance.now();
    for (const r of m.records) {
      received.set(Number(r.offset), now);
      t.count++;
      t.bytes += r.value?.length ?? 0;
    }
  });
  call.on("error", () => {}); // cancelled at the end
  return t;
}

async function runStream(recordBytes: number, batch: number, inflight: number, durationMs: number): Promise<string> {
  const value = new Uint8Array(recordBytes).fill(120);
  const enc = new TextEncoder();
  const records = Array.from({ length: batch }, (_, i) => ({ key: enc.encode(`device-${i % 100}`), value }));
  const shared = toBinary(ProduceStreamRequestSchema, create(ProduceStreamRequestSchema, { topic, records, acks }));
  const sent = new SeqTimes();
  const received = new SeqTimes();
  const consumer = process.env.LOAD_E2E === "1" ? tail(received, StartPosition.LATEST) : null;
  const pacer = new Pacer(Number(process.env.LOAD_RATE ?? 0) / batch);
  const stream = client.makeBidiStreamRequest(methodPath(ProducerService.method.produceStream), identity, decoder(ProduceStreamResponseSchema), new grpc.Metadata(), {});
  const sentAt = new Map<bigint, number>();
  const ackLatencies: number[] = [];
  let requests = 0;
  let errors = 0;
  let next = 1;
  const started = performance.now();
  const end = started + durationMs;
  const countMax = Number(process.env.LOAD_COUNT ?? 0);
  const more = () => performance.now() < end && (countMax === 0 || (next - 1) * batch < countMax);
  let waiting = 0; // sends held back by the pacer
  let finish = () => {};
  const endIfDone = () => {
    if (sentAt.size === 0 && waiting === 0) finish();
  };
  const send = () => {
    const seq = next++;
    sentAt.set(BigInt(seq), performance.now());
    stream.write(sequencedRequest(seq, shared));
  };
  const sendPaced = () => {
    const wait = pacer.next();
    if (wait === 0) return send();
    waiting++;
    setTimeout(() => {
      waiting--;
      if (more()) send();
      else endIfDone();
    }, wait);
  };
  await new Promise<void>((resolve, reject) => {
    finish = () => {
      finish = () => {};
      stream.end();
    };
    stream.on("data", (ack: { sequence: bigint; runs: { baseOffset: bigint }[]; error?: unknown }) => {
      const t0 = sentAt.get(ack.sequence);
      sentAt.delete(ack.sequence);
      if (ack.error) errors++;
      else if (t0 !== undefined) {
        ackLatencies.push(performance.now() - t0);
        requests++;
        const run = ack.runs[0];
        if (run) sent.set(Number(run.baseOffset), t0);
      }
      if (more()) sendPaced();
      else endIfDone();
    });
    stream.on("end", () => resolve());
    stream.on("error", reject);
    for (let i = 0; i < inflight; i++) sendPaced();
  });
  const elapsedMs = performance.now() - started;
  const deadline = performance.now() + 2000;
  while (consumer && consumer.count < requests * batch && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  consumer?.cancel();
  return loadSummary({ records: requests * batch, bytes: requests * batch * recordBytes, errors, elapsedMs, ackLatencies, e2e: consumer ? endToEnd(sent, received) : [] });
}

async function runUnary(recordBytes: number, batch: number, inflight: number, durationMs: number): Promise<string> {
  const value = new Uint8Array(recordBytes).fill(120);
  const enc = new TextEncoder();
  const records = Array.from({ length: batch }, (_, i) => ({ key: enc.encode(`device-${i % 100}`), value }));
  const started = performance.now();
  const { requests, errors, latencies: ackLatencies } = await unaryProduceLoad(client, { topic, records, acks }, inflight, started + durationMs);
  return loadSummary({ records: requests * batch, bytes: requests * batch * recordBytes, errors, elapsedMs: performance.now() - started, ackLatencies, e2e: [] });
}

async function runCatchup(count: number, durationMs: number): Promise<string> {
  const started = performance.now();
  const consumer = tail(new SeqTimes(), StartPosition.EARLIEST);
  let firstMs = NaN;
  const deadline = started + durationMs;
  while (consumer.count < count && performance.now() < deadline) {
    if (Number.isNaN(firstMs) && consumer.count > 0) firstMs = performance.now() - started;
    await new Promise((r) => setTimeout(r, 2));
  }
  const elapsedMs = performance.now() - started;
  consumer.cancel();
  return loadSummary({ records: consumer.count, bytes: consumer.bytes, errors: consumer.count < count ? 1 : 0, elapsedMs, ackLatencies: [firstMs], e2e: [] });
}

const n = rest.map(Number);
const out = mode === "catchup" ? await runCatchup(n[0]!, n[1]!) : mode === "stream" ? await runStream(n[0]!, n[1]!, n[2]!, n[3]!) : await runUnary(n[0]!, n[1]!, n[2]!, n[3]!);
client.close();
console.log(out);
process.exit(0);
