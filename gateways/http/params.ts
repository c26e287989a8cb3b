/**
 * Numbers from paths and query strings. Anything but plain decimal digits in range is
 * INVALID_REQUEST (400) naming the parameter, so "1e3", "-1", " 7" and "0x10" never reach the broker.
 */
import { TributaryError } from "../../src/errors.ts";
import type { Acks } from "../../src/broker.ts";

export function parseIntParam(raw: string | undefined, name: string, min = 0): number | undefined {
  if (raw === undefined) return undefined;
  const n = /^\d{1,16}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new TributaryError("INVALID_REQUEST", `${name} must be an integer of at least ${min}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

export function requireIntParam(raw: string | undefined, name: string, min = 0): number {
  const n = parseIntParam(raw, name, min);
  if (n === undefined) throw new TributaryError("INVALID_REQUEST", `${name} is required`);
  return n;
}

/** acks=0|1|all (also -1, Kafka's spelling of all); default 1. */
export function parseAcks(raw: string | undefined): Acks {
  switch (raw) {
    case undefined:
    case "1":
      return 1;
    case "0":
      return 0;
    case "all":
    case "-1":
      return -1;
    default:
      throw new TributaryError("INVALID_REQUEST", `acks must be 0, 1 or all, got ${JSON.stringify(raw)}`);
  }
}
