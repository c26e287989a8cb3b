/**
 * Request and response bodies: which media type a request carries (Content-Type), which one the
 * reply uses (Accept), reading a body under the size limit, and decoding/encoding JSON and CBOR.
 *
 * CBOR goes through cbor-x with its extensions off (no record structures, no typed-array tags), so
 * replies are plain RFC 8949 that any decoder reads. It is imported through the "cbor-x/decode" and
 * "cbor-x/encode" entry points, which are plain JavaScript: the main entry loads the native
 * cbor-extract addon, built for Node, which aborts Bun and fails symbol lookup on Deno as soon as
 * a body holds enough strings for cbor-x to hand them to it (a few kilobytes).
 *
 * @example
 *   const format = requestFormat(req);            // "json" | "cbor", or 415
 *   const body = decodeBody(await readBody(req, limit), format);
 *   return reply(negotiate(req, format), 200, { ok: true });
 */
import { Decoder } from "cbor-x/decode";
import { Encoder } from "cbor-x/encode";
import { TributaryError } from "../../src/errors.ts";
import { decodeUtf8OrNull } from "./bytes.ts";

export type Format = "json" | "cbor";

const MEDIA: Record<Format, string> = { json: "application/json", cbor: "application/cbor" };

const cborDecoder = new Decoder({ mapsAsObjects: true, useRecords: false });
const cborEncoder = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true });

function mediaType(header: string): string {
  return (header.split(";")[0] ?? "").trim().toLowerCase();
}

/** The format of a request body from its Content-Type; UNSUPPORTED_MEDIA_TYPE otherwise. */
export function requestFormat(req: Request): Format {
  const header = req.headers.get("content-type");
  const type = header === null ? "" : mediaType(header);
  if (type === MEDIA.json) return "json";
  if (type === MEDIA.cbor) return "cbor";
  throw new TributaryError(
    "UNSUPPORTED_MEDIA_TYPE",
    header === null ? "a Content-Type header is required: application/json or application/cbor" : `Content-Type ${type} is not supported: use application/json or application/cbor`,
  );
}

/**
 * The reply format from Accept: the candidate with the highest quality, where the most specific
 * matching range sets it. `preferred` wins ties and is used when there is no Accept header (it is
 * the request's own format, so a CBOR client gets CBOR back by default). NOT_ACCEPTABLE when
 * Accept excludes both.
 */
export function negotiate(req: Request, preferred: Format = "json"): Format {
  const accept = req.headers.get("accept");
  if (accept === null || accept.trim() === "") return preferred;
  const ranges = accept.split(",").map((part) => {
    const [range = "", ...params] = part.split(";");
    let q = 1;
    for (const p of params) {
      const [k, v] = p.split("=").map((s) => s.trim());
      if (k === "q" && v !== undefined) {
        const n = Number(v);
        q = Number.isFinite(n) ? Math.min(1, Math.max(0, n)) : 0;
      }
    }
    return { range: range.trim().toLowerCase(), q };
  });
  const quality = (type: string): number => {
    let best = -1;
    let specificity = -1;
    for (const r of ranges) {
      const s = r.range === type ? 2 : r.range === "application/*" ? 1 : r.range === "*/*" ? 0 : -1;
      if (s > specificity) {
        specificity = s;
        best = r.q;
      }
    }
    return Math.max(best, 0);
  };
  const other: Format = preferred === "json" ? "cbor" : "json";
  const qp = quality(MEDIA[preferred]);
  const qo = quality(MEDIA[other]);
  if (qp === 0 && qo === 0) {
    throw new TributaryError("NOT_ACCEPTABLE", `cannot reply in any type of Accept: ${accept}; use application/json or application/cbor`);
  }
  return qo > qp ? other : preferred;
}

/**
 * Read the whole body, refusing with RECORD_TOO_LARGE (413) before reading when Content-Length
 * says it is too big, and while reading as soon as the bytes actually received pass the limit
 * (a chunked body, or one that lies about its length).
 */
export async function readBody(req: Request, maxBytes: number): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  if (declared !== null) {
    if (!/^\d+$/.test(declared.trim())) throw new TributaryError("INVALID_REQUEST", `Content-Length ${declared} is not a number`);
    const n = Number(declared);
    if (n > maxBytes) {
      await req.body?.cancel().catch(() => {});
      throw tooLarge(n, maxBytes);
    }
  }
  if (req.body === null) return new Uint8Array(0);
  if (declared !== null) {
    // The server reads exactly Content-Length bytes, already checked against the limit: one
    // read of the whole body is several times faster on Bun than pulling its chunks one by one.
    return new Uint8Array(
      await req.arrayBuffer().catch((e: unknown) => {
        throw new TributaryError("INVALID_REQUEST", `the request body could not be read: ${(e as Error).message}`, { cause: e });
      }),
    );
  }
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const step = await reader.read().catch((e: unknown) => {
      throw new TributaryError("INVALID_REQUEST", `the request body could not be read: ${(e as Error).message}`, { cause: e });
    });
    if (step.done) break;
    size += step.value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(size, maxBytes);
    }
    chunks.push(step.value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

function tooLarge(n: number, max: number): TributaryError {
  return new TributaryError("RECORD_TOO_LARGE", `the request body (${n}${n > max ? "+" : ""} bytes) exceeds http.max.request.bytes (${max})`);
}

/** Parse a body; malformed JSON or CBOR is INVALID_REQUEST, never an exception of another kind. */
export function decodeBody(bytes: Uint8Array, format: Format): unknown {
  if (bytes.byteLength === 0) throw new TributaryError("INVALID_REQUEST", `the request body is empty: expected ${MEDIA[format]}`);
  if (format === "json") {
    const text = decodeUtf8OrNull(bytes);
    if (text === null) throw new TributaryError("INVALID_REQUEST", "the JSON body is not valid UTF-8");
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw new TributaryError("INVALID_REQUEST", `the body is not valid JSON: ${(e as Error).message}`, { cause: e });
    }
  }
  try {
    return cborDecoder.decode(bytes) as unknown;
  } catch (e) {
    throw new TributaryError("INVALID_REQUEST", `the body is not valid CBOR: ${(e as Error).message}`, { cause: e });
  }
}

export function encodeBody(value: unknown, format: Format): Uint8Array<ArrayBuffer> | string {
  // cbor-x hands back a view into a buffer it reuses for later encodings: copy it out, because
  // the response body is read after this returns.
  return format === "json" ? JSON.stringify(value) : new Uint8Array(cborEncoder.encode(value));
}

export function reply(format: Format, status: number, value: unknown, headers: Record<string, string> = {}): Response {
  const body = encodeBody(value, format);
  return new Response(body, { status, headers: { "content-type": MEDIA[format], ...headers } });
}
