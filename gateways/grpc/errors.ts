/**
 * The one table from Tributary error codes to gRPC status codes, and how a refusal travels:
 *
 *   status code     from GRPC_STATUS below
 *   status message  the error's message, for people
 *   trailers        `tributary-error-code: TOPIC_NOT_FOUND` (machine-readable, stable),
 *                   `tributary-retriable: true|false`, and `grpc-status-details-bin`: a
 *                   google.rpc.Status whose details hold one google.rpc.ErrorInfo
 *                   {reason: the code, domain: "tributary.dev", metadata: {retriable}}
 *
 * Every ErrorCode of src/errors.ts has a row (the Record type makes a missing one a compile
 * error). INTERNAL exists only at the gateways: an unexpected exception, a bug, logged.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Metadata, status as Status, type ServiceError } from "@grpc/grpc-js";
import { isTributaryError, type ErrorCode } from "../../src/errors.ts";
import { ErrorInfoSchema, StatusSchema } from "./gen/google/rpc/status_pb.ts";

export type GatewayErrorCode = ErrorCode | "INTERNAL";

export const GRPC_STATUS: Readonly<Record<GatewayErrorCode, Status>> = {
  INVALID_REQUEST: Status.INVALID_ARGUMENT,
  INVALID_TOPIC_NAME: Status.INVALID_ARGUMENT,
  INVALID_CONFIG: Status.INVALID_ARGUMENT,
  INVALID_PARTITIONS: Status.INVALID_ARGUMENT,
  // HTTP content negotiation only; a gRPC call cannot meet them, but a row keeps the table whole.
  UNSUPPORTED_MEDIA_TYPE: Status.INVALID_ARGUMENT,
  NOT_ACCEPTABLE: Status.INVALID_ARGUMENT,
  TOPIC_NOT_FOUND: Status.NOT_FOUND,
  PARTITION_NOT_FOUND: Status.NOT_FOUND,
  TOPIC_EXISTS: Status.ALREADY_EXISTS,
  // The same status gRPC itself gives a message over grpc.max.message.bytes: "too big" is one code.
  RECORD_TOO_LARGE: Status.RESOURCE_EXHAUSTED,
  OFFSET_OUT_OF_RANGE: Status.OUT_OF_RANGE,
  // A stored batch failed its CRC or framing: the server's data is damaged, not the request.
  CORRUPT_RECORD: Status.DATA_LOSS,
  // The three retriable codes: UNAVAILABLE is the status gRPC clients and retry policies treat as
  // "try again with backoff" (a full queue, a broker starting or stopping, a disk that refused).
  OVERLOADED: Status.UNAVAILABLE,
  NOT_READY: Status.UNAVAILABLE,
  STORAGE_ERROR: Status.UNAVAILABLE,
  // Cluster: retry with backoff (a leader is being elected, a peer is out of reach, or ask the coordinator the message names).
  NOT_LEADER: Status.UNAVAILABLE,
  PEER_UNAVAILABLE: Status.UNAVAILABLE,
  NOT_COORDINATOR: Status.UNAVAILABLE,
  // Accepted but not known to be written (the leader changed, a peer did not answer in time).
  REQUEST_TIMED_OUT: Status.DEADLINE_EXCEEDED,
  // Idempotent producer. A sequence check failed: the producer must resynchronise, not resend.
  OUT_OF_ORDER_SEQUENCE: Status.ABORTED,
  // A newer instance of the producer took over, or the id is unknown: init a new producer id.
  PRODUCER_FENCED: Status.FAILED_PRECONDITION,
  UNKNOWN_PRODUCER_ID: Status.FAILED_PRECONDITION,
  // Consumer groups.
  INVALID_GROUP_ID: Status.INVALID_ARGUMENT,
  INVALID_SESSION_TIMEOUT: Status.INVALID_ARGUMENT,
  GROUP_NOT_FOUND: Status.NOT_FOUND,
  MIRROR_NOT_CONFIGURED: Status.NOT_FOUND,
  // The member left or expired: join again without a member id.
  UNKNOWN_MEMBER_ID: Status.NOT_FOUND,
  GROUP_NOT_EMPTY: Status.FAILED_PRECONDITION,
  // A commit from an older generation or for a partition the member does not hold.
  ILLEGAL_GENERATION: Status.FAILED_PRECONDITION,
  // The partition is promised but its previous owner has not let go: heartbeat, then try again.
  REBALANCE_IN_PROGRESS: Status.ABORTED,
  // Security: no, bad or revoked token; a principal no ACL rule allows.
  UNAUTHENTICATED: Status.UNAUTHENTICATED,
  PERMISSION_DENIED: Status.PERMISSION_DENIED,
  INTERNAL: Status.INTERNAL,
};

export const ERROR_CODE_TRAILER = "tributary-error-code";
export const RETRIABLE_TRAILER = "tributary-retriable";
export const STATUS_DETAILS_TRAILER = "grpc-status-details-bin";
export const ERROR_DOMAIN = "tributary.dev";

export interface GatewayError {
  code: GatewayErrorCode;
  message: string;
  retriable: boolean;
}

/** What a thrown value means to a client: a TributaryError as it is, anything else INTERNAL. */
export function gatewayError(e: unknown): GatewayError {
  if (isTributaryError(e)) return { code: e.code, message: e.message, retriable: e.retriable };
  return { code: "INTERNAL", message: "internal error (logged by the broker)", retriable: false };
}

/** The status, message and trailers a refused call ends with. */
export function toServiceError(err: GatewayError): Partial<ServiceError> & { code: Status; details: string; metadata: Metadata } {
  const code = GRPC_STATUS[err.code];
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_TRAILER, err.code);
  metadata.set(RETRIABLE_TRAILER, String(err.retriable));
  const info = create(ErrorInfoSchema, { reason: err.code, domain: ERROR_DOMAIN, metadata: { retriable: String(err.retriable) } });
  const details = create(StatusSchema, { code, message: err.message, details: [anyPack(ErrorInfoSchema, info)] });
  metadata.set(STATUS_DETAILS_TRAILER, Buffer.from(toBinary(StatusSchema, details)));
  return { name: "TributaryError", message: err.message, code, details: err.message, metadata };
}
