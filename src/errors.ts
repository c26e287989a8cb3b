/**
 * One error type for everything the broker refuses. Each gateway maps `code` to its own status
 * (HTTP status, gRPC status, MQTT reason code) in one table, so the mapping is seen whole.
 *
 * A broken invariant inside the broker is not a TributaryError: it is a bug, raised through
 * `assert` below, and the process should stop before it corrupts data.
 *
 * @example
 *   throw new TributaryError("TOPIC_NOT_FOUND", `topic ${name} does not exist`);
 */
export const ERROR_CODES = [
  "INVALID_REQUEST", // malformed input: bad JSON/CBOR, wrong field types, bad numbers
  "INVALID_TOPIC_NAME",
  "INVALID_CONFIG",
  "INVALID_PARTITIONS",
  "TOPIC_NOT_FOUND",
  "PARTITION_NOT_FOUND",
  "TOPIC_EXISTS",
  "RECORD_TOO_LARGE", // a record or batch over max.message.bytes, or a body over the request limit
  "UNSUPPORTED_MEDIA_TYPE",
  "NOT_ACCEPTABLE",
  "OFFSET_OUT_OF_RANGE",
  "CORRUPT_RECORD", // a batch whose CRC or framing is wrong
  "OVERLOADED", // a bounded queue is full: retry later
  "NOT_READY", // starting up or shutting down
  "STORAGE_ERROR", // the disk refused a write or sync: nothing was acknowledged
  // Idempotent producer (Kafka's names).
  "OUT_OF_ORDER_SEQUENCE", // a batch's sequence leaves a gap after the last one written (or repeats an old one)
  "PRODUCER_FENCED", // an older producer epoch than the partition has seen
  "UNKNOWN_PRODUCER_ID", // never issued by initProducerId, or its state was evicted: init a new one
  // Consumer groups (Kafka's names).
  "INVALID_GROUP_ID",
  "GROUP_NOT_FOUND",
  "GROUP_NOT_EMPTY", // reset-offsets and delete need a group without active members
  "UNKNOWN_MEMBER_ID", // the member left, expired, or never joined: join again
  "ILLEGAL_GENERATION", // a commit from an older generation, or for a partition the member does not hold
  "REBALANCE_IN_PROGRESS", // the partition is promised to the member but another still holds it
  "INVALID_SESSION_TIMEOUT", // outside group.min/max.session.timeout.ms
  // Mirroring.
  "MIRROR_NOT_CONFIGURED", // mirror status or control asked of a broker without mirror.config
  // Raised by the gateways' security guard (src/security/), never by the broker, which stays
  // auth-agnostic; listed here all the same so every gateway table must map them.
  "UNAUTHENTICATED", // no token, or a malformed, unknown or revoked one
  "PERMISSION_DENIED", // an authenticated principal no ACL rule allows this operation on this resource
  // Cluster (src/cluster/).
  "NOT_LEADER", // this peer does not lead the partition (or the controller) and no leader is known yet: retry
  "PEER_UNAVAILABLE", // a forwarded call could not reach the peer that must answer it: retry
  "NOT_COORDINATOR", // consumer-group calls go to the leader of __consumer_offsets; the message names it
  "REQUEST_TIMED_OUT", // accepted, but its outcome is unknown (the leader changed, or a peer did not answer in time): it may or may not be written; an idempotent producer's retry is safe
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** Codes where the same request may succeed if retried later, unchanged. */
const RETRIABLE: ReadonlySet<ErrorCode> = new Set(["OVERLOADED", "NOT_READY", "STORAGE_ERROR", "NOT_LEADER", "PEER_UNAVAILABLE", "NOT_COORDINATOR", "REQUEST_TIMED_OUT"]);

export class TributaryError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TributaryError";
    this.code = code;
    this.retriable = RETRIABLE.has(code);
  }
}

export function isTributaryError(e: unknown): e is TributaryError {
  return e instanceof TributaryError;
}

/** A broken internal invariant: a bug, never bad input. Throws a plain Error the gateways do not map. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant broken: ${message}`);
}
