import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { TributaryError } from "../src/errors.ts";
import { Reader, Writer, sizeOfUvarint, sizeOfVarint, sizeOfVarlong } from "../src/storage/bytes.ts";
import { crc32c } from "../src/storage/crc32c.ts";
import {
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_PREFIX_BYTES,
  type BatchHeader,
  type Compression,
  type DecodedRecord,
  type RecordInput,
  batchSizeAt,
  decodeRecords,
  encodeBatch,
  readBatchHeader,
  setBatchBaseOffset,
  setPartitionLeaderEpoch,
  splitBatches,
  verifyBatchCrc,
} from "../src/storage/record-batch.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const repoRoot = resolve(fileURLToPath(new URL("..", import.meta.url)));
const FIXTURES = resolve(repoRoot, "../shared/fixtures/record-batch-v2");

// ---- helpers ----------------------------------------------------------------------------------

/** Runs fn and returns the CORRUPT_RECORD it throws; fails on any other outcome. */
function expectCorrupt(fn: () => unknown): TributaryError {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, "expected a CORRUPT_RECORD TributaryError").toBeInstanceOf(TributaryError);
  const e = thrown as TributaryError;
  expect(e.code).toBe("CORRUPT_RECORD");
  return e;
}

/** Runs fn; it may return, or throw CORRUPT_RECORD, and nothing else. */
function onlyCorrupt(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof TributaryError) || e.code !== "CORRUPT_RECORD") throw new Error(`not a CORRUPT_RECORD: ${String(e)}`, { cause: e });
  }
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** Recompute the CRC after a test edits covered bytes on purpose. */
function fixCrc(batch: Uint8Array): Uint8Array {
  new DataView(batch.buffer, batch.byteOffset).setUint32(17, crc32c(batch, 21, batch.length));
  return batch;
}

const T0 = 1795300000000;
const rec = (key: string | null, value: string | null, extra: Partial<RecordInput> = {}): RecordInput => ({
  key: key === null ? null : enc.encode(key),
  value: value === null ? null : enc.encode(value),
  ...extra,
});

function sampleBatch(compression: Compression = "none"): Uint8Array {
  return encodeBatch(
    [
      rec("device-1", "{\"temp\":21.5}", { headers: [{ key: "source", value: enc.encode("mqtt") }] }),
      rec(null, "keyless", { timestamp: T0 + 5 }),
      rec("gone", null, { headers: [{ key: "h", value: null }, { key: "é", value: new Uint8Array(200) }] }),
    ],
    { timestamp: T0, baseOffset: 10, partitionLeaderEpoch: 3, compression },
  );
}

// ---- fixtures from kafkajs ----------------------------------------------------------------------

interface ManifestRecord {
  offset: number;
  timestamp: number;
  key: string | null;
  value: string | null;
  headers: Record<string, string | null>;
}
interface ManifestEntry {
  file: string;
  bytes: number;
  baseOffset: number;
  partitionLeaderEpoch: number;
  magic: number;
  compression: Compression;
  firstTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  lastOffsetDelta: number;
  records: ManifestRecord[];
}

const manifest = JSON.parse(readFileSync(resolve(FIXTURES, "manifest.json"), "utf8")) as ManifestEntry[];
const fixtureBytes = (f: ManifestEntry): Uint8Array => new Uint8Array(readFileSync(resolve(FIXTURES, f.file)));

/** A decoded record in the manifest's shape: UTF-8 strings, headers as an ordered object. */
function asManifest(r: DecodedRecord): ManifestRecord {
  return {
    offset: r.offset,
    timestamp: r.timestamp,
    key: r.key === null ? null : dec.decode(r.key),
    value: r.value === null ? null : dec.decode(r.value),
    headers: Object.fromEntries(r.headers.map((h) => [h.key, h.value === null ? null : dec.decode(h.value)])),
  };
}

function reencode(batch: Uint8Array, compression?: Compression): Uint8Array {
  const h = readBatchHeader(batch);
  const records = decodeRecords(batch);
  return encodeBatch(
    records.map((r) => ({ key: r.key, value: r.value, headers: r.headers, timestamp: r.timestamp, offsetDelta: r.offset - h.baseOffset })),
    {
      timestamp: h.firstTimestamp,
      baseOffset: h.baseOffset,
      partitionLeaderEpoch: h.partitionLeaderEpoch,
      producerId: h.producerId,
      producerEpoch: h.producerEpoch,
      baseSequence: h.baseSequence,
      lastOffsetDelta: h.lastOffsetDelta,
      compression: compression ?? h.compression,
      isTransactional: h.isTransactional,
      isControl: h.isControl,
    },
  );
}

describe("kafkajs fixtures", () => {
  it("has the four cases the README lists", () => {
    expect(manifest.map((f) => f.file).sort()).toEqual(["gzip.bin", "idempotent.bin", "simple.bin", "tombstone-and-null-key.bin"]);
  });

  describe.each(manifest.map((f) => [f.file, f] as const))("%s", (_file, f) => {
    const bytes = fixtureBytes(f);

    it("has a header exactly as the manifest says, and a valid CRC", () => {
      expect(bytes.length).toBe(f.bytes);
      const h = readBatchHeader(bytes);
      expect(h).toMatchObject({
        baseOffset: f.baseOffset,
        batchLength: f.bytes - BATCH_LENGTH_PREFIX_BYTES,
        partitionLeaderEpoch: f.partitionLeaderEpoch,
        magic: f.magic,
        compression: f.compression,
        timestampType: "create",
        isTransactional: false,
        isControl: false,
        lastOffsetDelta: f.lastOffsetDelta,
        firstTimestamp: f.firstTimestamp,
        maxTimestamp: f.maxTimestamp,
        producerId: f.producerId,
        producerEpoch: f.producerEpoch,
        baseSequence: f.baseSequence,
        recordCount: f.records.length,
      } satisfies Partial<BatchHeader>);
      expect(h.attributes).toBe(f.compression === "gzip" ? 1 : 0);
      expect(batchSizeAt(bytes)).toBe(f.bytes);
      expect(verifyBatchCrc(bytes)).toBe(true);
    });

    it("decodes every record exactly as the manifest says, headers in order", () => {
      const records = decodeRecords(bytes, { verifyCrc: true });
      expect(records.map(asManifest)).toEqual(f.records);
      records.forEach((r, i) => expect(r.headers.map((x) => x.key)).toEqual(Object.keys(f.records[i]!.headers)));
    });

    if (f.compression === "none") {
      it("re-encodes byte for byte from the decoded records and header fields", () => {
        expect(Array.from(reencode(bytes))).toEqual(Array.from(bytes));
      });

      it("hands out key and value as views into the batch, not copies", () => {
        for (const r of decodeRecords(bytes)) {
          for (const b of [r.key, r.value]) if (b !== null) expect(b.buffer).toBe(bytes.buffer);
        }
      });
    } else {
      it("re-encodes with our gzip to a batch that decodes to the same header fields and records", () => {
        const again = reencode(bytes);
        expect(verifyBatchCrc(again)).toBe(true);
        const { crc: _c1, batchLength: _l1, ...h1 } = readBatchHeader(bytes);
        const { crc: _c2, batchLength: _l2, ...h2 } = readBatchHeader(again);
        expect(h2).toEqual(h1);
        expect(decodeRecords(again).map(asManifest)).toEqual(f.records);
      });

      it("re-encodes uncompressed to a batch with the same records", () => {
        const plain = reencode(bytes, "none");
        expect(readBatchHeader(plain).compression).toBe("none");
        expect(decodeRecords(plain).map(asManifest)).toEqual(f.records);
      });
    }
  });

  it("splits a concatenation of every fixture back into exactly those batches", () => {
    const all = manifest.map(fixtureBytes);
    const parts = splitBatches(concat(all));
    expect(parts.map((p) => Array.from(p))).toEqual(all.map((p) => Array.from(p)));
  });
});

// ---- round trips --------------------------------------------------------------------------------

/** A quarter of a safe integer, so sums and differences of two stay safe; `+ 0` turns -0 into 0. */
const quarter = (n: number): number => Math.trunc(n / 4) + 0;
const bytesArb = fc.option(fc.uint8Array({ maxLength: 200 }), { nil: null, freq: 4 });
const headerArb = fc.record({ key: fc.string({ unit: "binary", maxLength: 12 }), value: bytesArb });
/** Wide enough for timestamp deltas of many bytes, narrow enough that any delta stays below 2^53. */
const timestampArb = fc.oneof(fc.maxSafeInteger().map(quarter), fc.integer({ min: -1, max: 100_000 }).map((d) => T0 + d));
const recordArb = fc.record(
  {
    key: bytesArb,
    value: bytesArb,
    headers: fc.array(headerArb, { maxLength: 4 }),
    timestamp: timestampArb,
  },
  { requiredKeys: ["key", "value"] },
);

describe("round trips", () => {
  it("decodes what it encodes: any records, both compressions, any header fields", () => {
    fc.assert(
      fc.property(
        fc.array(recordArb, { minLength: 1, maxLength: 20 }),
        fc.constantFrom<Compression>("none", "gzip"),
        fc.record({
          baseOffset: fc.maxSafeNat().map(quarter),
          partitionLeaderEpoch: fc.integer(),
          producerId: fc.maxSafeInteger().map(quarter),
          producerEpoch: fc.integer({ min: -32768, max: 32767 }),
          baseSequence: fc.integer(),
          timestamp: timestampArb,
        }),
        (records, compression, o) => {
          const batch = encodeBatch(records, { ...o, compression });
          expect(verifyBatchCrc(batch)).toBe(true);
          const h = readBatchHeader(batch);
          const stamps = records.map((r) => r.timestamp ?? o.timestamp);
          expect(h).toMatchObject({
            baseOffset: o.baseOffset,
            batchLength: batch.length - 12,
            partitionLeaderEpoch: o.partitionLeaderEpoch,
            producerId: o.producerId,
            producerEpoch: o.producerEpoch,
            baseSequence: o.baseSequence,
            compression,
            recordCount: records.length,
            lastOffsetDelta: records.length - 1,
            firstTimestamp: stamps[0],
            maxTimestamp: Math.max(...stamps),
          });
          const expected: DecodedRecord[] = records.map((r, i) => ({
            offset: o.baseOffset + i,
            timestamp: stamps[i]!,
            key: r.key,
            value: r.value,
            headers: r.headers ?? [],
          }));
          expect(decodeRecords(batch, { verifyCrc: true })).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("keeps offsets with gaps and a lastOffsetDelta past the last record, as compaction needs", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(recordArb, fc.nat({ max: 300 })), { minLength: 1, maxLength: 10 }),
        fc.nat({ max: 1000 }),
        fc.constantFrom<Compression>("none", "gzip"),
        (pairs, tail, compression) => {
          let delta = -1;
          const records = pairs.map(([r, gap]) => ({ ...r, offsetDelta: (delta += gap + 1) }));
          const batch = encodeBatch(records, { timestamp: T0, baseOffset: 500, lastOffsetDelta: delta + tail, compression });
          expect(readBatchHeader(batch).lastOffsetDelta).toBe(delta + tail);
          expect(decodeRecords(batch).map((r) => r.offset)).toEqual(records.map((r) => 500 + r.offsetDelta));
          if (compression === "none") expect(Array.from(reencode(batch))).toEqual(Array.from(batch));
          else expect(decodeRecords(reencode(batch))).toEqual(decodeRecords(batch));
        },
      ),
      { numRuns: 100 },
    );
  });

  it("encodes an empty batch when told which offsets it covers", () => {
    const batch = encodeBatch([], { timestamp: T0, baseOffset: 7, lastOffsetDelta: 4 });
    expect(batch.length).toBe(BATCH_HEADER_BYTES);
    expect(readBatchHeader(batch)).toMatchObject({ recordCount: 0, lastOffsetDelta: 4, firstTimestamp: T0, maxTimestamp: T0 });
    expect(decodeRecords(batch)).toEqual([]);
    expect(() => encodeBatch([], { timestamp: T0 })).toThrow(/lastOffsetDelta/);
  });

  it("takes the first record's timestamp as the base, so later deltas may be negative", () => {
    const batch = encodeBatch([rec("a", "1", { timestamp: T0 + 50 }), rec("b", "2", { timestamp: T0 }), rec("c", "3")], { timestamp: T0 + 20 });
    expect(readBatchHeader(batch)).toMatchObject({ firstTimestamp: T0 + 50, maxTimestamp: T0 + 50 });
    expect(decodeRecords(batch).map((r) => r.timestamp)).toEqual([T0 + 50, T0, T0 + 20]);
  });

  it("writes lone surrogates in header keys as U+FFFD, as TextEncoder does, with the size to match", () => {
    const batch = encodeBatch([rec("k", "v", { headers: [{ key: "a\ud800b\udc00", value: null }, { key: "😀é", value: null }] })], { timestamp: T0 });
    expect(decodeRecords(batch, { verifyCrc: true })[0]!.headers.map((h) => h.key)).toEqual(["a\ufffdb\ufffd", "😀é"]);
  });

  it("sets the transactional and control bits when asked", () => {
    const h = readBatchHeader(encodeBatch([rec("k", "v")], { timestamp: T0, isTransactional: true, isControl: true }));
    expect(h).toMatchObject({ isTransactional: true, isControl: true, attributes: 0x30 });
  });

  it("gives every record the batch's maxTimestamp when the timestamp type is log-append time", () => {
    const batch = encodeBatch([rec("a", "1", { timestamp: T0 }), rec("b", "2", { timestamp: T0 + 9 })], { timestamp: T0 });
    batch[22] = batch[22]! | 0x08;
    fixCrc(batch);
    expect(readBatchHeader(batch).timestampType).toBe("log-append");
    expect(decodeRecords(batch, { verifyCrc: true }).map((r) => r.timestamp)).toEqual([T0 + 9, T0 + 9]);
  });

  it("refuses a timestamp that is not an integer as INVALID_REQUEST, and misuse of offset deltas as a bug", () => {
    for (const bad of [1.5, Number.NaN, 2 ** 53]) {
      let e: unknown;
      try {
        encodeBatch([rec("k", "v", { timestamp: bad })], { timestamp: T0 });
      } catch (x) {
        e = x;
      }
      expect(e).toBeInstanceOf(TributaryError);
      expect((e as TributaryError).code).toBe("INVALID_REQUEST");
    }
    expect(() => encodeBatch([rec("a", "1", { offsetDelta: 2 }), rec("b", "2", { offsetDelta: 2 })], { timestamp: T0 })).toThrow(/offset delta/);
    expect(() => encodeBatch([rec("a", "1", { offsetDelta: 5 })], { timestamp: T0, lastOffsetDelta: 4 })).toThrow(/lastOffsetDelta/);
  });
});

// ---- in-place rewrites -------------------------------------------------------------------------

describe("setBatchBaseOffset and setPartitionLeaderEpoch", () => {
  it("rewrite the fields outside the CRC: the CRC stays valid and offsets follow", () => {
    for (const compression of ["none", "gzip"] as const) {
      const batch = sampleBatch(compression);
      const crc = readBatchHeader(batch).crc;
      setBatchBaseOffset(batch, 2 ** 52 + 3);
      setPartitionLeaderEpoch(batch, 77);
      expect(verifyBatchCrc(batch)).toBe(true);
      expect(readBatchHeader(batch)).toMatchObject({ baseOffset: 2 ** 52 + 3, partitionLeaderEpoch: 77, crc });
      expect(decodeRecords(batch).map((r) => r.offset)).toEqual([2 ** 52 + 3, 2 ** 52 + 4, 2 ** 52 + 5]);
    }
  });

  it("refuse impossible values as bugs", () => {
    expect(() => setBatchBaseOffset(sampleBatch(), -1)).toThrow(/base offset/);
    expect(() => setPartitionLeaderEpoch(sampleBatch(), 2 ** 31)).toThrow(/epoch/);
    expect(() => setBatchBaseOffset(new Uint8Array(20), 0)).toThrow(/at least 61/);
  });
});

// ---- corruption, truncation, garbage ------------------------------------------------------------

const victims: [string, Uint8Array][] = [
  ...manifest.map((f) => [f.file, fixtureBytes(f)] as [string, Uint8Array]),
  ["encoded, none", sampleBatch("none")],
  ["encoded, gzip", sampleBatch("gzip")],
];

describe("corruption", () => {
  it.each(victims)("%s: every single-bit flip from the crc field to the end fails the CRC", (_name, original) => {
    for (let i = 17; i < original.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const b = original.slice();
        b[i] = b[i]! ^ (1 << bit);
        expect(verifyBatchCrc(b), `byte ${i} bit ${bit}`).toBe(false);
        if (i >= 21) expectCorrupt(() => decodeRecords(b, { verifyCrc: true }));
      }
    }
  });

  it.each(victims)("%s: every truncation throws CORRUPT_RECORD or, in splitBatches, leaves the partial batch out", (_name, original) => {
    const before = sampleBatch();
    for (let n = 0; n < original.length; n++) {
      const cut = original.subarray(0, n);
      if (n < BATCH_HEADER_BYTES) expectCorrupt(() => readBatchHeader(cut));
      else expect(readBatchHeader(cut).batchLength).toBe(original.length - 12);
      expectCorrupt(() => decodeRecords(cut));
      expect(verifyBatchCrc(cut)).toBe(false);
      expect(splitBatches(cut)).toEqual([]);
      expect(batchSizeAt(cut)).toBe(n < 12 ? -1 : original.length);
      const parts = splitBatches(concat([before, cut]));
      expect(parts.length).toBe(1);
      expect(Array.from(parts[0]!)).toEqual(Array.from(before));
    }
  });

  it("throws only CORRUPT_RECORD on random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 300 }), (buf, pos) => {
        onlyCorrupt(() => readBatchHeader(buf, pos));
        onlyCorrupt(() => decodeRecords(buf));
        onlyCorrupt(() => splitBatches(buf));
        onlyCorrupt(() => batchSizeAt(buf, pos));
        expect(typeof verifyBatchCrc(buf)).toBe("boolean");
      }),
      { numRuns: 2000 },
    );
  });

  it("throws only CORRUPT_RECORD on random bytes behind a plausible header (magic 2, matching length)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: BATCH_HEADER_BYTES, maxLength: 400 }), fc.constantFrom(0, 1), fc.nat({ max: 40 }), (buf, codec, count) => {
        const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
        v.setInt32(8, buf.length - 12);
        buf[16] = 2;
        v.setInt16(21, codec);
        v.setInt32(23, 1000);
        v.setInt32(57, count);
        onlyCorrupt(() => decodeRecords(buf));
        onlyCorrupt(() => splitBatches(buf));
      }),
      { numRuns: 2000 },
    );
  });

  it("throws only CORRUPT_RECORD when random bytes of a real batch are overwritten (CRC unchecked)", () => {
    const originals = victims.map(([, b]) => b);
    fc.assert(
      fc.property(
        fc.nat({ max: originals.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        (which, edits) => {
          const b = originals[which]!.slice();
          for (const [at, value] of edits) b[BATCH_HEADER_BYTES + (at % (b.length - BATCH_HEADER_BYTES))] = value;
          onlyCorrupt(() => decodeRecords(b));
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe("framing checks", () => {
  const edit = (f: (b: Uint8Array, v: DataView) => void): Uint8Array => {
    const b = sampleBatch();
    f(b, new DataView(b.buffer, b.byteOffset, b.byteLength));
    return fixCrc(b);
  };

  it("refuses magic 0 and 1 with a message naming the version", () => {
    for (const magic of [0, 1, 3]) {
      const b = edit((x) => (x[16] = magic));
      expect(expectCorrupt(() => readBatchHeader(b)).message).toMatch(/magic/);
      expectCorrupt(() => splitBatches(b));
    }
  });

  it.each([
    [2, /snappy.*unsupported/],
    [3, /lz4.*unsupported/],
    [4, /zstd.*unsupported/],
    [5, /unknown compression codec 5/],
  ] as const)("refuses codec %i", (codec, message) => {
    const b = edit((_, v) => v.setInt16(21, codec));
    expect(expectCorrupt(() => readBatchHeader(b)).message).toMatch(message);
    expectCorrupt(() => decodeRecords(b));
  });

  it("refuses a batchLength below the 49 header bytes it must count, even in splitBatches and batchSizeAt", () => {
    for (const len of [-1, 0, 48]) {
      const b = edit((_, v) => v.setInt32(8, len));
      expectCorrupt(() => readBatchHeader(b));
      expectCorrupt(() => batchSizeAt(b));
      expectCorrupt(() => splitBatches(b));
      expect(verifyBatchCrc(b)).toBe(false);
    }
  });

  it("refuses a record count that is negative, too large or too small", () => {
    for (const count of [-1, 2, 4, 1_000_000]) {
      const b = edit((_, v) => v.setInt32(57, count));
      expectCorrupt(() => decodeRecords(b));
    }
  });

  it("refuses bytes after the last record, and a buffer longer than its batch", () => {
    const b = sampleBatch();
    const longer = fixCrc(concat([b, new Uint8Array([0])]));
    new DataView(longer.buffer).setInt32(8, longer.length - 12);
    fixCrc(longer);
    expect(expectCorrupt(() => decodeRecords(longer)).message).toMatch(/after the last/);
    expect(expectCorrupt(() => decodeRecords(concat([b, b]))).message).toMatch(/bytes after a batch/);
  });

  it("refuses offset deltas that repeat or pass lastOffsetDelta", () => {
    const b = encodeBatch([rec("a", "1"), rec("b", "2")], { timestamp: T0 });
    // Second record: length varint, attributes, timestampDelta (1 byte), then offsetDelta.
    const second = BATCH_HEADER_BYTES + 1 + b[BATCH_HEADER_BYTES]! / 2;
    expect(b[second + 3]).toBe(2); // zigzag(1)
    const repeat = fixCrc(b.slice());
    repeat[second + 3] = 0;
    fixCrc(repeat);
    expectCorrupt(() => decodeRecords(repeat));
    const past = b.slice();
    new DataView(past.buffer).setInt32(23, 0);
    expectCorrupt(() => decodeRecords(fixCrc(past)));
  });

  it("refuses a header key that is not UTF-8", () => {
    const b = encodeBatch([rec("k", "v", { headers: [{ key: "ab", value: null }] })], { timestamp: T0 });
    const at = b.indexOf(0x61, BATCH_HEADER_BYTES + 6);
    b[at] = 0xff;
    expect(expectCorrupt(() => decodeRecords(fixCrc(b))).message).toMatch(/UTF-8/);
  });

  it("bounds gzip inflation, so a small bomb cannot take the memory", () => {
    const huge = encodeBatch([rec(null, null, { value: new Uint8Array(4 * 1024 * 1024) })], { timestamp: T0, compression: "gzip" });
    expect(huge.length).toBeLessThan(10_000);
    expect(decodeRecords(huge)[0]!.value!.length).toBe(4 * 1024 * 1024);
    expect(expectCorrupt(() => decodeRecords(huge, { maxUncompressedBytes: 1024 * 1024 })).message).toMatch(/inflate/);
  });

  it("refuses gzip records that are not gzip", () => {
    const b = sampleBatch("gzip");
    b.fill(0x41, BATCH_HEADER_BYTES);
    expectCorrupt(() => decodeRecords(fixCrc(b)));
    const notRecords = concat([b.subarray(0, BATCH_HEADER_BYTES), gzipSync(new Uint8Array([0x7f, 0x7f, 0x7f]))]);
    new DataView(notRecords.buffer).setInt32(8, notRecords.length - 12);
    expectCorrupt(() => decodeRecords(fixCrc(notRecords)));
  });

  it("refuses int64 header fields beyond 2^53", () => {
    const b = edit((_, v) => v.setUint32(43, 0x7fffffff));
    expect(expectCorrupt(() => readBatchHeader(b)).message).toMatch(/2\^53/);
  });
});

// ---- bytes.ts -----------------------------------------------------------------------------------

/** Kafka's zigzag varlong, computed with BigInt: an independent check of the float arithmetic. */
function varlongReference(v: number): number[] {
  const n = BigInt(v);
  let z = BigInt.asUintN(64, (n << 1n) ^ (n >> 63n));
  const out: number[] = [];
  while (z >= 0x80n) {
    out.push(Number(z & 0x7fn) | 0x80);
    z >>= 7n;
  }
  out.push(Number(z));
  return out;
}

describe("bytes: Writer and Reader", () => {
  it("writes varints as Kafka does", () => {
    const cases: [number, number[]][] = [
      [0, [0x00]],
      [-1, [0x01]],
      [1, [0x02]],
      [63, [0x7e]],
      [-64, [0x7f]],
      [64, [0x80, 0x01]],
      [300, [0xd8, 0x04]],
      [2147483647, [0xfe, 0xff, 0xff, 0xff, 0x0f]],
      [-2147483648, [0xff, 0xff, 0xff, 0xff, 0x0f]],
    ];
    for (const [v, bytes] of cases) {
      const buf = new Uint8Array(sizeOfVarint(v));
      new Writer(buf).varint(v);
      expect(Array.from(buf), String(v)).toEqual(bytes);
      expect(new Reader(buf).varint()).toBe(v);
    }
  });

  it("round-trips int32 varints and safe-integer varlongs, with sizes that match and bytes BigInt agrees with", () => {
    fc.assert(
      fc.property(fc.integer(), fc.maxSafeInteger(), (i, l) => {
        const buf = new Uint8Array(sizeOfVarint(i) + sizeOfVarlong(l) + 8);
        const w = new Writer(buf).varint(i).varlong(l).int64(l);
        expect(w.pos).toBe(buf.length);
        expect(Array.from(buf.subarray(sizeOfVarint(i), sizeOfVarint(i) + sizeOfVarlong(l)))).toEqual(varlongReference(l));
        const r = new Reader(buf);
        expect([r.varint(), r.varlong(), r.int64()]).toEqual([i, l, l]);
        expect(r.remaining).toBe(0);
      }),
      { numRuns: 2000 },
    );
  });

  it("round-trips unsigned varints and fixed-width integers", () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), fc.integer({ min: -128, max: 127 }), fc.integer({ min: -32768, max: 32767 }), (u, b, s) => {
        const buf = new Uint8Array(sizeOfUvarint(u) + 1 + 2 + 4);
        new Writer(buf).uvarint(u).int8(b).int16(s).uint32(u);
        const r = new Reader(buf);
        expect([r.uvarint(), r.int8(), r.int16(), r.uint32()]).toEqual([u, b, s, u]);
      }),
    );
  });

  it("throws CORRUPT_RECORD past the end, on over-long varints and on int64 beyond 2^53, never a RangeError", () => {
    expectCorrupt(() => new Reader(new Uint8Array(3)).int32());
    expectCorrupt(() => new Reader(new Uint8Array(7)).int64());
    expectCorrupt(() => new Reader(new Uint8Array(1), 1).int8());
    expectCorrupt(() => new Reader(new Uint8Array([0x80, 0x80])).varint());
    expectCorrupt(() => new Reader(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x1f])).varint());
    expectCorrupt(() => new Reader(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0x01])).uvarint());
    expectCorrupt(() => new Reader(new Uint8Array(11).fill(0x81)).varlong());
    expectCorrupt(() => new Reader(new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])).varlong());
    expectCorrupt(() => new Reader(new Uint8Array([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])).int64());
    expectCorrupt(() => new Reader(new Uint8Array(4)).bytes(5));
    expectCorrupt(() => new Reader(new Uint8Array(4)).bytes(-2));
    const big = new Uint8Array(8);
    new Writer(big).int64(Number.MAX_SAFE_INTEGER);
    expect(new Reader(big).int64()).toBe(Number.MAX_SAFE_INTEGER);
  });

  it("reads only within its window of a larger buffer", () => {
    const buf = new Uint8Array([1, 2, 3, 4, 5, 6]);
    const r = new Reader(buf.subarray(2), 1, 3);
    expect(Array.from(r.bytes(2))).toEqual([4, 5]);
    expectCorrupt(() => r.int8());
  });
});
