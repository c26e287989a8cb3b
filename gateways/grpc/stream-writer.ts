/**
 * The sending side of a server stream, bounded: a message is handed to grpc-js, and the sender
 * waits before the next while grpc-js's own queue is full (`write` returned false, until
 * 'drain') or while more than `maxQueuedBytes` of handed-over messages are not yet written out
 * (grpc-js calls a write's callback once the HTTP/2 stream took the bytes). grpc-js's queue alone
 * counts messages (16), not bytes; with the byte bound a slow reader holds at most
 * `maxQueuedBytes` plus one message on the server, whatever the message size. Messages of unknown
 * size (the generic protobuf-es path) count as 0 bytes and are bounded by the count only.
 *
 * @example
 *   const out = new StreamWriter(call, ctx.signal, 1 << 20);
 *   await out.write(message, bytes.byteLength); // returns once there is room for the next one
 */
import { TributaryError } from "../../src/errors.ts";

/** What the writer needs of a grpc-js ServerWritableStream. */
export interface WritableCall {
  write(message: unknown, callback: (error?: Error | null) => void): boolean;
  once(event: "drain", listener: () => void): unknown;
}

export class StreamWriter {
  private queued = 0;
  private full = false;
  private wake: (() => void) | null = null;

  constructor(
    private readonly call: WritableCall,
    private readonly signal: AbortSignal,
    readonly maxQueuedBytes: number,
  ) {}

  /** Bytes handed to grpc-js and not yet written to the HTTP/2 stream. */
  get queuedBytes(): number {
    return this.queued;
  }

  /** Hand `message` (`bytes` encoded bytes, 0 if unknown) over; resolves once there is room again, rejects NOT_READY when the call ends first. */
  async write(message: unknown, bytes: number): Promise<void> {
    if (this.signal.aborted) throw ended();
    this.queued += bytes;
    const accepted = this.call.write(message, () => {
      this.queued -= bytes;
      this.check();
    });
    if (!accepted && !this.full) {
      this.full = true;
      this.call.once("drain", () => {
        this.full = false;
        this.check();
      });
    }
    if (this.hasRoom()) return;
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.wake = null;
        reject(ended());
      };
      this.wake = () => {
        this.signal.removeEventListener("abort", onAbort);
        resolve();
      };
      this.signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  private hasRoom(): boolean {
    return !this.full && this.queued <= this.maxQueuedBytes;
  }

  private check(): void {
    if (this.wake && this.hasRoom()) {
      const wake = this.wake;
      this.wake = null;
      wake();
    }
  }
}

function ended(): TributaryError {
  return new TributaryError("NOT_READY", "the call has ended");
}
