/**
 * A typed gRPC client over the generated descriptors, for devices, tools and the benchmark: the
 * same bridge as the server (protobuf-es toBinary/fromBinary inside @grpc/grpc-js). It needs only
 * @grpc/grpc-js, @bufbuild/protobuf and gen/ (plus bridge.ts and channel.ts), not the broker.
 * With `tls` it dials TLS (mutual TLS with cert and key), to a DNS name or an IP address alike
 * (channel.ts: the certificate must then carry the IP as an IP SAN).
 *
 * @example
 *   const client = connect("127.0.0.1:8481");
 *   const secure = connect("10.0.0.1:8481", {}, { ca: readFileSync("ca.pem"), cert, key });
 *   const { runs } = await unary(client, ProducerService.method.produce, {
 *     topic: "telemetry", records: [{ key: enc("dev-1"), value: enc('{"temp":21.5}') }],
 *   });
 *   const stream = bidi(client, ProducerService.method.produceStream);
 *   stream.on("data", (ack) => console.log(ack.sequence, ack.runs, ack.error));
 *   stream.write(create(ProduceStreamRequestSchema, { sequence: 1n, topic: "telemetry", records }));
 */
import { create, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { decoder, encoder, methodPath } from "./bridge.ts";
import { dial } from "./channel.ts";

type Method<K extends DescMethod["methodKind"], I extends DescMessage, O extends DescMessage> = DescMethod & { methodKind: K; input: I; output: O };

export interface ClientCallOptions {
  /** Milliseconds from now. */
  timeoutMs?: number;
  metadata?: grpc.Metadata;
}

/** PEM contents (not file names) for a TLS channel. */
export interface ClientTls {
  /** CA certificates the server's certificate must chain to. */
  readonly ca: string | Uint8Array;
  /** Client certificate and key, for mutual TLS. */
  readonly cert?: string | Uint8Array;
  readonly key?: string | Uint8Array;
}

/** A channel to a broker's gRPC gateway (or a central's MirrorService): plain text, or TLS with `tls`. */
export function connect(address: string, options: grpc.ClientOptions = {}, tls: ClientTls | null = null): grpc.Client {
  if (!tls) return dial(address, null, options);
  const pem = (v: string | Uint8Array | undefined) => (v === undefined || v.length === 0 ? null : Buffer.from(v));
  return dial(address, (verify) => grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert), verify), options);
}

function callOptions(o: ClientCallOptions): grpc.CallOptions {
  return o.timeoutMs === undefined ? {} : { deadline: Date.now() + o.timeoutMs };
}

export function unary<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: Method<"unary", I, O>,
  request: MessageInitShape<I>,
  options: ClientCallOptions = {},
): Promise<MessageShape<O>> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      methodPath(method),
      encoder(method.input),
      decoder(method.output),
      create(method.input, request),
      options.metadata ?? new grpc.Metadata(),
      callOptions(options),
      (err, res) => (err || res === undefined ? reject(err) : resolve(res)),
    );
  });
}

export function serverStream<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: Method<"server_streaming", I, O>,
  request: MessageInitShape<I>,
  options: ClientCallOptions = {},
): grpc.ClientReadableStream<MessageShape<O>> {
  return client.makeServerStreamRequest(
    methodPath(method),
    encoder(method.input),
    decoder(method.output),
    create(method.input, request),
    options.metadata ?? new grpc.Metadata(),
    callOptions(options),
  );
}

/** A bidirectional stream; write messages made with create(Schema, {...}). */
export function bidi<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: Method<"bidi_streaming", I, O>,
  options: ClientCallOptions = {},
): grpc.ClientDuplexStream<MessageShape<I>, MessageShape<O>> {
  return client.makeBidiStreamRequest(methodPath(method), encoder(method.input), decoder(method.output), options.metadata ?? new grpc.Metadata(), callOptions(options));
}
