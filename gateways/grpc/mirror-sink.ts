/**
 * `GrpcMirrorSink`: the Tributary sink (src/mirror/types.ts `MirrorSink`) over a central's
 * MirrorService (mirror.ts), on @grpc/grpc-js as every client here.
 *
 * - `open`, `positions`, `commitGroupOffsets`: unary calls, each with the `deadlineMs`.
 * - `send`: each send's batches are gzipped (node:zlib; `compression: "none"` sends them as they are) into one SendRequest with its own
 *   sequence (its ack carries the gzipped size as `wireBytes`, what the edge's uplink cap counts), written to one long-lived Send stream, opened on first use and again after it broke.
 *   At most `maxInflight` sends are unacknowledged; more wait for a slot (the central stops
 *   reading at grpc.stream.max.inflight anyway). A send refused by the central rejects with its
 *   TributaryError (OUT_OF_ORDER_SEQUENCE: re-open and plan again). A broken stream, or an ack
 *   missing past `deadlineMs`, rejects every pending send with a retriable error
 *   (PEER_UNAVAILABLE, REQUEST_TIMED_OUT): they may or may not have been written, which replay
 *   makes harmless; the link runner reopens.
 *
 * Security: `tls` {ca, cert?, key?} (PEM contents) for TLS, with cert and key for mutual TLS;
 * `token` goes as `authorization: Bearer <token>` on every call.
 *
 * @example
 *   const sink = new GrpcMirrorSink({ address: "central:8481", tls: { ca, cert, key }, token: null });
 *   const welcome = await sink.open({ link: "to-dc", cluster: "site7", topics: [binding] });
 *   const [ack] = await sink.send([{ source, fromOffset: 120, batches, gaps: [] }]);
 */
import { create, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { gzipSync } from "node:zlib";
import { ERROR_CODES, TributaryError, type ErrorCode } from "../../src/errors.ts";
import type { SourcePositions } from "../../src/mirror/central.ts";
import type { GroupOffsetCommit, GroupOffsetResult, LinkHello, MirrorAck, MirrorSink, SourceSend, TopicWelcome } from "../../src/mirror/types.ts";
import { decoder, encoder, methodPath } from "./bridge.ts";
import { connect, unary } from "./client.ts";
import { ERROR_CODE_TRAILER } from "./errors.ts";
import {
  Compression,
  MirrorService,
  SendRequestSchema,
  type SendRequest,
  type SendResponse,
} from "./gen/tributary/mirror/v1/mirror_pb.ts";
import { GAP_REASONS, MIRROR_DISABLED_MESSAGE } from "./mirror.ts";

export interface MirrorSinkTls {
  /** PEM CA certificates the central's certificate must chain to. */
  readonly ca: string;
  /** PEM client certificate and key, for mutual TLS. */
  readonly cert?: string;
  readonly key?: string;
}

export interface GrpcMirrorSinkOptions {
  /** host:port of the central's gRPC listener. */
  readonly address: string;
  readonly tls: MirrorSinkTls | null;
  /** Bearer token; null: none (plain, or mutual TLS alone). */
  readonly token?: string | null;
  /** Sends unacknowledged at once. Default 32. */
  readonly maxInflight?: number;
  /** Longest wait for a unary call's answer or a send's ack. Default 30 s. */
  readonly deadlineMs?: number;
  /** Largest message either way (the central's grpc.max.message.bytes). Default 8 MiB. */
  readonly maxMessageBytes?: number;
  /** How each send's payload travels. Default gzip. */
  readonly compression?: "gzip" | "none";
}

interface Pending {
  readonly source: SourceSend["source"];
  /** The gzipped payload's size, reported in the ack (the edge's uplink cap counts it). */
  readonly wireBytes: number;
  readonly resolve: (ack: MirrorAck) => void;
  readonly reject: (e: unknown) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

type SendStream = grpc.ClientDuplexStream<SendRequest, SendResponse>;

const SEND = MirrorService.method.send;

export class GrpcMirrorSink implements MirrorSink {
  private readonly client: grpc.Client;
  private readonly maxInflight: number;
  private readonly deadlineMs: number;
  private readonly maxMessageBytes: number;
  private stream: SendStream | null = null;
  private readonly pending = new Map<bigint, Pending>();
  private slotWaiters: (() => void)[] = [];
  private sequence = 0n;
  private closed = false;

  constructor(private readonly options: GrpcMirrorSinkOptions) {
    this.maxInflight = positive(options.maxInflight ?? 32, "maxInflight");
    this.deadlineMs = positive(options.deadlineMs ?? 30_000, "deadlineMs");
    this.maxMessageBytes = positive(options.maxMessageBytes ?? 8 * 1024 * 1024, "maxMessageBytes");
    // connect (client.ts) dials TLS to an IP address too (channel.ts).
    const channelOptions = { "grpc.max_send_message_length": this.maxMessageBytes, "grpc.max_receive_message_length": this.maxMessageBytes };
    this.client = connect(options.address, channelOptions, options.tls);
  }

  async open(hello: LinkHello): Promise<TopicWelcome[]> {
    const res = await this.unary(MirrorService.method.open, { link: hello.link, cluster: hello.cluster, topics: hello.topics.map((t) => ({ ...t, config: { ...t.config } })) });
    return res.topics.map((w): TopicWelcome =>
      w.errorCode === "" ? { sourceTopic: w.sourceTopic, ok: true, targetTopicId: w.targetTopicId, positions: w.positions.map(position) } : { sourceTopic: w.sourceTopic, ok: false, code: w.errorCode, message: w.message },
    );
  }

  /** The central's positions for `cluster`'s topics (all, or those named), without binding anything. */
  async positions(cluster: string, sourceTopics: readonly string[] = []): Promise<SourcePositions[]> {
    const res = await this.unary(MirrorService.method.positions, { cluster, sourceTopics: [...sourceTopics] });
    return res.topics.map((t) => ({ sourceTopic: t.sourceTopic, target: t.target, targetTopicId: t.targetTopicId, positions: t.positions.map(position) }));
  }

  async commitGroupOffsets(cluster: string, commits: readonly GroupOffsetCommit[]): Promise<GroupOffsetResult[]> {
    const offsets = commits.map((c) => ({ group: c.group, sourceTopic: c.sourceTopic, partition: c.partition, sourceOffset: BigInt(c.sourceOffset), metadata: c.metadata }));
    const res = await this.unary(MirrorService.method.commitGroupOffsets, { cluster, offsets });
    if (res.results.length !== commits.length) throw new TributaryError("INVALID_REQUEST", `the central answered ${res.results.length} group offset results for ${commits.length} commits`);
    return res.results.map((r, i): GroupOffsetResult => {
      const commit = commits[i]!;
      if (r.errorCode !== "") return { ok: false, commit, pending: false, code: r.errorCode, message: r.errorMessage };
      if (r.pending) return { ok: false, commit, pending: true };
      return { ok: true, commit, targetOffset: Number(r.targetOffset) };
    });
  }

  /** One ack per send, in order; rejects with the first refusal (the others may have been written: replays are harmless). */
  send(sends: readonly SourceSend[]): Promise<MirrorAck[]> {
    return Promise.all(sends.map((s) => this.sendOne(s)));
  }

  private async sendOne(send: SourceSend): Promise<MirrorAck> {
    const gzip = this.options.compression !== "none";
    const payload = gzip ? new Uint8Array(gzipSync(send.batches)) : send.batches;
    if (payload.length > this.maxMessageBytes - 1024) {
      throw new TributaryError("RECORD_TOO_LARGE", `a mirror send of ${send.source.topic}/${send.source.partition} is ${payload.length} bytes${gzip ? " gzipped" : ""}, over the message limit ${this.maxMessageBytes}: send fewer batches at once`);
    }
    while (this.pending.size >= this.maxInflight && !this.closed) await new Promise<void>((r) => this.slotWaiters.push(r));
    if (this.closed) throw closedError();
    const stream = this.stream ?? this.openStream();
    const sequence = ++this.sequence;
    const request = create(SendRequestSchema, {
      sequence,
      cluster: send.source.cluster,
      sourceTopic: send.source.topic,
      partition: send.source.partition,
      fromOffset: BigInt(send.fromOffset),
      batches: payload,
      compression: gzip ? Compression.GZIP : Compression.UNSPECIFIED,
      gaps: send.gaps.map((g) => ({ from: BigInt(g.from), to: BigInt(g.to), reason: GAP_REASONS[g.reason] })),
    });
    return new Promise<MirrorAck>((resolve, reject) => {
      const timer = setTimeout(() => this.broken(stream, new TributaryError("REQUEST_TIMED_OUT", `no acknowledgement from the central within ${this.deadlineMs} ms; the send may or may not be written`)), this.deadlineMs);
      this.pending.set(sequence, { source: send.source, wireBytes: payload.length, resolve, reject, timer });
      stream.write(request);
    });
  }

  private openStream(): SendStream {
    const stream: SendStream = this.client.makeBidiStreamRequest(methodPath(SEND), encoder(SEND.input), decoder(SEND.output), this.metadata(), {});
    stream.on("data", (ack: SendResponse) => this.acked(ack));
    stream.on("error", (e: grpc.ServiceError) => this.broken(stream, callError("MirrorService.Send", e)));
    stream.on("end", () => this.broken(stream, new TributaryError("PEER_UNAVAILABLE", "the central ended the mirror stream")));
    this.stream = stream;
    return stream;
  }

  private acked(ack: SendResponse): void {
    const p = this.pending.get(ack.sequence);
    if (!p) return; // its stream broke and it was rejected already
    this.settle(ack.sequence, p);
    if (ack.errorCode !== "") p.reject(refusal(ack.errorCode, ack.errorMessage));
    else p.resolve({ source: p.source, position: Number(ack.position), wireBytes: p.wireBytes });
  }

  /** Reject every pending send of a stream that broke; the next send opens a new one. */
  private broken(stream: SendStream, error: unknown): void {
    if (this.stream !== stream) return;
    this.stream = null;
    stream.cancel();
    for (const [sequence, p] of [...this.pending]) {
      this.settle(sequence, p);
      p.reject(error);
    }
  }

  private settle(sequence: bigint, p: Pending): void {
    clearTimeout(p.timer);
    this.pending.delete(sequence);
    this.slotWaiters.shift()?.();
  }

  private metadata(): grpc.Metadata {
    const m = new grpc.Metadata();
    if (this.options.token) m.set("authorization", `Bearer ${this.options.token}`);
    return m;
  }

  private async unary<I extends DescMessage, O extends DescMessage>(method: DescMethod & { methodKind: "unary"; input: I; output: O }, request: MessageInitShape<I>): Promise<MessageShape<O>> {
    if (this.closed) throw closedError();
    try {
      return await unary(this.client, method, request, { timeoutMs: this.deadlineMs, metadata: this.metadata() });
    } catch (e) {
      throw callError(`MirrorService.${method.name}`, e as grpc.ServiceError);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const stream = this.stream;
    if (stream) this.broken(stream, closedError());
    for (const w of this.slotWaiters.splice(0)) w();
    this.client.close();
  }
}

function position(p: bigint): number | null {
  return p < 0n ? null : Number(p);
}

function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new TributaryError("INVALID_CONFIG", `mirror sink: ${name} must be a positive integer, got ${String(n)}`);
  return n;
}

function closedError(): TributaryError {
  return new TributaryError("NOT_READY", "the mirror sink is closed");
}

/** The central's refusal: its TributaryError, or a plain Error for a code this version does not know. */
function refusal(code: string, message: string): Error {
  if ((ERROR_CODES as readonly string[]).includes(code)) return new TributaryError(code as ErrorCode, message);
  return new Error(`the central refused with unknown code ${code}: ${message}`);
}

/** A failed call: the central's refusal when it sent one, else retriable (it may have run). */
function callError(what: string, err: grpc.ServiceError | null): Error {
  const code = err?.metadata?.get(ERROR_CODE_TRAILER)[0];
  if (typeof code === "string" && code !== "INTERNAL") return refusal(code, err?.details ?? "");
  if (err?.code === grpc.status.UNIMPLEMENTED) return new TributaryError("INVALID_CONFIG", `${what}: ${err.details || MIRROR_DISABLED_MESSAGE}`, { cause: err });
  if (err?.code === grpc.status.DEADLINE_EXCEEDED) return new TributaryError("REQUEST_TIMED_OUT", `${what}: the central did not answer in time; it may have run`, { cause: err });
  if (err?.code === grpc.status.RESOURCE_EXHAUSTED) return new TributaryError("RECORD_TOO_LARGE", `${what}: ${err.details}`, { cause: err });
  return new TributaryError("PEER_UNAVAILABLE", `${what}: the central is out of reach (${err?.details ?? "no answer"})`, { cause: err });
}
