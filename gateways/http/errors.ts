/**
 * The one table from error codes to HTTP statuses, and the error body every endpoint returns:
 * `{"error":{"code":"TOPIC_NOT_FOUND","message":"topic t does not exist"}}`.
 *
 * Every ErrorCode of src/errors.ts has a row (the Record type makes a missing one a compile
 * error). Two codes exist only at this gateway: NOT_FOUND (no such route) and INTERNAL (an
 * unexpected exception: a bug, logged, answered 500).
 */
import type { ErrorCode } from "../../src/errors.ts";

export type GatewayErrorCode = ErrorCode | "NOT_FOUND" | "INTERNAL";

export const HTTP_STATUS: Readonly<Record<GatewayErrorCode, number>> = {
  INVALID_REQUEST: 400,
  INVALID_TOPIC_NAME: 400,
  INVALID_CONFIG: 400,
  INVALID_PARTITIONS: 400,
  INVALID_GROUP_ID: 400,
  INVALID_SESSION_TIMEOUT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  TOPIC_NOT_FOUND: 404,
  PARTITION_NOT_FOUND: 404,
  NOT_FOUND: 404,
  GROUP_NOT_FOUND: 404,
  MIRROR_NOT_CONFIGURED: 404,
  // A consumer instance that left or idled out: the client creates a new one.
  UNKNOWN_MEMBER_ID: 404,
  NOT_ACCEPTABLE: 406,
  TOPIC_EXISTS: 409,
  // Conflicts with state the broker holds: the client must change the request (re-init, rejoin).
  OUT_OF_ORDER_SEQUENCE: 409,
  PRODUCER_FENCED: 409,
  UNKNOWN_PRODUCER_ID: 409,
  GROUP_NOT_EMPTY: 409,
  ILLEGAL_GENERATION: 409,
  REBALANCE_IN_PROGRESS: 409,
  RECORD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  OFFSET_OUT_OF_RANGE: 416,
  // A stored batch failed its CRC or framing: the server's data is damaged, not the request.
  CORRUPT_RECORD: 500,
  INTERNAL: 500,
  OVERLOADED: 503,
  NOT_READY: 503,
  STORAGE_ERROR: 503,
  // Cluster: no leader yet, a peer out of reach, or a group call sent to a peer that does not coordinate groups.
  NOT_LEADER: 503,
  PEER_UNAVAILABLE: 503,
  NOT_COORDINATOR: 503,
  REQUEST_TIMED_OUT: 503,
};

/** Statuses a client may retry unchanged get a hint of when. */
export const RETRY_AFTER_S = 1;

export interface ErrorBody {
  error: { code: GatewayErrorCode; message: string };
}

export function errorBody(code: GatewayErrorCode, message: string): ErrorBody {
  return { error: { code, message } };
}
