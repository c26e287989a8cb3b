/**
 * The gRPC wire format the peer transport speaks on `node:http2` directly (h2-server.ts,
 * h2-client.ts), without grpc-js: grpc-js costs about 150 µs of CPU per message on each side
 * (its filter chain, a promise per message, the copy into each framed message, pause/resume
 * around every read), which a Raft frame of one small entry pays four times per follower per
 * write. The wire stays gRPC (PROTOCOL-HTTP2 in grpc/grpc's docs), so a grpc-js peer of the
 * same protocol interoperates.
 *
 * A message on a stream is a 5-byte prefix, a compressed flag (always 0 here: we never compress
 * peer traffic and refuse compressed messages) and a big-endian uint32 length, then the bytes.
 * A call's outcome is `grpc-status` (and `grpc-message`, percent-encoded) in the trailers, or in
 * the response headers of a trailers-only response.
 *
 * @example
 *   stream.write(frameMessage(bytes));
 *   const reader = new MessageReader(maxBytes, (m) => handle(m));
 *   stream.on("data", (chunk) => reader.push(chunk)); // throws MessageTooLarge / INVALID_REQUEST
 */
import { TributaryError } from "../../src/errors.ts";

/** The gRPC status codes this transport sends or reads. */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

export const GRPC_CONTENT_TYPE = "application/grpc";
/** gRPC's message prefix: a compressed flag, then the length (big-endian u32). */
export const PREFIX_BYTES = 5;

/** `payload` behind its gRPC message prefix, in one buffer. */
export function frameMessage(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(PREFIX_BYTES + payload.byteLength);
  out.set(payload, PREFIX_BYTES);
  return prefixInPlace(out);
}

/** A message encoded after PREFIX_BYTES of headroom: writes its prefix there, no copy. */
export function prefixInPlace(buf: Uint8Array): Buffer {
  const out = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  out[0] = 0;
  out.writeUInt32BE(buf.byteLength - PREFIX_BYTES, 1);
  return out;
}

/** A message over the receiver's limit: the stream ends with RESOURCE_EXHAUSTED, as grpc-js does. */
export class MessageTooLarge extends Error {
  constructor(readonly bytes: number, readonly limit: number) {
    super(`a ${bytes}-byte message is over the limit of ${limit}`);
  }
}

/**
 * Splits a stream's DATA chunks into messages. Each message is handed over as its own copy (one
 * allocation of its exact size), never as a view of a chunk: a chunk may hold the tails and heads
 * of several messages, and a small entry kept by the Raft log must not pin a 16 KiB chunk.
 */
export class MessageReader {
  private header = Buffer.alloc(PREFIX_BYTES);
  private headerFill = 0;
  private body: Uint8Array | null = null;
  private bodyFill = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly onMessage: (message: Uint8Array) => void,
  ) {}

  /** True between messages: nothing of a next one has arrived. */
  get idle(): boolean {
    return this.headerFill === 0 && this.body === null;
  }

  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.body === null) {
        const take = Math.min(PREFIX_BYTES - this.headerFill, chunk.length - at);
        this.header.set(chunk.subarray(at, at + take), this.headerFill);
        this.headerFill += take;
        at += take;
        if (this.headerFill < PREFIX_BYTES) return;
        this.start();
        if (this.body === null) continue;
      }
      const body: Uint8Array = this.body;
      const take = Math.min(body.length - this.bodyFill, chunk.length - at);
      body.set(chunk.subarray(at, at + take), this.bodyFill);
      this.bodyFill += take;
      at += take;
      if (this.bodyFill === body.length) this.finish();
    }
  }

  private start(): void {
    if (this.header[0] !== 0) throw new TributaryError("INVALID_REQUEST", "a compressed message: the peer protocol does not compress");
    const length = this.header.readUInt32BE(1);
    if (length > this.maxBytes) throw new MessageTooLarge(length, this.maxBytes);
    this.headerFill = 0;
    this.body = new Uint8Array(length);
    this.bodyFill = 0;
    if (length === 0) this.finish();
  }

  private finish(): void {
    const message = this.body!;
    this.body = null;
    this.onMessage(message);
  }
}

/** The `grpc-timeout` header for `ms` from now (whole milliseconds, at least 1). */
export function grpcTimeout(ms: number): string {
  return `${Math.max(1, Math.ceil(ms))}m`;
}

/** `grpc-message` is percent-encoded on the wire (non-ASCII and `%`). */
export function encodeStatusMessage(message: string): string {
  return encodeURIComponent(message).replace(/%20/g, " ");
}

export function decodeStatusMessage(value: unknown): string {
  if (typeof value !== "string") return "";
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
