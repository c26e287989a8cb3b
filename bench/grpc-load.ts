/**
 * gRPC produce load generator, run as its own process (with bun) so it does not share an event
 * loop with the broker. Keeps `inflight` batches of `batch` records of `recordBytes` bytes
 * outstanding for `durationMs`, either on one ProduceStream ("stream": the next batch goes out as
 * each ack comes back) or as unary Produce calls ("unary"), and prints one JSON line like
 * bench/http-load.ts: requests, errors, records, bytes, elapsedMs, p50, p99 (ms per batch).
 *
 * The request bytes are encoded once with protobuf-es; a stream batch differs only in its
 * sequence, written as field 1 in front of the shared bytes (protobuf fields may come in any
 * order), so the generator spends its time on the wire and not on encoding.
 *
 * usage: bun bench/grpc-load.ts stream|unary ADDRESS TOPIC RECORD_BYTES BATCH INFLIGHT DURATION_MS
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
import { percentile } from "./lib.ts";

const [mode, address, topic, recordBytesArg, batchArg, inflightArg, durationArg] = process.argv.slice(2);
if ((mode !== "stream" && mode !== "unary") || !address || !topic) {
  console.error("usage: bun bench/grpc-load.ts stream|unary ADDRESS TOPIC RECORD_BYTES BATCH INFLIGHT DURATION_MS");
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

const latencies: number[] = [];
let requests = 0;
let errors = 0;
const started = performance.now();
const end = started + durationMs;

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

async function runStream(): Promise<void> {
  const shared = toBinary(ProduceStreamRequestSchema, create(ProduceStreamRequestSchema, { topic, records }));
  const method = ProducerService.method.produceStream;
  const stream = client.makeBidiStreamRequest(methodPath(method), identity, decoder(ProduceStreamResponseSchema), new grpc.Metadata(), {});
  const sentAt = new Map<bigint, number>();
  let next = 1;
  const send = () => {
    const seq = next++;
    const head = Buffer.from([0x08, ...varint(seq)]);
    sentAt.set(BigInt(seq), performance.now());
    stream.write(Buffer.concat([head, shared]));
  };
  await new Promise<void>((resolve, reject) => {
    stream.on("data", (ack: { sequence: bigint; error?: unknown }) => {
      const t0 = sentAt.get(ack.sequence);
      sentAt.delete(ack.sequence);
      if (ack.error) errors++;
      else if (t0 !== undefined) {
        latencies.push(performance.now() - t0);
        requests++;
      }
      if (performance.now() < end) send();
      else if (sentAt.size === 0) stream.end();
    });
    stream.on("end", () => resolve());
    stream.on("error", reject);
    for (let i = 0; i < inflight; i++) send();
  });
}

async function runUnary(): Promise<void> {
  const body = Buffer.from(toBinary(ProduceRequestSchema, create(ProduceRequestSchema, { topic, records })));
  const path = methodPath(ProducerService.method.produce);
  const decode = decoder(ProduceResponseSchema);
  const once = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      client.makeUnaryRequest(path, identity, decode, body, new grpc.Metadata(), {}, (err) => {
        if (err) errors++;
        else {
          latencies.push(performance.now() - t0);
          requests++;
        }
        resolve();
      });
    });
  const worker = async () => {
    while (performance.now() < end) await once();
  };
  await Promise.all(Array.from({ length: inflight }, worker));
}

await (mode === "stream" ? runStream() : runUnary());
const elapsedMs = performance.now() - started;
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
