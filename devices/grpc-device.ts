/**
 * An example device that reports telemetry to Tributary over gRPC, in the spirit of
 * http-device.ts: one unary ProducerService.Produce call per batch of readings (key = device id,
 * value = the reading as CBOR or JSON bytes, a content-type header), a bounded local queue of
 * readings the broker has not acknowledged (the oldest go first when it is full), and retries with
 * exponential backoff and jitter while the broker answers UNAVAILABLE (overloaded, not ready, or
 * unreachable) or a call runs past its deadline. Any other refusal (e.g. NOT_FOUND for a missing
 * topic) will not go away by retrying: the device reports it and exits with status 1.
 *
 * It uses only the public protocol: gateways/grpc/client.ts and the generated messages.
 *
 * usage: bun devices/grpc-device.ts [--address 127.0.0.1:8481] [--topic telemetry]
 *        [--device-id dev-1] [--interval-ms 1000] [--count N] [--batch 10] [--format cbor|json]
 * `--count N` sends N readings, waits until all are acknowledged, and exits (0 sends forever).
 */
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { connect, unary } from "../gateways/grpc/client.ts";
import { ProducerService } from "../gateways/grpc/gen/tributary/v1/producer_pb.ts";
import type { OffsetRun } from "../gateways/grpc/gen/tributary/v1/records_pb.ts";
import { encodeReading, reading, type Reading } from "./mqtt-device.ts";

export type PayloadFormat = "json" | "cbor";

/** A channel of its own (not the process-wide shared subchannel), as a separate device would have. */
export function openChannel(address: string): grpc.Client {
  return connect(address, { "grpc.use_local_subchannel_pool": 1 });
}

/** A failed produce call; `retriable` when the same readings may succeed later, unchanged. */
export class ProduceError extends Error {
  constructor(
    message: string,
    readonly code: grpc.status,
    readonly retriable: boolean,
  ) {
    super(message);
    this.name = "ProduceError";
  }
}

function isServiceError(e: unknown): e is grpc.ServiceError {
  return e instanceof Error && typeof (e as Partial<grpc.ServiceError>).code === "number";
}

/**
 * Produce already-encoded readings of one device as one batch (key = `deviceId`); resolves with
 * where they landed once the broker made them durable, rejects with a ProduceError.
 */
export async function produceReadings(
  client: grpc.Client,
  topic: string,
  deviceId: string,
  payloads: Uint8Array[],
  format: PayloadFormat,
  timeoutMs = 10_000,
): Promise<OffsetRun[]> {
  const enc = new TextEncoder();
  const key = enc.encode(deviceId);
  const headers = [{ key: "content-type", value: enc.encode(format === "cbor" ? "application/cbor" : "application/json") }];
  try {
    const res = await unary(client, ProducerService.method.produce, { topic, records: payloads.map((value) => ({ key, value, headers })) }, { timeoutMs });
    return res.runs;
  } catch (e) {
    if (!isServiceError(e)) throw new ProduceError((e as Error).message, grpc.status.UNKNOWN, false);
    const trailer = e.metadata?.get("tributary-retriable")[0];
    const retriable = e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED || trailer === "true";
    throw new ProduceError(e.message, e.code, retriable);
  }
}

/** Encode and produce whole readings (see produceReadings). */
export function sendReadings(client: grpc.Client, topic: string, readings: Reading[], format: PayloadFormat): Promise<OffsetRun[]> {
  const deviceId = readings[0]?.deviceId ?? "";
  return produceReadings(client, topic, deviceId, readings.map((r) => encodeReading(r, format)), format);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      address: { type: "string", default: process.env.TRIBUTARY_GRPC_ADDRESS ?? "127.0.0.1:8481" },
      topic: { type: "string", default: "telemetry" },
      "device-id": { type: "string", default: "dev-1" },
      "interval-ms": { type: "string", default: "1000" },
      count: { type: "string", default: "0" },
      batch: { type: "string", default: "10" },
      format: { type: "string", default: "cbor" },
    },
  });
  const deviceId = values["device-id"];
  const format: PayloadFormat = values.format === "json" ? "json" : "cbor";
  const intervalMs = Math.max(0, Number(values["interval-ms"]));
  const count = Number(values.count);
  const batch = Math.max(1, Number(values.batch));
  const queueMax = 10_000;
  const queue: Reading[] = [];
  const client = openChannel(values.address);
  let seq = 0;
  let acked = 0;
  let dropped = 0;
  let backoffMs = 100;

  try {
    for (;;) {
      if (count === 0 || seq < count) {
        queue.push(reading(deviceId, seq++));
        if (queue.length > queueMax) {
          queue.shift();
          dropped++;
        }
      }
      const finishing = count > 0 && seq >= count;
      if (queue.length >= batch || (finishing && queue.length > 0)) {
        const sending = queue.slice(0, batch);
        try {
          const runs = await sendReadings(client, values.topic, sending, format);
          queue.splice(0, sending.length);
          acked += sending.length;
          backoffMs = 100;
          const last = runs.at(-1);
          console.log(`sent ${sending.length} readings, last at ${last?.partition}/${last ? last.baseOffset + BigInt(last.count - 1) : "?"}${dropped ? `, ${dropped} dropped while offline` : ""}`);
        } catch (e) {
          const err = e as ProduceError;
          if (!err.retriable) {
            console.error(`send refused (${err.message}); not retriable, giving up with ${queue.length} readings unsent`);
            return 1;
          }
          const waitMs = backoffMs + Math.random() * backoffMs;
          console.error(`send failed (${err.message}); retrying in ${Math.round(waitMs)} ms`);
          await new Promise((r) => setTimeout(r, waitMs));
          backoffMs = Math.min(backoffMs * 2, 30_000);
          continue;
        }
      }
      if (finishing && queue.length === 0) {
        console.log(`done: ${acked} readings acknowledged${dropped ? `, ${dropped} dropped while offline` : ""}`);
        return 0;
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  } finally {
    client.close();
  }
}

if (import.meta.main) process.exit(await main());
