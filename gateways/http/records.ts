/**
 * How records look over HTTP, in JSON and in CBOR, both ways. The broker stores bytes; this file
 * decides which bytes a JSON or CBOR request means and how stored bytes are shown.
 *
 * Produce, JSON body:
 *   value        any JSON value, stored as its UTF-8 JSON text (null or absent: a null value)
 *   valueBase64  instead of value: raw bytes
 *   key          a string, stored as UTF-8 (null or absent: no key); keyBase64 for raw bytes
 *   headers      {name: string | null}, stored as UTF-8; headersBase64 {name: base64} for bytes
 *   partition    optional partition index; timestamp optional, ms since the epoch
 * Produce, CBOR body: the same fields, where a byte string key or value is stored raw, a text key
 * as UTF-8, and any other value as its JSON text (maps with text keys, arrays, numbers, text,
 * booleans; a CBOR date becomes its ISO-8601 string).
 *
 * Fetch, JSON reply: `value` is the parsed JSON when the stored bytes are UTF-8 JSON, otherwise
 * `valueBase64`; `key` is text when valid UTF-8, otherwise `keyBase64`; header values likewise
 * in `headers` / `headersBase64`; null stays null. With `encoding=base64` every non-null key,
 * value and header value is Base64, so a client gets the exact stored bytes.
 * Fetch, CBOR reply: value = parsed JSON when valid JSON, otherwise a byte string; key and header
 * values text when valid UTF-8, otherwise byte strings.
 */
import type { IdempotenceInput, ProduceRecord } from "../../src/broker.ts";
import { PRODUCE_MAX_RECORDS } from "../../src/broker.ts";
import { TributaryError } from "../../src/errors.ts";
import type { DecodedRecord, RecordHeader } from "../../src/storage/record-batch.ts";
import { decodeBase64, decodeUtf8OrNull, encodeBase64, encodeUtf8 } from "./bytes.ts";
import type { Format } from "./media.ts";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const RECORD_FIELDS = new Set(["key", "keyBase64", "value", "valueBase64", "headers", "headersBase64", "partition", "timestamp"]);

function bad(message: string): TributaryError {
  return new TributaryError("INVALID_REQUEST", message);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * A decoded CBOR item as JSON, or INVALID_REQUEST naming where it is not representable. Byte
 * strings are only meaningful as a whole key or value, so they are refused inside a value.
 */
function cborToJson(v: unknown, where: string, depth = 0): Json {
  if (depth > 512) throw bad(`${where} is nested too deeply`);
  if (v === null || typeof v === "boolean" || typeof v === "string") return v;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw bad(`${where} holds ${v}, which JSON cannot represent`);
    return v;
  }
  if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) throw bad(`${where} holds an invalid date`);
    return v.toISOString();
  }
  if (Array.isArray(v)) return v.map((x, i) => cborToJson(x, `${where}[${i}]`, depth + 1));
  if (isPlainObject(v)) {
    // fromEntries defines own properties, so a "__proto__" key stays a key.
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, cborToJson(x, `${where}.${k}`, depth + 1)]));
  }
  const kind = v instanceof Uint8Array ? "a byte string" : typeof v === "bigint" ? "an integer beyond 2^53" : v === undefined ? "undefined" : "a value";
  throw bad(`${where} holds ${kind}, which has no JSON form (byte strings are allowed only as the whole key or value)`);
}

function keyBytes(r: Record<string, unknown>, where: string): Uint8Array | null {
  if (r.key !== undefined && r.keyBase64 !== undefined) throw bad(`${where}: give key or keyBase64, not both`);
  if (r.keyBase64 !== undefined) {
    if (typeof r.keyBase64 !== "string") throw bad(`${where}.keyBase64 must be a Base64 string`);
    return decodeBase64(r.keyBase64, `${where}.keyBase64`);
  }
  const k = r.key;
  if (k === undefined || k === null) return null;
  if (typeof k === "string") return encodeUtf8(k);
  if (k instanceof Uint8Array) return k;
  throw bad(`${where}.key must be a string or null`);
}

function valueBytes(r: Record<string, unknown>, where: string, format: Format): Uint8Array | null {
  if (r.value !== undefined && r.valueBase64 !== undefined) throw bad(`${where}: give value or valueBase64, not both`);
  if (r.valueBase64 !== undefined) {
    if (typeof r.valueBase64 !== "string") throw bad(`${where}.valueBase64 must be a Base64 string`);
    return decodeBase64(r.valueBase64, `${where}.valueBase64`);
  }
  const v = r.value;
  if (v === undefined || v === null) return null;
  if (format === "cbor") {
    if (v instanceof Uint8Array) return v;
    return encodeUtf8(JSON.stringify(cborToJson(v, `${where}.value`)));
  }
  return encodeUtf8(JSON.stringify(v));
}

function headerList(r: Record<string, unknown>, where: string): RecordHeader[] | undefined {
  const out: RecordHeader[] = [];
  if (r.headers !== undefined && r.headers !== null) {
    if (!isPlainObject(r.headers)) throw bad(`${where}.headers must be an object of header names to strings`);
    for (const [name, v] of Object.entries(r.headers)) {
      if (v === null) out.push({ key: name, value: null });
      else if (typeof v === "string") out.push({ key: name, value: encodeUtf8(v) });
      else if (v instanceof Uint8Array) out.push({ key: name, value: v });
      else throw bad(`${where}.headers.${name} must be a string or null`);
    }
  }
  if (r.headersBase64 !== undefined && r.headersBase64 !== null) {
    if (!isPlainObject(r.headersBase64)) throw bad(`${where}.headersBase64 must be an object of header names to Base64 strings`);
    for (const [name, v] of Object.entries(r.headersBase64)) {
      if (typeof v !== "string") throw bad(`${where}.headersBase64.${name} must be a Base64 string`);
      out.push({ key: name, value: decodeBase64(v, `${where}.headersBase64.${name}`) });
    }
  }
  return out.length > 0 ? out : undefined;
}

function optionalInt(v: unknown, where: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw bad(`${where} must be a non-negative integer`);
  return v;
}

/** The records of a produce request body (already decoded from JSON or CBOR). */
export function parseProduceBody(body: unknown, format: Format): ProduceRecord[] {
  if (!isPlainObject(body) || !Array.isArray(body.records)) throw bad(`the body must be an object {"records": [...]}`);
  const list: unknown[] = body.records;
  if (list.length > PRODUCE_MAX_RECORDS) throw new TributaryError("RECORD_TOO_LARGE", `at most ${PRODUCE_MAX_RECORDS} records per request, got ${list.length}`);
  return list.map((r, i) => {
    const where = `records[${i}]`;
    if (!isPlainObject(r)) throw bad(`${where} must be an object`);
    for (const field of Object.keys(r)) {
      if (!RECORD_FIELDS.has(field)) throw bad(`${where} has an unknown field ${JSON.stringify(field)} (known: ${[...RECORD_FIELDS].join(", ")})`);
    }
    const record: ProduceRecord = { key: keyBytes(r, where), value: valueBytes(r, where, format) };
    const headers = headerList(r, where);
    if (headers) record.headers = headers;
    const partition = optionalInt(r.partition, `${where}.partition`);
    if (partition !== undefined) record.partition = partition;
    const timestamp = optionalInt(r.timestamp, `${where}.timestamp`);
    if (timestamp !== undefined) record.timestamp = timestamp;
    return record;
  });
}

/**
 * The optional idempotence fields of a produce body, `{"records": [...], "producerId": 7,
 * "producerEpoch": 0, "baseSequence": 12}`: all three or none (producerEpoch defaults to 0).
 */
export function parseProduceIdempotence(body: unknown): IdempotenceInput | undefined {
  if (!isPlainObject(body)) return undefined;
  for (const field of Object.keys(body)) {
    if (!PRODUCE_FIELDS.has(field)) throw bad(`the produce body has an unknown field ${JSON.stringify(field)} (known: ${[...PRODUCE_FIELDS].join(", ")})`);
  }
  if (body.producerId === undefined && body.baseSequence === undefined && body.producerEpoch === undefined) return undefined;
  const producerId = optionalInt(body.producerId, "producerId");
  const baseSequence = optionalInt(body.baseSequence, "baseSequence");
  if (producerId === undefined || baseSequence === undefined) throw bad("an idempotent produce needs producerId and baseSequence (and producerEpoch, default 0)");
  return { producerId, producerEpoch: optionalInt(body.producerEpoch, "producerEpoch") ?? 0, baseSequence };
}

const PRODUCE_FIELDS = new Set(["records", "producerId", "producerEpoch", "baseSequence"]);

/** How stored bytes are shown: "auto" picks text/JSON when the bytes are that; "base64" never does. */
export type BytesEncoding = "auto" | "base64";

function parseJsonOrUndefined(bytes: Uint8Array): Json | undefined {
  const text = decodeUtf8OrNull(bytes);
  if (text === null) return undefined;
  try {
    return JSON.parse(text) as Json;
  } catch {
    return undefined;
  }
}

type JsonRecord = { offset: number; timestamp: number } & Record<string, unknown>;

/** A stored record in a JSON reply (also the data of an SSE event). */
export function recordToJson(r: DecodedRecord, encoding: BytesEncoding = "auto"): JsonRecord {
  const out: JsonRecord = { offset: r.offset, timestamp: r.timestamp };
  const text = (b: Uint8Array) => (encoding === "auto" ? decodeUtf8OrNull(b) : null);
  if (r.key === null) out.key = null;
  else {
    const k = text(r.key);
    if (k !== null) out.key = k;
    else out.keyBase64 = encodeBase64(r.key);
  }
  if (r.value === null) out.value = null;
  else {
    const v = encoding === "auto" ? parseJsonOrUndefined(r.value) : undefined;
    if (v !== undefined) out.value = v;
    else out.valueBase64 = encodeBase64(r.value);
  }
  // Names repeat only in records written by other protocols; the last value of a name is shown.
  // Entries then fromEntries (not obj[name] = ...), so a header named "__proto__" stays a header.
  const headers: [string, string | null][] = [];
  const headersBase64: [string, string][] = [];
  for (const h of r.headers) {
    const t = h.value === null ? null : text(h.value);
    if (h.value === null || t !== null) headers.push([h.key, t]);
    else headersBase64.push([h.key, encodeBase64(h.value)]);
  }
  out.headers = Object.fromEntries(headers);
  if (headersBase64.length > 0) out.headersBase64 = Object.fromEntries(headersBase64);
  return out;
}

/** A stored record in a CBOR reply: byte strings where the bytes are not text (or JSON). */
export function recordToCbor(r: DecodedRecord): Record<string, unknown> {
  const textOrBytes = (b: Uint8Array | null) => (b === null ? null : (decodeUtf8OrNull(b) ?? b));
  const headers = Object.fromEntries(r.headers.map((h) => [h.key, textOrBytes(h.value)]));
  let value: Json | Uint8Array | null = null;
  if (r.value !== null) value = parseJsonOrUndefined(r.value) ?? r.value;
  return { offset: r.offset, timestamp: r.timestamp, key: textOrBytes(r.key), value, headers };
}

export function recordFor(format: Format, encoding: BytesEncoding): (r: DecodedRecord) => unknown {
  return format === "cbor" ? recordToCbor : (r) => recordToJson(r, encoding);
}
