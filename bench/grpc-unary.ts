/**
 * The unary-Produce loop both gRPC load generators run (bench/grpc-load.ts, bench/vs-grpc-load.ts):
 * `inflight` workers each send the same pre-encoded Produce request until `endMs`
 * (performance.now() time), timing each call until its reply; and the ProduceStream request both
 * write, its sequence in front of the shared fields.
 */
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { decoder, methodPath } from "../gateways/grpc/bridge.ts";
import { ProduceRequestSchema, ProduceResponseSchema, ProducerService } from "../gateways/grpc/gen/tributary/v1/producer_pb.ts";
import { sizeOfUvarlong, Writer } from "../src/storage/bytes.ts";

export interface UnaryCounts {
  requests: number;
  errors: number;
  /** Milliseconds per successful call. */
  latencies: number[];
}

const identity = (b: Buffer): Buffer => b;

/**
 * Resolves once `client`'s channel is connected. Both generators start their clocks after it, as
 * bench/nats-load.ts does after `connect`: connecting took about 40 ms on Bun, and counted in the
 * first batches' latency it was the whole p99 of a 3 s paced phase (one stall holds up every
 * batch due meanwhile) and 256 of the first messages of a 256-in-flight run.
 */
export function channelReady(client: grpc.Client, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => client.waitForReady(Date.now() + timeoutMs, (e) => (e ? reject(e) : resolve())));
}

export async function unaryProduceLoad(client: grpc.Client, request: MessageInitShape<typeof ProduceRequestSchema>, inflight: number, endMs: number): Promise<UnaryCounts> {
  const body = Buffer.from(toBinary(ProduceRequestSchema, create(ProduceRequestSchema, request)));
  const path = methodPath(ProducerService.method.produce);
  const decode = decoder(ProduceResponseSchema);
  const counts: UnaryCounts = { requests: 0, errors: 0, latencies: [] };
  const once = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      client.makeUnaryRequest(path, identity, decode, body, new grpc.Metadata(), {}, (err) => {
        if (err) counts.errors++;
        else {
          counts.latencies.push(performance.now() - t0);
          counts.requests++;
        }
        resolve();
      });
    });
  const worker = async () => {
    while (performance.now() < endMs) await once();
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  return counts;
}

/**
 * One ProduceStreamRequest, ready to write: its `sequence` (field 1, a varint) in front of the
 * fields every batch shares, encoded once (`rest`); protobuf takes fields in any order.
 */
export function sequencedRequest(seq: number, rest: Uint8Array): Buffer {
  const out = Buffer.alloc(1 + sizeOfUvarlong(seq) + rest.length);
  new Writer(out).int8(0x08).uvarlong(seq).bytes(rest);
  return out;
}
