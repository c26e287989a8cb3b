/**
 * Quotas at the gRPC gateway (src/security/quotas.ts holds the buckets), applied by the bridge in
 * its one place, right after a call is authenticated and its request admitted by the ACL:
 *
 * - every call: one request against `requestsPerSec`; `Produce`: its message bytes against
 *   `produceBytesPerSec`. The delay is awaited before the handler runs, and the reply carries the
 *   trailer `tributary-throttle-ms: <ms>`;
 * - `Fetch` replies and `Subscribe` messages: their encoded bytes against `fetchBytesPerSec` (only
 *   when the principal has a fetch quota). A `Fetch` reply delays the principal's next call (as
 *   Kafka does); `Subscribe` waits its delay before the next message;
 * - `ProduceStream` batches are charged as they are decoded; the debt delays the principal's next
 *   call or stream, not the batches already in flight on the stream;
 * - `Subscribe`, `ProduceStream` and long-poll `Fetch` (waitMs > 0) count against `maxStreams`
 *   while open: past it, UNAVAILABLE with OVERLOADED;
 * - the connection of a call counts against `maxConnections` (auth.ts callGuard, connections.ts):
 *   a call on one connection too many is UNAVAILABLE with OVERLOADED.
 */
import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Metadata } from "@grpc/grpc-js";
import type { QuotaEnforcer, QuotaKind } from "../../src/security/quotas.ts";
import { EncodedMessage } from "./proto-wire.ts";

export const THROTTLE_TRAILER = "tributary-throttle-ms";

/** Who is being charged on a call (absent without authentication: no quotas). */
export interface CallQuota {
  principal: string;
  quotas: QuotaEnforcer;
}

const PRODUCE = "/tributary.v1.ProducerService/Produce";
const PRODUCE_STREAM = "/tributary.v1.ProducerService/ProduceStream";
const FETCH = "/tributary.v1.ConsumerService/Fetch";
const SUBSCRIBE = "/tributary.v1.ConsumerService/Subscribe";

const noop = (): void => {};

/** Count the stream, charge the call, wait; the delay (ms) and the stream's release. */
export async function beforeCall(q: CallQuota | undefined, method: string, requestBytes: number, request: object | null, signal: AbortSignal): Promise<{ delayMs: number; release: () => void }> {
  if (!q) return { delayMs: 0, release: noop };
  const waitMs = Number((request as { waitMs?: unknown } | null)?.waitMs ?? 0);
  const release = method === SUBSCRIBE || method === PRODUCE_STREAM || (method === FETCH && waitMs > 0) ? q.quotas.openStream(q.principal) : noop;
  const charges: [QuotaKind, number][] = [["request", 1]];
  if (method === PRODUCE) charges.push(["produce", requestBytes]);
  try {
    return { delayMs: await q.quotas.throttle("grpc", q.principal, charges, signal), release };
  } catch (e) {
    release();
    throw e;
  }
}

/** Charge a reply message's bytes against the fetch quota (Fetch, Subscribe); the delay it earned. */
export function chargeReply(q: CallQuota | undefined, method: string, schema: DescMessage, message: MessageShape<DescMessage> | EncodedMessage): number {
  if (!q || (method !== FETCH && method !== SUBSCRIBE) || q.quotas.ruleFor(q.principal)?.fetchBytesPerSec === undefined) return 0;
  const bytes = message instanceof EncodedMessage ? message.bytes.byteLength : toBinary(schema, message).byteLength;
  return q.quotas.charge(q.principal, "fetch", bytes);
}

/** A ProduceStream batch: charged, not waited for (see above). */
export function chargeStreamed(q: CallQuota | undefined, method: string, bytes: number): void {
  if (q && method === PRODUCE_STREAM) q.quotas.charge(q.principal, "produce", bytes);
}

export function throttleTrailer(delayMs: number): Metadata | undefined {
  if (delayMs <= 0) return undefined;
  const m = new Metadata();
  m.set(THROTTLE_TRAILER, String(delayMs));
  return m;
}
