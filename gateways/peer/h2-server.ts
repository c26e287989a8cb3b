/**
 * The peer listener: PeerService (proto/tributary/peer/v1/peer.proto) served as gRPC straight on
 * `node:http2` (the wire: grpc-wire.ts), two methods only.
 *
 * - `Frames`, a bidi stream: every request message goes to the stream's sink as it arrives; the
 *   sink writes responses with `write`. Bytes the sink refuses (it throws) end the stream with
 *   INVALID_ARGUMENT, a message over `maxMessageBytes` with RESOURCE_EXHAUSTED (grpc-js's
 *   answer to the same), and the peer's end of its half ends ours with OK.
 * - `Call`, unary: one request message, the handler's reply as one response message. A handler
 *   that throws is a bug: INTERNAL, with its message.
 * - Any other path: UNIMPLEMENTED, trailers-only.
 *
 * TLS (credentials.ts): the listener requires a client certificate from the cluster's CA, so a
 * connection without one never reaches a handler; `PeerCredentials.update` swaps the context of
 * new handshakes in place.
 *
 * Bounds: a message is at most `maxMessageBytes`; HTTP/2 session memory is capped at what the
 * peers' in-flight windows can hold; a session's stream count by HTTP/2's own setting.
 *
 * @example
 *   const server = await PeerServer.listen({ host, port, maxMessageBytes, credentials, handlers });
 *   server.port; await server.close(2_000);
 */
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { PeerService } from "../grpc/gen/tributary/peer/v1/peer_pb.ts";
import type { PeerCredentials } from "./credentials.ts";
import { encodeStatusMessage, frameMessage, GRPC_CONTENT_TYPE, MessageReader, MessageTooLarge, Status } from "./grpc-wire.ts";

export const FRAMES_PATH = `/${PeerService.typeName}/Frames`;
export const CALL_PATH = `/${PeerService.typeName}/Call`;

/** HTTP/2 flow-control window per stream and per session: a few frames' worth, not 64 KiB (the default), so a stream is not held back by WINDOW_UPDATE round trips. */
export const WINDOW_BYTES = 4 * 1024 * 1024;

/** What the Frames handler writes to, and how it ends the stream. */
export interface FramesReply {
  write(message: Uint8Array): void;
  /** Ends the stream: OK, or `code` with its message. */
  end(code?: number, message?: string): void;
}

/** One Frames stream's receiving end: messages in order, then `closed` once (peer's end, reset, or ours). */
export interface FramesSink {
  message(bytes: Uint8Array): void;
  closed(): void;
}

export interface PeerServerHandlers {
  frames(reply: FramesReply): FramesSink;
  call(request: Uint8Array): Promise<Uint8Array>;
}

export interface PeerServerOptions {
  readonly host: string;
  readonly port: number;
  readonly maxMessageBytes: number;
  /** HTTP/2 session memory cap, bytes (Node's maxSessionMemory, in MB there). */
  readonly maxSessionBytes: number;
  readonly credentials: PeerCredentials | null;
  readonly handlers: PeerServerHandlers;
}

export class PeerServer {
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly open = new Set<FramesReply>();

  private constructor(
    private readonly server: http2.Http2Server | http2.Http2SecureServer,
    readonly port: number,
    private readonly dropCredentials: () => void,
  ) {}

  static async listen(options: PeerServerOptions): Promise<PeerServer> {
    const common = {
      maxSessionMemory: Math.max(10, Math.ceil(options.maxSessionBytes / (1024 * 1024))),
      settings: { initialWindowSize: WINDOW_BYTES },
    };
    const creds = options.credentials;
    const server = creds ? http2.createSecureServer({ ...common, ...creds.server(), allowHTTP1: false }) : http2.createServer(common);
    const drop = creds ? creds.onUpdate((o) => (server as http2.Http2SecureServer).setSecureContext(o)) : () => {};
    // A TLS client that fails its handshake, or a socket that breaks, must not become an 'error' of the server.
    server.on("secureConnection", (socket: NodeJS.EventEmitter) => socket.on("error", () => {}));
    server.on("sessionError", () => {});
    server.on("tlsClientError", () => {});
    const host = options.host;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", () => {});
    const peerServer = new PeerServer(server, (server.address() as AddressInfo).port, () => void drop());
    server.on("session", (s) => peerServer.track(s));
    server.on("stream", (stream, headers) => peerServer.route(stream as http2.ServerHttp2Stream, headers, options));
    return peerServer;
  }

  /**
   * Stops listening, ends every Frames stream, lets calls in progress finish for `graceMs`, then
   * cuts what is left.
   */
  async close(graceMs: number): Promise<void> {
    this.dropCredentials();
    this.server.close();
    for (const reply of [...this.open]) reply.end();
    for (const s of this.sessions) s.close();
    const force = setTimeout(() => {
      for (const s of this.sessions) s.destroy();
    }, graceMs);
    while (this.sessions.size > 0) await new Promise<void>((r) => [...this.sessions][0]!.once("close", () => r()));
    clearTimeout(force);
  }

  private track(session: http2.ServerHttp2Session): void {
    this.sessions.add(session);
    session.on("error", () => {});
    session.once("close", () => this.sessions.delete(session));
    session.once("connect", () => widenWindow(session));
    widenWindow(session);
  }

  private route(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, options: PeerServerOptions): void {
    stream.on("error", () => {});
    const path = headers[":path"];
    const grpc = String(headers["content-type"] ?? "").startsWith(GRPC_CONTENT_TYPE);
    if (!grpc || headers[":method"] !== "POST" || (path !== FRAMES_PATH && path !== CALL_PATH)) {
      return trailersOnly(stream, Status.UNIMPLEMENTED, `no method ${String(path)} here`);
    }
    if (path === FRAMES_PATH) this.frames(stream, options);
    else this.call(stream, options);
  }

  private frames(stream: http2.ServerHttp2Stream, options: PeerServerOptions): void {
    stream.respond({ ":status": 200, "content-type": GRPC_CONTENT_TYPE }, { waitForTrailers: true });
    let ended = false;
    let sinkClosed = false;
    const reply: FramesReply = {
      write: (m) => {
        if (!ended && !stream.destroyed) stream.write(frameMessage(m));
      },
      end: (code = Status.OK, message = "") => {
        if (ended) return;
        ended = true;
        this.open.delete(reply);
        closeSink();
        finish(stream, code, message);
      },
    };
    const sink = options.handlers.frames(reply);
    const closeSink = () => {
      if (sinkClosed) return;
      sinkClosed = true;
      sink.closed();
    };
    this.open.add(reply);
    const reader = new MessageReader(options.maxMessageBytes, (m) => sink.message(m));
    stream.on("data", (chunk: Buffer) => {
      if (ended) return;
      try {
        reader.push(chunk);
      } catch (e) {
        if (e instanceof MessageTooLarge) reply.end(Status.RESOURCE_EXHAUSTED, e.message);
        else reply.end(Status.INVALID_ARGUMENT, (e as Error).message);
      }
    });
    stream.once("end", () => reply.end());
    stream.once("close", () => {
      ended = true;
      this.open.delete(reply);
      closeSink();
    });
  }

  private call(stream: http2.ServerHttp2Stream, options: PeerServerOptions): void {
    let request: Uint8Array | null = null;
    let failed = false;
    const reader = new MessageReader(options.maxMessageBytes, (m) => {
      request ??= m;
    });
    stream.on("data", (chunk: Buffer) => {
      if (failed) return;
      try {
        reader.push(chunk);
      } catch (e) {
        failed = true;
        trailersOnly(stream, e instanceof MessageTooLarge ? Status.RESOURCE_EXHAUSTED : Status.INVALID_ARGUMENT, (e as Error).message);
      }
    });
    stream.once("end", () => {
      if (failed || stream.destroyed) return;
      if (request === null || !reader.idle) return trailersOnly(stream, Status.INVALID_ARGUMENT, "a unary call needs exactly one request message");
      options.handlers.call(request).then(
        (reply) => {
          if (stream.destroyed) return;
          stream.respond({ ":status": 200, "content-type": GRPC_CONTENT_TYPE }, { waitForTrailers: true });
          stream.write(frameMessage(reply));
          finish(stream, Status.OK, "");
        },
        (e: unknown) => trailersOnly(stream, Status.INTERNAL, (e as Error)?.message ?? String(e)),
      );
    });
  }
}

/** Ends a stream whose headers went out with `waitForTrailers`: the status in the trailers. */
function finish(stream: http2.ServerHttp2Stream, code: number, message: string): void {
  if (stream.destroyed) return;
  stream.once("wantTrailers", () => {
    try {
      stream.sendTrailers({ "grpc-status": String(code), ...(message ? { "grpc-message": encodeStatusMessage(message) } : {}) });
    } catch {
      stream.close();
    }
  });
  stream.end();
}

function trailersOnly(stream: http2.ServerHttp2Stream, code: number, message: string): void {
  if (stream.destroyed || stream.headersSent) return finish(stream, code, message);
  stream.respond({ ":status": 200, "content-type": GRPC_CONTENT_TYPE, "grpc-status": String(code), "grpc-message": encodeStatusMessage(message) }, { endStream: true });
}

/** The session-wide receive window, as wide as the streams' (node:http2 has no setting for it). */
export function widenWindow(session: http2.Http2Session): void {
  try {
    if (typeof session.setLocalWindowSize === "function" && !session.connecting && !session.destroyed) session.setLocalWindowSize(WINDOW_BYTES);
  } catch {
    // A runtime without it keeps the default window: slower, not wrong.
  }
}
