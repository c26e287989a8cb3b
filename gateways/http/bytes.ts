/**
 * Bytes <-> text for the HTTP mapping: strict UTF-8 and strict Base64 (RFC 4648, standard
 * alphabet, padded or not). Plain Web APIs (atob/btoa, TextDecoder) so Bun, Deno and Node agree.
 */
import { TributaryError } from "../../src/errors.ts";

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function encodeUtf8(s: string): Uint8Array {
  return utf8.encode(s);
}

/** The text, or null when the bytes are not valid UTF-8. */
export function decodeUtf8OrNull(bytes: Uint8Array): string | null {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return null;
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

/** Decode standard Base64; INVALID_REQUEST naming `field` when it is not Base64. */
export function decodeBase64(s: string, field: string): Uint8Array {
  if (!BASE64.test(s)) throw new TributaryError("INVALID_REQUEST", `${field} is not valid Base64`);
  const padded = s.length % 4 === 0 ? s : s + "=".repeat(4 - (s.length % 4));
  const bin = atob(padded);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** btoa takes a "binary string"; build it in slices so large values do not blow the call stack. */
const SLICE_BYTES = 0x8000;

export function encodeBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += SLICE_BYTES) {
    bin += String.fromCharCode(...bytes.subarray(i, i + SLICE_BYTES));
  }
  return btoa(bin);
}
