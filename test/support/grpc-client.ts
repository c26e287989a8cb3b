/**
 * A gRPC client for the tests, built independently of the gateway: @grpc/proto-loader reads the
 * .proto files of proto/ at run time and @grpc/grpc-js makes the calls, as any third-party client
 * would. Nothing here imports gateways/grpc. Messages are plain objects as proto-loader makes them:
 * 64-bit integers as decimal strings, enums as their names, bytes as Buffers, defaults filled in.
 *
 * @example
 *   const c = connectTributary(broker.grpcAddress);
 *   await c.unary("AdminService", "CreateTopic", { name: "t", partitions: 1 });
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { join } from "node:path";
import { REPO_ROOT } from "./broker-process.ts";

export const PROTO_DIR = join(REPO_ROOT, "proto");

const definition = protoLoader.loadSync(
  ["tributary/v1/producer.proto", "tributary/v1/consumer.proto", "tributary/v1/admin.proto", "tributary/v1/groups.proto", "google/rpc/status.proto"],
  { includeDirs: [PROTO_DIR], longs: String, enums: String, defaults: true, oneofs: true },
);

export type ServiceName = "ProducerService" | "ConsumerService" | "AdminService" | "GroupsService";
export type Msg = { [field: string]: unknown };

export function methodDefinition(service: ServiceName, method: string): protoLoader.MethodDefinition<object, object> {
  const svc = definition[`tributary.v1.${service}`] as protoLoader.ServiceDefinition | undefined;
  const m = svc?.[method];
  if (!m) throw new Error(`no method ${service}/${method} in the .proto files`);
  return m;
}

/** Fields of a protobuf message as (number -> values): varints as numbers, length-delimited as Buffers. */
function readWire(bytes: Buffer): Map<number, (number | Buffer)[]> {
  const fields = new Map<number, (number | Buffer)[]>();
  let pos = 0;
  const varint = (): number => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[pos++];
      if (b === undefined) throw new Error("truncated varint");
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
      shift += 7;
    }
  };
  while (pos < bytes.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    let value: number | Buffer;
    if ((tag & 7) === 0) value = varint();
    else if ((tag & 7) === 2) {
      const len = varint();
      value = bytes.subarray(pos, pos + len);
      pos += len;
    } else throw new Error(`wire type ${tag & 7} not expected here`);
    fields.set(field, [...(fields.get(field) ?? []), value]);
  }
  return fields;
}

export interface StatusDetails {
  code: number;
  message: string;
  /** google.rpc.ErrorInfo details: reason, domain, metadata. */
  errorInfo: { typeUrl: string; reason: string; domain: string; metadata: Record<string, string> }[];
}

/**
 * The google.rpc.Status of a `grpc-status-details-bin` trailer, read straight from the wire
 * format (field numbers of googleapis' status.proto and error_details.proto), independent of any
 * generated code.
 */
export function decodeStatusDetails(bytes: Buffer): StatusDetails {
  const s = readWire(bytes);
  const text = (v: number | Buffer | undefined) => (v instanceof Buffer ? v.toString("utf8") : "");
  return {
    code: Number(s.get(1)?.[0] ?? 0),
    message: text(s.get(2)?.[0]),
    errorInfo: (s.get(3) ?? []).map((anyBytes) => {
      const any = readWire(anyBytes as Buffer);
      const info = readWire(any.get(2)?.[0] as Buffer);
      const metadata: Record<string, string> = {};
      for (const entry of info.get(3) ?? []) {
        const e = readWire(entry as Buffer);
        metadata[text(e.get(1)?.[0])] = text(e.get(2)?.[0]);
      }
      return { typeUrl: text(any.get(1)?.[0]), reason: text(info.get(1)?.[0]), domain: text(info.get(2)?.[0]), metadata };
    }),
  };
}

export interface CallOptions {
  deadlineMs?: number;
  metadata?: grpc.Metadata;
}

function callOptions(o: CallOptions): grpc.CallOptions {
  return o.deadlineMs === undefined ? {} : { deadline: Date.now() + o.deadlineMs };
}

export class TributaryClient {
  readonly client: grpc.Client;

  constructor(address: string, options: grpc.ClientOptions = {}) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), options);
  }

  unary(service: ServiceName, method: string, request: Msg, options: CallOptions = {}): Promise<Msg> {
    const m = methodDefinition(service, method);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, request, options.metadata ?? new grpc.Metadata(), callOptions(options), (err, res) =>
        err ? reject(err) : resolve(res as Msg),
      );
    });
  }

  /** A unary call with hand-made request bytes (malformed or oversize on purpose). */
  rawUnary(service: ServiceName, method: string, bytes: Buffer, options: CallOptions = {}): Promise<Buffer> {
    const m = methodDefinition(service, method);
    const id = (b: Buffer) => b;
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(m.path, id, id, bytes, new grpc.Metadata(), callOptions(options), (err, res) => (err || !res ? reject(err) : resolve(res)));
    });
  }

  serverStream(service: ServiceName, method: string, request: Msg, options: CallOptions = {}): grpc.ClientReadableStream<Msg> {
    const m = methodDefinition(service, method);
    return this.client.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize as (b: Buffer) => Msg, request, new grpc.Metadata(), callOptions(options));
  }

  bidiStream(service: ServiceName, method: string, options: CallOptions = {}): grpc.ClientDuplexStream<Msg, Msg> {
    const m = methodDefinition(service, method);
    return this.client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize as (b: Buffer) => Msg, new grpc.Metadata(), callOptions(options));
  }

  /** A bidirectional stream that writes hand-made request bytes. */
  rawBidiStream(service: ServiceName, method: string): grpc.ClientDuplexStream<Buffer, Buffer> {
    const m = methodDefinition(service, method);
    const id = (b: Buffer) => b;
    return this.client.makeBidiStreamRequest(m.path, id, id, new grpc.Metadata(), {});
  }

  close(): void {
    this.client.close();
  }
}
