/**
 * The bridge from protobuf-es descriptors (the generated `*Service` constants) to @grpc/grpc-js.
 *
 * For clients, `grpcServiceDefinition(ProducerService)` is a plain grpc-js ServiceDefinition whose
 * (de)serializers are protobuf-es's toBinary/fromBinary; `makeGenericClientConstructor` turns it
 * into a client, and client.ts wraps that in typed calls.
 *
 * For the server, `serverImplementation` takes typed handlers and registers each method with an
 * identity request deserializer: the bytes are decoded here, inside the handler, so that bytes
 * that are not the request message end the call with INVALID_ARGUMENT and a Tributary error code
 * (grpc-js would answer a throwing deserializer with INTERNAL). Responses are encoded by grpc-js
 * through toBinary, except an EncodedMessage (proto-wire.ts), whose bytes a handler wrote itself
 * (record-replies.ts) and which goes out as it is. A server stream's messages pass through a
 * StreamWriter (stream-writer.ts): at most STREAM_QUEUED_BYTES_MAX of them wait in grpc-js.
 * Every handler gets a CallContext whose signal aborts when the client cancels, the deadline
 * passes, or the call ends, so long polls and live tails stop waiting at once.
 *
 * @example
 *   server.addService(...serverImplementation(AdminService, { listTopics: async () => ({ topics: [] }), ... }, onError));
 */
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { Metadata, status } from "@grpc/grpc-js";
import type * as grpc from "@grpc/grpc-js";
import { TributaryError } from "../../src/errors.ts";
import type { CallGuard } from "./auth.ts";
import { beforeCall, chargeReply, chargeStreamed, throttleTrailer, type CallQuota } from "./quota.ts";
import { gatewayError, toServiceError, type GatewayError } from "./errors.ts";
import { EncodedMessage } from "./proto-wire.ts";
import { StreamWriter } from "./stream-writer.ts";

/** The gRPC path of a method: /tributary.v1.ProducerService/Produce. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

const READ_OPTIONS = { readUnknownFields: false } as const;

export function encoder<D extends DescMessage>(schema: D): (message: MessageShape<D>) => Buffer {
  return (message) => {
    const bytes = toBinary(schema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/** The server's reply encoder: an EncodedMessage as it is, anything else through toBinary. */
function replyEncoder<D extends DescMessage>(schema: D): (message: MessageShape<D> | EncodedMessage) => Buffer {
  const generic = encoder(schema);
  return (message) => {
    if (!(message instanceof EncodedMessage)) return generic(message);
    const b = message.bytes;
    return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  };
}

/**
 * Encoded bytes a server stream may have handed to grpc-js and not yet seen written out: room
 * for a few Subscribe messages in the pipe while the next is read from disk, and no more.
 */
export const STREAM_QUEUED_BYTES_MAX = 1024 * 1024;

export function decoder<D extends DescMessage>(schema: D): (bytes: Uint8Array) => MessageShape<D> {
  return (bytes) => fromBinary(schema, bytes, READ_OPTIONS);
}

/** A grpc-js service definition for clients (keys are the methods' lowerCamel local names). */
export function grpcServiceDefinition(service: DescService): grpc.ServiceDefinition {
  const def: { [name: string]: grpc.MethodDefinition<MessageShape<DescMessage>, MessageShape<DescMessage>> } = {};
  for (const method of service.methods) {
    def[method.localName] = {
      path: methodPath(method),
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: encoder(method.input),
      requestDeserialize: decoder(method.input),
      responseSerialize: encoder(method.output),
      responseDeserialize: decoder(method.output),
      originalName: method.name,
    };
  }
  return def;
}

export interface CallContext {
  /** Aborts when the client cancels, the deadline passes, or the call ends. */
  signal: AbortSignal;
  /** Epoch milliseconds of the client's deadline; Infinity without one. */
  deadlineMs: number;
  metadata: grpc.Metadata;
  /** Send the response headers now (streams: the client then knows the call was accepted). */
  sendHeaders(): void;
}

/** A bidirectional stream as its handler sees it: raw grpc-js call, typed codecs. */
export interface BidiCall<I extends DescMessage, O extends DescMessage> {
  /** Requests arrive as undecoded Buffers ("data" events); pause()/resume() stop and restart reading. */
  call: grpc.ServerDuplexStream<Buffer, MessageShape<O>>;
  /** The request message, or INVALID_REQUEST for bytes that are not one. */
  decode(bytes: Uint8Array): MessageShape<I>;
  create(init: MessageInitShape<O>): MessageShape<O>;
}

type In<M> = M extends { input: infer I extends DescMessage } ? I : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? O : never;

/** A typed handler for each kind of method. */
export type Handler<M> = M extends { methodKind: "unary" }
  ? (request: MessageShape<In<M>>, ctx: CallContext) => Promise<MessageInitShape<Out<M>> | EncodedMessage>
  : M extends { methodKind: "server_streaming" }
    ? (request: MessageShape<In<M>>, send: (message: MessageInitShape<Out<M>> | EncodedMessage) => Promise<void>, ctx: CallContext) => Promise<void>
    : M extends { methodKind: "bidi_streaming" }
      ? (stream: BidiCall<In<M>, Out<M>>, ctx: CallContext) => Promise<void>
      : never;

export type ServiceHandlers<S extends GenServiceMethods> = { [K in keyof S]: Handler<S[K]> };

/** Called with every refusal; INTERNAL ones carry the original exception to log. */
export type ErrorReporter = (method: string, error: GatewayError, cause: unknown) => void;

export function decodeRequest<D extends DescMessage>(schema: D, bytes: Uint8Array): MessageShape<D> {
  try {
    return fromBinary(schema, bytes, READ_OPTIONS);
  } catch (e) {
    throw new TributaryError("INVALID_REQUEST", `the request is not a valid ${schema.typeName}: ${(e as Error).message}`);
  }
}

interface AnyServerCall {
  metadata: grpc.Metadata;
  getDeadline(): grpc.Deadline;
  sendMetadata(metadata: grpc.Metadata): void;
  on(event: "cancelled", listener: () => void): unknown;
}

function contextOf(call: AnyServerCall): { ctx: CallContext; done: () => void } {
  const abort = new AbortController();
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  call.on("cancelled", () => abort.abort());
  // grpc-js ends the call itself when the deadline passes; the timer only wakes our waits sooner.
  const timer = Number.isFinite(deadlineMs) ? setTimeout(() => abort.abort(), Math.max(0, deadlineMs - Date.now())) : undefined;
  return {
    ctx: {
      signal: abort.signal,
      deadlineMs,
      metadata: call.metadata,
      sendHeaders: () => call.sendMetadata(new Metadata()),
    },
    done: () => {
      clearTimeout(timer);
      abort.abort();
    },
  };
}

function refuse(reporter: ErrorReporter, name: string, e: unknown): ReturnType<typeof toServiceError> {
  const err = gatewayError(e);
  reporter(name, err, e);
  return toServiceError(err);
}

/** What the guard reads of a call: its metadata, its connection and, under TLS, the peer's certificate. */
interface Caller {
  metadata: grpc.Metadata;
  getPeer(): string;
  getAuthContext(): { sslPeerCertificate?: { subject?: object } } | null;
}

/**
 * The grpc-js [definition, implementation] pair for server.addService, from typed handlers.
 */
export function serverImplementation<S extends GenServiceMethods>(
  service: GenService<S>,
  handlers: ServiceHandlers<S>,
  reporter: ErrorReporter,
  guard?: CallGuard,
): [grpc.ServiceDefinition, grpc.UntypedServiceImplementation] {
  const def: { [name: string]: grpc.MethodDefinition<Buffer, MessageShape<DescMessage> | EncodedMessage> } = {};
  const impl: grpc.UntypedServiceImplementation = {};
  const identity = (b: Buffer): Buffer => b;
  for (const key of Object.keys(service.method) as (keyof S & string)[]) {
    const method: DescMethod = service.method[key];
    const handler = handlers[key] as unknown;
    const name = methodPath(method);
    // Security's one place in the gRPC gateway (see auth.ts): authenticate the call, then admit
    // every request message. Without a guard (authentication off) requests pass as they are.
    // Then quotas (quota.ts): the call is charged, and waits, before its handler runs.
    type Decode = ((bytes: Uint8Array) => MessageShape<DescMessage>) & { quota?: CallQuota };
    const admitted = async (call: Caller): Promise<Decode> => {
      if (!guard) return (bytes) => decodeRequest(method.input, bytes);
      const auth = call.metadata.get("authorization")[0];
      // Under mutual TLS, the verified client certificate's subject (else undefined).
      const subject = call.getAuthContext()?.sslPeerCertificate?.subject;
      const admit = await guard.authenticate(name, typeof auth === "string" ? auth : undefined, subject, call.getPeer());
      const decode = (bytes: Uint8Array) => {
        const req = decodeRequest(method.input, bytes);
        admit(req);
        chargeStreamed(admit.quota, name, bytes.byteLength);
        return req;
      };
      return Object.assign(decode, { quota: admit.quota });
    };
    def[key] = {
      path: name,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: replyEncoder(method.output),
      responseDeserialize: decoder(method.output),
      originalName: method.name,
    };
    // A reply as grpc-js will send it: an EncodedMessage as it is, anything else as a message.
    const reply = (m: MessageInitShape<DescMessage> | EncodedMessage) => (m instanceof EncodedMessage ? m : create(method.output, m));
    switch (method.methodKind) {
      case "unary": {
        const h = handler as (req: MessageShape<DescMessage>, ctx: CallContext) => Promise<MessageInitShape<DescMessage> | EncodedMessage>;
        type Reply = MessageShape<DescMessage> | EncodedMessage;
        impl[key] = (call: grpc.ServerUnaryCall<Buffer, Reply>, callback: grpc.sendUnaryData<Reply>) => {
          const { ctx, done } = contextOf(call);
          void (async () => {
            try {
              const decode = await admitted(call);
              const request = decode(call.request);
              const quota = await beforeCall(decode.quota, name, call.request.byteLength, request, ctx.signal);
              try {
                const out = reply(await h(request, ctx));
                chargeReply(decode.quota, name, method.output, out);
                callback(null, out, throttleTrailer(quota.delayMs));
              } finally {
                quota.release();
              }
            } catch (e) {
              callback(refuse(reporter, name, e));
            } finally {
              done();
            }
          })();
        };
        break;
      }
      case "server_streaming": {
        type Send = (m: MessageInitShape<DescMessage> | EncodedMessage) => Promise<void>;
        const h = handler as (req: MessageShape<DescMessage>, send: Send, ctx: CallContext) => Promise<void>;
        impl[key] = (call: grpc.ServerWritableStream<Buffer, MessageShape<DescMessage> | EncodedMessage>) => {
          const { ctx, done } = contextOf(call);
          // A slow reader slows the producer of messages instead of growing memory.
          const out = new StreamWriter(call, ctx.signal, STREAM_QUEUED_BYTES_MAX);
          void (async () => {
            try {
              const decode = await admitted(call);
              const request = decode(call.request);
              const quota = await beforeCall(decode.quota, name, call.request.byteLength, request, ctx.signal);
              try {
                // Each message is charged as sent; a principal over its fetch rate waits before the next.
                const metered: Send = async (m) => {
                  const message = reply(m);
                  await out.write(message, message instanceof EncodedMessage ? message.bytes.byteLength : 0);
                  const waitMs = chargeReply(decode.quota, name, method.output, message);
                  if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
                };
                await h(request, metered, ctx);
                // A stream that ran to its deadline ends as DEADLINE_EXCEEDED, as the client's
                // own timer says; an OK sent a moment earlier would race it and could win.
                if (ctx.signal.aborted && !call.cancelled && Date.now() >= ctx.deadlineMs) {
                  call.emit("error", { code: status.DEADLINE_EXCEEDED, details: "the call's deadline passed", metadata: throttleTrailer(quota.delayMs) });
                } else {
                  call.end(throttleTrailer(quota.delayMs));
                }
              } finally {
                quota.release();
              }
            } catch (e) {
              if (!call.cancelled) call.emit("error", refuse(reporter, name, e));
            } finally {
              done();
            }
          })();
        };
        break;
      }
      case "bidi_streaming": {
        const h = handler as (stream: BidiCall<DescMessage, DescMessage>, ctx: CallContext) => Promise<void>;
        impl[key] = (call: grpc.ServerDuplexStream<Buffer, MessageShape<DescMessage>>) => {
          const { ctx, done } = contextOf(call);
          void (async () => {
            try {
              // Each message is admitted as it is decoded: a batch the principal may not
              // produce ends the stream with PERMISSION_DENIED.
              const decode = await admitted(call);
              const quota = await beforeCall(decode.quota, name, 0, null, ctx.signal);
              const stream: BidiCall<DescMessage, DescMessage> = { call, decode, create: (init) => create(method.output, init) };
              try {
                await h(stream, ctx);
              } finally {
                quota.release();
              }
              call.end(throttleTrailer(quota.delayMs));
            } catch (e) {
              if (!call.cancelled) call.emit("error", refuse(reporter, name, e));
            } finally {
              done();
            }
          })();
        };
        break;
      }
      case "client_streaming":
        throw new Error(`invariant broken: ${name} is client streaming, which the bridge does not serve yet`);
    }
  }
  return [def, impl];
}
