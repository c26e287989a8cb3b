/**
 * The floor under one produce in flight (bench/floor.ts): a ProducerService.ProduceStream server
 * that does none of a broker's work (no log, no index, no batch codec, no consumer), so what a
 * producer with one message in flight waits for is the gRPC transport of this runtime and, with a
 * FILE, one write + fdatasync of the request per message (blocking calls, as a broker's lone
 * append does: src/storage/flusher.ts). Each request is decoded with protobuf-es and answered
 * with its sequence and an offset, as the broker does.
 *
 *   grpc-js  @grpc/grpc-js's server, the one the broker's gRPC gateway runs on.
 *   h2       gRPC straight on node:http2 (gateways/peer/grpc-wire.ts), as the peer transport.
 *
 * usage: bun bench/floor-server.ts grpc-js|h2 [FILE]   (prints {"port":N} once listening)
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { closeSync, fdatasyncSync, openSync, writeSync } from "node:fs";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { methodPath } from "../gateways/grpc/bridge.ts";
import { ProducerService, ProduceStreamRequestSchema, ProduceStreamResponseSchema } from "../gateways/grpc/gen/tributary/v1/producer_pb.ts";
import { frameMessage, GRPC_CONTENT_TYPE, MessageReader } from "../gateways/peer/grpc-wire.ts";

const [kind, file] = process.argv.slice(2);
if (kind !== "grpc-js" && kind !== "h2") {
  console.error("usage: bun bench/floor-server.ts grpc-js|h2 [FILE]");
  process.exit(2);
}
const fd = file ? openSync(file, "w") : -1;
let offset = 0n;

/** One request in, its answer out: decode, (write + fdatasync), encode. */
function answer(bytes: Uint8Array): Uint8Array {
  const req = fromBinary(ProduceStreamRequestSchema, bytes);
  if (fd >= 0) {
    writeSync(fd, bytes);
    fdatasyncSync(fd);
  }
  const base = offset;
  offset += BigInt(req.records.length);
  return toBinary(ProduceStreamResponseSchema, create(ProduceStreamResponseSchema, { sequence: req.sequence, runs: [{ partition: 0, baseOffset: base }] }));
}

const path = methodPath(ProducerService.method.produceStream);
const raw = (b: Buffer): Buffer => b;
let port: number;
if (kind === "grpc-js") {
  const server = new grpc.Server();
  server.addService(
    { produceStream: { path, requestStream: true, responseStream: true, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw } },
    {
      produceStream: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        call.on("data", (b: Buffer) => call.write(Buffer.from(answer(b))));
        call.on("end", () => call.end());
        call.on("error", () => {});
      },
    },
  );
  port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
} else {
  const server = http2.createServer();
  server.on("stream", (stream: http2.ServerHttp2Stream, headers) => {
    stream.on("error", () => {});
    if (headers[":path"] !== path) {
      stream.respond({ ":status": 200, "content-type": GRPC_CONTENT_TYPE, "grpc-status": "12" }, { endStream: true });
      return;
    }
    stream.respond({ ":status": 200, "content-type": GRPC_CONTENT_TYPE }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    const reader = new MessageReader(64 << 20, (m) => stream.write(frameMessage(answer(m))));
    stream.on("data", (chunk: Buffer) => reader.push(chunk));
    stream.once("end", () => stream.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  port = (server.address() as AddressInfo).port;
}
process.once("SIGTERM", () => {
  if (fd >= 0) closeSync(fd);
  process.exit(0);
});
console.log(JSON.stringify({ port }));
