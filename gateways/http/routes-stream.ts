/**
 * Live tail over Server-Sent Events:
 *   GET /v1/topics/:topic/partitions/:partition/stream?offset=&encoding=auto|base64
 *
 * One `message` event per record, `id:` its offset, `data:` the record as in a JSON fetch reply.
 * Without `offset` the stream starts at the high watermark (records produced from now on); a
 * reconnecting EventSource's Last-Event-ID resumes after the last record it saw. The handler
 * loops on broker.fetch with a long wait and the request's abort signal, writes a comment line
 * when a wait ends empty (so idle proxies and Bun's idle timeout keep the connection), and ends
 * when the client goes away. A broker error mid-stream (the offset fell out of retention, the
 * broker is closing) is sent as an `error` event with {"error":{code,message}} and ends the
 * stream. Errors before the stream starts are ordinary HTTP errors (404, 416, 503, ...).
 */
import type { Hono } from "hono";
import { streamSSE, type SSEStreamingApi } from "hono/streaming";
import type { FetchResult } from "../../src/broker.ts";
import { isTributaryError } from "../../src/errors.ts";
import type { GatewayDeps } from "./deps.ts";
import { errorBody } from "./errors.ts";
import { parseIntParam, requireIntParam } from "./params.ts";
import { recordToJson } from "./records.ts";
import { parseEncoding, partitionBounds, query } from "./routes-records.ts";

/** Longest wait of one fetch inside a stream: also the interval of keep-alive comments. */
export const STREAM_WAIT_MS = 15_000;
/** Records per fetch inside a stream; each is written (with backpressure) before the next fetch. */
const STREAM_BATCH_RECORDS = 500;

export function streamRoutes(app: Hono, { broker, streams, options }: GatewayDeps): void {
  app.get("/v1/topics/:topic/partitions/:partition/stream", async (c) => {
    const topic = c.req.param("topic");
    const partition = requireIntParam(c.req.param("partition"), "partition");
    const encoding = parseEncoding(query(c, "encoding"));
    const lastEventId = c.req.header("last-event-id");
    let offset = parseIntParam(query(c, "offset"), "offset");
    if (lastEventId !== undefined && lastEventId !== "") offset = requireIntParam(lastEventId, "Last-Event-ID") + 1;
    offset ??= partitionBounds(broker, topic, partition).highWatermark;

    const release = streams.acquire();
    let first: FetchResult;
    try {
      // Not waiting: this only proves the topic, partition and offset, so errors are HTTP statuses.
      first = await broker.fetch(topic, partition, offset, { maxRecords: STREAM_BATCH_RECORDS });
    } catch (e) {
      release();
      throw e;
    }

    const abort = new AbortController();
    const stop = () => abort.abort();
    const signal = c.req.raw.signal;
    signal.addEventListener("abort", stop, { once: true });

    const tail = async (stream: SSEStreamingApi): Promise<void> => {
      stream.onAbort(stop);
      // Bun sends the response head only with the first body bytes: without this line a client
      // would not see the stream open until the first record or keep-alive.
      await stream.write(": open\n\n");
      let r = first;
      for (;;) {
        for (const record of r.records) {
          await stream.writeSSE({ id: String(record.offset), data: JSON.stringify(recordToJson(record, encoding)) });
        }
        if (abort.signal.aborted) return;
        if (r.records.length === 0 && r !== first) await stream.write(": keep-alive\n\n");
        try {
          r = await broker.fetch(topic, partition, r.nextOffset, {
            maxRecords: STREAM_BATCH_RECORDS,
            waitMs: STREAM_WAIT_MS,
            signal: abort.signal,
          });
        } catch (e) {
          if (abort.signal.aborted) return;
          if (!isTributaryError(e)) throw e;
          await stream.writeSSE({ event: "error", data: JSON.stringify(errorBody(e.code, e.message)) });
          return;
        }
      }
    };

    return streamSSE(
      c,
      async (stream) => {
        try {
          await tail(stream);
        } finally {
          signal.removeEventListener("abort", stop);
          abort.abort();
          release();
        }
      },
      async (error) => {
        options.logger.error("SSE stream failed", { topic, partition, error });
      },
    );
  });
}
