/**
 * The sending side of the peer transport, one `PeerLink` per remote peer: its HTTP/2 connection
 * (h2-client.ts), the one Frames stream to that peer, and unary Calls, on the gRPC wire
 * (grpc-wire.ts).
 *
 * The stream is opened lazily by the first frame and counts frames written and not yet
 * acknowledged (one response may answer several: receiver.ts); at `maxInflightFrames` (or past
 * `maxInflightBytes`) a frame is refused (the caller drops and counts it). Frames written while
 * the connection is still being made wait in the stream's write buffer (they count in the window
 * all the same). When the stream breaks (error, reset, the peer ends it, the connection fails or
 * dies) the unacknowledged frames are forgotten (Raft resends) and the stream is not reopened
 * before a backoff has passed: 100 ms doubling to 2 s, each wait drawn in [backoff/2, backoff) so
 * peers that lost one another together do not reconnect in lockstep; an acknowledgement resets it.
 */
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import type * as http2 from "node:http2";
import { ERROR_CODES, TributaryError, type ErrorCode } from "../../src/errors.ts";
import type { PeerInfo, TransportLimits } from "../../src/cluster/types.ts";
import type { Logger } from "../../src/logger.ts";
import type { Clock } from "../../src/runtime/clock.ts";
import { CallRequestSchema, CallResponseSchema, FramesResponseSchema } from "../grpc/gen/tributary/peer/v1/peer_pb.ts";
import type { PeerCredentials } from "./credentials.ts";
import { decodeStatusMessage, frameMessage, GRPC_CONTENT_TYPE, grpcTimeout, MessageReader, prefixInPlace, PREFIX_BYTES, Status } from "./grpc-wire.ts";
import { INITIAL_BACKOFF_MS, MAX_BACKOFF_MS, PeerConnection } from "./h2-client.ts";
import { CALL_PATH, FRAMES_PATH } from "./h2-server.ts";

export { INITIAL_BACKOFF_MS, MAX_BACKOFF_MS } from "./h2-client.ts";

export type DropReason = "inflight" | "disconnected";

export interface LinkEnv {
  readonly self: number;
  readonly limits: TransportLimits;
  /** TLS for each link's connection; null: plain text. */
  readonly credentials: PeerCredentials | null;
  readonly clock: Clock;
  readonly random: () => number;
  /** The stream broke: the driver should hear that the peer is unreachable. */
  readonly onBroken: (peer: number) => void;
  readonly logger?: Logger;
}

/** A link that keeps failing to connect logs it again at most this often (a new reason is logged at once). */
const CONNECT_LOG_EVERY_MS = 30_000;

/** A Frames stream: writes go to `stream` once the connection is up, to `queued` before. */
interface FramesStream {
  stream: http2.ClientHttp2Stream | null;
  queued: Buffer[];
  dead: boolean;
}

const ACK_MAX_BYTES = 64;

export class PeerLink {
  private readonly connection: PeerConnection;
  private frames: FramesStream | null = null;
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
    const l = env.limits;
    this.connection = new PeerConnection(peer.address, {
      credentials: env.credentials,
      clock: env.clock,
      random: env.random,
      maxSessionBytes: 2 * (l.maxInflightBytes ?? l.maxFrameBytes * l.maxInflightFrames),
      onConnectResult: (e) => this.logConnect(e),
    });
  }

  private failing: { reason: string; loggedAtMs: number; failures: number } | null = null;

  /** Why a peer cannot be reached is the operator's first question (a certificate, a firewall): log it, not every retry. */
  private logConnect(error: Error | null): void {
    const log = this.env.logger;
    const fields = { peer: this.peer.id, address: this.peer.address };
    if (error === null) {
      if (this.failing) log?.info("peer link connected", { ...fields, failedAttempts: this.failing.failures });
      this.failing = null;
      return;
    }
    const code = (error as { code?: unknown }).code;
    const reason = `${typeof code === "string" ? `${code}: ` : ""}${error.message}`;
    const now = this.env.clock.now();
    const f = this.failing;
    if (f && f.reason === reason && now - f.loggedAtMs < CONNECT_LOG_EVERY_MS) {
      f.failures++;
      return;
    }
    log?.warn("peer link cannot connect", { ...fields, error: reason, failedAttempts: (f?.failures ?? 0) + 1 });
    this.failing = { reason, loggedAtMs: now, failures: (f?.failures ?? 0) + 1 };
  }

  /**
   * Writes one FramesRequest, encoded after PREFIX_BYTES of headroom (`encodeFrame(from, frame,
   * PREFIX_BYTES)`: its gRPC prefix goes there, so the frame is not copied), or says why it
   * cannot go. Never waits.
   */
  send(withHeadroom: Uint8Array): DropReason | null {
    if (this.closed) return "disconnected";
    const frames = this.frames ?? this.open();
    if (!frames) return "disconnected";
    if (this.inflight >= this.env.limits.maxInflightFrames) return "inflight";
    const size = withHeadroom.byteLength - PREFIX_BYTES;
    // One frame always goes (a frame is at most maxFrameBytes); past the byte window, drop.
    if (this.inflight > 0 && this.inflightBytes + size > (this.env.limits.maxInflightBytes ?? Infinity)) return "inflight";
    this.inflight++;
    this.inflightBytes += size;
    this.sizes.push(size);
    const framed = prefixInPlace(withHeadroom);
    if (frames.stream) frames.stream.write(framed);
    else frames.queued.push(framed);
    return null;
  }

  /** A unary Call with the deadline (epoch ms); the handler's refusal is rethrown as it was. */
  async call(method: string, body: Uint8Array, deadlineMs: number): Promise<Uint8Array> {
    if (this.closed) throw new TributaryError("NOT_READY", "the peer transport is closed");
    const what = `peer ${this.peer.id} (${this.peer.address}) ${method}`;
    // Nothing is sent past the deadline, so nothing can have run: not an unknown outcome.
    if (deadlineMs <= this.env.clock.now()) throw new TributaryError("PEER_UNAVAILABLE", `the deadline of ${method} to peer ${this.peer.id} has passed`);
    const session = await this.connection.session().catch((e: unknown) => {
      throw e instanceof TributaryError && e.code === "NOT_READY" ? e : new TributaryError("PEER_UNAVAILABLE", `${what} did not answer: ${(e as Error).message}`, { cause: e });
    });
    const left = deadlineMs - this.env.clock.now();
    if (left <= 0) throw new TributaryError("PEER_UNAVAILABLE", `the deadline of ${method} to peer ${this.peer.id} passed while connecting`);
    const request = toBinary(CallRequestSchema, create(CallRequestSchema, { from: this.env.self, method, body }));
    const reply = await unary(session, frameMessage(request), left, this.env.limits.maxFrameBytes, this.env.clock).catch((e: unknown) => {
      throw callError(what, e as UnaryFailure);
    });
    const res = fromBinary(CallResponseSchema, reply);
    if (res.errorCode === "") return res.body;
    throw refusal(res.errorCode, res.errorMessage);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const frames = this.frames;
    this.frames = null;
    if (frames) {
      frames.dead = true;
      frames.stream?.end();
    }
    this.connection.close();
  }

  private resetWindow(): void {
    this.inflight = 0;
    this.inflightBytes = 0;
    this.sizes = [];
  }

  private open(): FramesStream | null {
    if (this.env.clock.now() < this.retryAtMs) return null;
    const frames: FramesStream = { stream: null, queued: [], dead: false };
    this.frames = frames;
    this.resetWindow();
    this.connection.session().then(
      (session) => this.attach(frames, session),
      () => this.broken(frames),
    );
    return frames;
  }

  private attach(frames: FramesStream, session: http2.ClientHttp2Session): void {
    if (frames.dead) return;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request({ ":method": "POST", ":path": FRAMES_PATH, "content-type": GRPC_CONTENT_TYPE, te: "trailers" });
    } catch {
      return this.broken(frames);
    }
    frames.stream = stream;
    for (const b of frames.queued) stream.write(b);
    frames.queued = [];
    const reader = new MessageReader(ACK_MAX_BYTES, (bytes) => this.acked(frames, bytes));
    stream.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch {
        this.broken(frames);
      }
    });
    const broken = () => this.broken(frames);
    stream.on("error", broken);
    stream.on("response", (headers) => {
      if (headers["grpc-status"] !== undefined) broken(); // trailers-only: the peer refused the stream
    });
    stream.on("trailers", broken);
    stream.on("end", broken);
    stream.on("close", broken);
  }

  private acked(frames: FramesStream, bytes: Uint8Array): void {
    if (this.frames !== frames) return;
    const ack = fromBinary(FramesResponseSchema, bytes);
    // Acks come in frame order (one stream): the oldest `frames` unanswered frames were answered.
    const answered = Math.min(Math.max(ack.frames, 1), this.sizes.length);
    for (const size of this.sizes.splice(0, answered)) this.inflightBytes -= size;
    this.inflight = this.sizes.length;
    this.backoffMs = INITIAL_BACKOFF_MS;
  }

  private broken(frames: FramesStream): void {
    if (frames.dead) return;
    frames.dead = true;
    frames.queued = [];
    if (frames.stream && !frames.stream.destroyed) frames.stream.close();
    if (this.frames !== frames) return;
    this.frames = null;
    this.resetWindow();
    const waitMs = this.backoffMs / 2 + (this.env.random() * this.backoffMs) / 2;
    this.retryAtMs = this.env.clock.now() + waitMs;
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    if (!this.closed) this.env.onBroken(this.peer.id);
  }
}

/** How a unary call failed: a gRPC status from the peer, or the stream broke (after the request may have gone out), or the deadline. */
interface UnaryFailure {
  kind: "status" | "broken" | "deadline";
  code?: number;
  message: string;
}

/** One request message out, one response message back, within `timeoutMs`. */
function unary(session: http2.ClientHttp2Session, request: Buffer, timeoutMs: number, maxBytes: number, clock: Clock): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    let reply: Uint8Array | null = null;
    let settled = false;
    let stream: http2.ClientHttp2Stream;
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      cancelTimer();
      if (!stream.destroyed) stream.close();
      f();
    };
    const status = (headers: http2.IncomingHttpHeaders) => {
      const code = Number(headers["grpc-status"]);
      const message = decodeStatusMessage(headers["grpc-message"]);
      if (code === Status.OK && reply !== null) settle(() => resolve(reply!));
      else if (code === Status.OK) settle(() => reject({ kind: "status", code: Status.INTERNAL, message: "no response message" } satisfies UnaryFailure));
      else settle(() => reject({ kind: "status", code, message } satisfies UnaryFailure));
    };
    try {
      stream = session.request({ ":method": "POST", ":path": CALL_PATH, "content-type": GRPC_CONTENT_TYPE, te: "trailers", "grpc-timeout": grpcTimeout(timeoutMs) });
    } catch (e) {
      return reject({ kind: "broken", message: (e as Error).message } satisfies UnaryFailure);
    }
    const cancelTimer = clock.setTimer(timeoutMs, () => settle(() => reject({ kind: "deadline", message: "deadline exceeded" } satisfies UnaryFailure)));
    const reader = new MessageReader(maxBytes, (m) => {
      reply ??= m;
    });
    stream.on("response", (headers) => {
      if (headers["grpc-status"] !== undefined) status(headers);
    });
    stream.on("trailers", status);
    stream.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (e) {
        settle(() => reject({ kind: "status", code: Status.RESOURCE_EXHAUSTED, message: (e as Error).message } satisfies UnaryFailure));
      }
    });
    const broke = (e?: unknown) => settle(() => reject({ kind: "broken", message: (e as Error)?.message ?? "the stream closed without a status" } satisfies UnaryFailure));
    stream.on("error", broke);
    stream.on("close", () => broke());
    stream.end(request);
  });
}

function callError(what: string, f: UnaryFailure): Error {
  if (f.kind === "status" && f.code === Status.INTERNAL) return new Error(`${what} failed: ${f.message}`);
  if (f.kind === "status" && f.code === Status.RESOURCE_EXHAUSTED) return new TributaryError("RECORD_TOO_LARGE", `${what}: ${f.message}`);
  // The request may have arrived and run: the caller must not assume it did not.
  if (f.kind === "deadline") return new TributaryError("REQUEST_TIMED_OUT", `${what} did not answer before the deadline; it may have run`);
  return new TributaryError("REQUEST_TIMED_OUT", `${what} broke off (${f.message}); it may have run`);
}

/** A refusal from the peer: its TributaryError, or a plain Error for a code this version does not know. */
function refusal(code: string, message: string): Error {
  if ((ERROR_CODES as readonly string[]).includes(code)) return new TributaryError(code as ErrorCode, message);
  return new Error(`a peer refused with unknown code ${code}: ${message}`);
}
