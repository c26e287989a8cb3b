/**
 * NATS JetStream load generator, run as its own Bun process (like bench/vs-grpc-load.ts for
 * Tributary) with the official client (@nats-io/jetstream over @nats-io/transport-node).
 *
 *   publish: keeps INFLIGHT `js.publish` calls outstanding for DURATION_MS, each one message of
 *     RECORD_BYTES bytes (JetStream has no batch publish before server 2.12), and times each
 *     until its PubAck. With LOAD_E2E=1 an ordered consumer on the same stream (deliver new)
 *     runs alongside and end-to-end latency is matched by stream sequence (bench/load-stats.ts).
 *     LOAD_RATE=N paces the publishes to N messages/s (0: as fast as acks allow); LOAD_COUNT=N
 *     stops after N messages (to fill a backlog for the catch-up read).
 *   catchup: reads COUNT messages from the start of the stream with an ordered consumer and
 *     reports the rate (DURATION_MS is a deadline); the backlog was written beforehand.
 *
 * Prints one JSON line (see LoadResult in bench/lib.ts).
 *
 * usage: bun bench/nats-load.ts publish URL STREAM SUBJECT RECORD_BYTES INFLIGHT DURATION_MS
 *        bun bench/nats-load.ts catchup URL STREAM SUBJECT COUNT DURATION_MS
 */
import { jetstream, DeliverPolicy } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { endToEnd, loadSummary, Pacer, SeqTimes } from "./load-stats.ts";

const [mode, url, stream, subject, ...rest] = process.argv.slice(2);
if ((mode !== "publish" && mode !== "catchup") || !url || !stream || !subject) {
  console.error("usage: bun bench/nats-load.ts publish|catchup URL STREAM SUBJECT ...");
  process.exit(2);
}
const [host, port] = url.replace(/^nats:\/\//, "").split(":");
const nc = await connect({ servers: `${host}:${port}`, maxReconnectAttempts: 0 });
const js = jetstream(nc, { timeout: 30_000 });

/** Messages the ordered consumer asks for at once: Tributary's Subscribe sends 500 per message by default. */
const CONSUME_MAX_MESSAGES = 500;

async function consumeInto(received: SeqTimes, policy: DeliverPolicy, until: () => boolean): Promise<{ count: number; bytes: number }> {
  const consumer = await js.consumers.get(stream!, { deliver_policy: policy });
  const messages = await consumer.consume({ max_messages: CONSUME_MAX_MESSAGES });
  let count = 0;
  let bytes = 0;
  // The consume loop starts once the consumer exists, so a publisher started after this sees it.
  void (async () => {
    for await (const m of messages) {
      received.set(m.seq, performance.now());
      count++;
      bytes += m.data.length;
      if (until()) break;
    }
  })();
  return {
    get count() {
      return count;
    },
    get bytes() {
      return bytes;
    },
  };
}

async function publish(recordBytes: number, inflight: number, durationMs: number): Promise<string> {
  const payload = new Uint8Array(recordBytes).fill(120);
  const sent = new SeqTimes();
  const received = new SeqTimes();
  let stop = false;
  const consumed = process.env.LOAD_E2E === "1" ? await consumeInto(received, DeliverPolicy.New, () => stop) : null;
  const pacer = new Pacer(Number(process.env.LOAD_RATE ?? 0));
  const ackLatencies: number[] = [];
  let records = 0;
  let errors = 0;
  const started = performance.now();
  const end = started + durationMs;
  const countMax = Number(process.env.LOAD_COUNT ?? 0);
  let issued = 0;
  const worker = async () => {
    while (performance.now() < end && (countMax === 0 || issued++ < countMax)) {
      const wait = pacer.next();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const t0 = performance.now();
      try {
        const ack = await js.publish(subject!, payload);
        ackLatencies.push(performance.now() - t0);
        sent.set(ack.seq, t0);
        records++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  const elapsedMs = performance.now() - started;
  // Let the consumer see the tail for a moment (bounded), so the last messages have e2e samples too.
  const deadline = performance.now() + 2000;
  while (consumed && consumed.count < records && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  stop = true;
  return loadSummary({ records, bytes: records * recordBytes, errors, elapsedMs, ackLatencies, e2e: consumed ? endToEnd(sent, received) : [] });
}

async function catchup(count: number, durationMs: number): Promise<string> {
  const received = new SeqTimes();
  const started = performance.now();
  let done = false;
  const consumed = await consumeInto(received, DeliverPolicy.All, () => done);
  let firstMs = NaN;
  const deadline = started + durationMs;
  while (consumed.count < count && performance.now() < deadline) {
    if (Number.isNaN(firstMs) && consumed.count > 0) firstMs = performance.now() - started;
    await new Promise((r) => setTimeout(r, 2));
  }
  done = true;
  const elapsedMs = performance.now() - started;
  return loadSummary({ records: consumed.count, bytes: consumed.bytes, errors: consumed.count < count ? 1 : 0, elapsedMs, ackLatencies: [firstMs], e2e: [] });
}

const out =
  mode === "publish"
    ? await publish(Number(rest[0]), Number(rest[1]), Number(rest[2]))
    : await catchup(Number(rest[0]), Number(rest[1]));
console.log(out);
await nc.close().catch(() => {});
process.exit(0);
