/**
 * The sending side of the peer transport, one `PeerLink` per remote peer: a grpc-js channel, the
 * one Frames stream to that peer, and unary Calls.
 *
 * The stream is opened lazily by the first frame and counts frames written and not yet
 * acknowledged (one response may answer several: receiver.ts); at `maxInflightFrames` a frame is
 * refused (the caller drops and counts it). When
 * the stream breaks (error, or the peer ends it) the unacknowledged frames are forgotten (Raft
 * resends) and the stream is not reopened before a backoff has passed: 100 ms doubling to 2 s,
 * each wait drawn in [backoff/2, backoff) so peers that lost one another together do not
 * reconnect in lockstep; an acknowledgement resets it. The channel's own reconnect backoff is
 * bounded the same way, or grpc-js would wait up to two minutes before it tried again.
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { ERROR_CODES, TributaryError, type ErrorCode } from "../../src/errors.ts";
import type { PeerInfo, TransportLimits } from "../../src/cluster/types.ts";
import type { Clock } from "../../src/runtime/clock.ts";
import { decoder, encoder, methodPath } from "../grpc/bridge.ts";
import { dial, type SecureCredentials } from "../grpc/channel.ts";
import { ERROR_CODE_TRAILER } from "../grpc/errors.ts";
import { CallRequestSchema, PeerService, type CallResponse, type FramesResponse } from "../grpc/gen/tributary/peer/v1/peer_pb.ts";

export const INITIAL_BACKOFF_MS = 100;
export const MAX_BACKOFF_MS = 2_000;
/** Pings on an idle channel, so a peer that vanished without a FIN is noticed within seconds. */
const KEEPALIVE_MS = 10_000;
const KEEPALIVE_TIMEOUT_MS = 5_000;

export type DropReason = "inflight" | "disconnected";

export interface LinkEnv {
  readonly self: number;
  readonly limits: TransportLimits;
  /** TLS for each link's channel (credentials.ts); null: plain text. */
  readonly credentials: SecureCredentials | null;
  readonly clock: Clock;
  readonly random: () => number;
  /** The stream broke: the driver should hear that the peer is unreachable. */
  readonly onBroken: (peer: number) => void;
}

type FramesStream = grpc.ClientDuplexStream<Buffer, FramesResponse>;

const FRAMES = methodPath(PeerService.method.frames);
const CALL = methodPath(PeerService.method.call);
const writeRaw = (b: Buffer): Buffer => b;
const readAck = decoder(PeerService.method.frames.output);
const writeCall = encoder(PeerService.method.call.input);
const readCall = decoder(PeerService.method.call.output);

export class PeerLink {
  private readonly client: grpc.Client;
  private stream: FramesStream | null = null;
  private inflight = 0;
  private inflightBytes = 0;
  /** Sizes of the unanswered frames, oldest first. */
  private sizes: number[] = [];
  private backoffMs = INITIAL_BACKOFF_MS;
  private retryAtMs = 0;
  private closed = false;

  constructor(
    readonly peer: PeerInfo,
    private readonly env: LinkEnv,
  ) {
    // dial, not new grpc.Client: it makes TLS to a peer named by IP address work on Bun (channel.ts).
    this.client = dial(peer.address, env.credentials, {
      "grpc.max_send_message_length": env.limits.maxFrameBytes,
      "grpc.max_receive_message_length": env.limits.maxFrameBytes,
      "grpc.initial_reconnect_backoff_ms": INITIAL_BACKOFF_MS,
      "grpc.max_reconnect_backoff_ms": MAX_BACKOFF_MS,
      "grpc.keepalive_time_ms": KEEPALIVE_MS,
      "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
      "grpc.keepalive_permit_without_calls": 1,
    });
  }

  /** Writes one encoded FramesRequest, or says why it cannot go. Never waits. */
  send(frame: Buffer): DropReason | null {
    if (this.closed) return "disconnected";
    const stream = this.stream ?? this.open();
    if (!stream) return "disconnected";
    if (this.inflight >= this.env.limits.maxInflightFrames) return "inflight";
    // One frame always goes (a frame is at most maxFrameBytes); past the byte window, drop.
    if (this.inflight > 0 && this.inflightBytes + frame.byteLength > (this.env.limits.maxInflightBytes ?? Infinity)) return "inflight";
    this.inflight++;
    this.inflightBytes += frame.byteLength;
    this.sizes.push(frame.byteLength);
    stream.write(frame);
    return null;
  }

  /** A unary Call with the deadline (epoch ms); the handler's refusal is rethrown as it was. */
  call(method: string, body: Uint8Array, deadlineMs: number): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new TributaryError("NOT_READY", "the peer transport is closed"));
    // Nothing is sent past the deadline, so nothing can have run: not an unknown outcome.
    if (deadlineMs <= this.env.clock.now()) return Promise.reject(new TributaryError("PEER_UNAVAILABLE", `the deadline of ${method} to peer ${this.peer.id} has passed`));
    const request = create(CallRequestSchema, { from: this.env.self, method, body });
    // On a connected channel a failed call may have reached the peer and run; on one still
    // connecting, grpc-js fails it before anything is sent.
    const connected = this.client.getChannel().getConnectivityState(false) === grpc.connectivityState.READY;
    return new Promise((resolve, reject) => {
      const done = (err: grpc.ServiceError | null, res?: CallResponse) => {
        if (err || !res) return reject(this.callError(method, err, connected));
        if (res.errorCode === "") return resolve(res.body);
        reject(refusal(res.errorCode, res.errorMessage));
      };
      this.client.makeUnaryRequest(CALL, writeCall, readCall, request, new grpc.Metadata(), { deadline: new Date(deadlineMs) }, done);
    });
  }

  private resetWindow(): void {
    this.inflight = 0;
    this.inflightBytes = 0;
    this.sizes = [];
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stream?.end();
    this.stream = null;
    this.client.close();
  }

  private open(): FramesStream | null {
    if (this.env.clock.now() < this.retryAtMs) return null;
    const stream: FramesStream = this.client.makeBidiStreamRequest(FRAMES, writeRaw, readAck, new grpc.Metadata(), {});
    stream.on("data", (ack: FramesResponse) => {
      if (this.stream !== stream) return;
      // Acks come in frame order (one stream): the oldest `frames` unanswered frames were answered.
      const answered = Math.min(Math.max(ack.frames, 1), this.sizes.length);
      for (const size of this.sizes.splice(0, answered)) this.inflightBytes -= size;
      this.inflight = this.sizes.length;
      this.backoffMs = INITIAL_BACKOFF_MS;
    });
    const broken = () => this.broken(stream);
    stream.on("error", broken); // also keeps a failed call from being an unhandled 'error'
    stream.on("status", broken);
    stream.on("end", broken);
    this.stream = stream;
    this.resetWindow();
    return stream;
  }

  private broken(stream: FramesStream): void {
    if (this.stream !== stream) return;
    this.stream = null;
    this.resetWindow();
    stream.cancel();
    const waitMs = this.backoffMs / 2 + (this.env.random() * this.backoffMs) / 2;
    this.retryAtMs = this.env.clock.now() + waitMs;
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    if (!this.closed) this.env.onBroken(this.peer.id);
  }

  private callError(method: string, err: grpc.ServiceError | null, connected: boolean): Error {
    const what = `peer ${this.peer.id} (${this.peer.address}) ${method}`;
    const code = err?.metadata?.get(ERROR_CODE_TRAILER)[0];
    if (typeof code === "string" && code !== "INTERNAL") return refusal(code, err?.details ?? "");
    if (err?.code === grpc.status.INTERNAL) return new Error(`${what} failed: ${err.details}`, { cause: err });
    if (err?.code === grpc.status.RESOURCE_EXHAUSTED) return new TributaryError("RECORD_TOO_LARGE", `${what}: ${err.details}`, { cause: err });
    // The request may have arrived and run: the caller must not assume it did not.
    if (err?.code === grpc.status.DEADLINE_EXCEEDED) return new TributaryError("REQUEST_TIMED_OUT", `${what} did not answer before the deadline; it may have run`, { cause: err });
    if (connected) return new TributaryError("REQUEST_TIMED_OUT", `${what} broke off (${err?.details ?? "no reply"}); it may have run`, { cause: err });
    return new TributaryError("PEER_UNAVAILABLE", `${what} did not answer: ${err?.details ?? "no reply"}`, { cause: err });
  }
}

/** A refusal from the peer: its TributaryError, or a plain Error for a code this version does not know. */
function refusal(code: string, message: string): Error {
  if ((ERROR_CODES as readonly string[]).includes(code)) return new TributaryError(code as ErrorCode, message);
  return new Error(`a peer refused with unknown code ${code}: ${message}`);
}
