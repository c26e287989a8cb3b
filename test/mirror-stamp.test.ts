/**
 * The source stamp (bytes in, bytes out) and the central's admission rule: a table of sends
 * against positions, then a model of a link where the edge resends from wherever it likes and the
 * central forgets its in-memory position at random (a leader change), ending with the central's
 * log holding every source batch exactly once, in order.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { admitSend, positionFromBatches, readStamp, stampBatch, MIRROR_STAMP_EPOCH } from "../src/mirror/stamp.ts";
import { decodeRecords, encodeBatch, readBatchHeader, setBatchBaseOffset, setPartitionLeaderEpoch, verifyBatchCrc, type BatchHeader } from "../src/storage/record-batch.ts";
import { codeOf } from "./support/errors.ts";

const enc = new TextEncoder();

function sourceBatch(baseOffset: number, n: number, opts: { gapEvery?: number; producerId?: number } = {}): Uint8Array {
  const records = Array.from({ length: n }, (_, i) => ({ key: enc.encode(`dev-${i}`), value: enc.encode(`{"t":${i}}`), offsetDelta: opts.gapEvery ? i * opts.gapEvery : i }));
  const b = encodeBatch(records, { timestamp: 1_800_000_000_000, producerId: opts.producerId ?? -1, producerEpoch: opts.producerId === undefined ? -1 : 3, baseSequence: opts.producerId === undefined ? -1 : 40 });
  setBatchBaseOffset(b, baseOffset); // the edge's log assigned it
  setPartitionLeaderEpoch(b, 7);
  return b;
}

/** A header as the central sees it in a send: only offsets matter to admission. */
const hdr = (base: number, last: number): BatchHeader => readBatchHeader(sourceBatchAt(base, last));
function sourceBatchAt(base: number, last: number): Uint8Array {
  const b = encodeBatch([{ key: null, value: null }], { timestamp: 0, lastOffsetDelta: last - base });
  setBatchBaseOffset(b, base);
  return b;
}

describe("stampBatch", () => {
  it("writes the source offset into the producer fields, keeps the records, and leaves a valid CRC", () => {
    const b = sourceBatch(5000, 4, { gapEvery: 3, producerId: 99 });
    const before = decodeRecords(b);
    stampBatch(b);
    const h = readBatchHeader(b);
    expect(h).toMatchObject({ producerId: 5000, producerEpoch: MIRROR_STAMP_EPOCH, baseSequence: -1, lastOffsetDelta: 9, recordCount: 4, partitionLeaderEpoch: 7 });
    expect(verifyBatchCrc(b)).toBe(true);
    expect(readStamp(h)).toEqual({ from: 5000, to: 5010 });
    // The central's log stamps its own offset and term outside the CRC; the source offsets stay exact.
    setBatchBaseOffset(b, 17);
    setPartitionLeaderEpoch(b, 2);
    expect(verifyBatchCrc(b)).toBe(true);
    const central = readBatchHeader(b);
    expect(readStamp(central)).toEqual({ from: 5000, to: 5010 });
    const after = decodeRecords(b);
    expect(after.map((r) => r.offset - central.baseOffset + readStamp(central)!.from)).toEqual(before.map((r) => r.offset));
    expect(after.map((r) => r.value)).toEqual(before.map((r) => r.value));
  });

  it("refuses a batch whose CRC fails, leaving it untouched, so corruption is never laundered", async () => {
    const b = sourceBatch(10, 2);
    b[b.length - 1]! ^= 0x40;
    const copy = b.slice();
    expect(await codeOf(() => stampBatch(b))).toBe("CORRUPT_RECORD");
    expect(b).toEqual(copy);
  });

  it("finds the position in the newest stamped batch, past control and unstamped batches", () => {
    const stamped = sourceBatch(300, 5);
    stampBatch(stamped);
    const control = encodeBatch([{ key: null, value: null }], { timestamp: 0, isControl: true, producerId: 1, producerEpoch: MIRROR_STAMP_EPOCH });
    const plain = sourceBatch(0, 1, { producerId: 12 });
    expect(positionFromBatches([readBatchHeader(stamped), readBatchHeader(control), readBatchHeader(plain)])).toBe(305);
    expect(positionFromBatches([readBatchHeader(plain)])).toBeNull();
    expect(positionFromBatches([])).toBeNull();
  });
});

describe("admitSend", () => {
  const B = [hdr(100, 109), hdr(111, 119), hdr(120, 149)]; // offset 110 was a control batch at the edge

  const rows: { name: string; position: number | null; from: number; gaps?: [number, number][]; batches?: BatchHeader[]; write?: number[]; position2?: number | null; gap?: [number, number] | null; code?: string }[] = [
    { name: "a send that continues the position is written whole", position: 100, from: 100, write: [0, 1, 2], position2: 150 },
    { name: "a send may start below its first batch (control batches are not sent)", position: 98, from: 98, write: [0, 1, 2], position2: 150 },
    { name: "a replay below the position writes nothing", position: 150, from: 100, write: [], position2: 150 },
    { name: "an overlapping resend writes only what lies at or above the position", position: 111, from: 100, write: [1, 2], position2: 150 },
    { name: "the position may sit on a control batch's offset", position: 110, from: 100, write: [1, 2], position2: 150 },
    { name: "the central holding nothing takes any start", position: null, from: 100, write: [0, 1, 2], position2: 150 },
    { name: "a send without batches changes nothing", position: 150, from: 150, batches: [], write: [], position2: 150 },
    { name: "nor does one to a central holding nothing", position: null, from: 150, batches: [], write: [], position2: null },
    { name: "a declared gap is accepted", position: 40, from: 100, gaps: [[40, 70], [70, 100]], write: [0, 1, 2], position2: 150, gap: [40, 100] },
    { name: "an undeclared gap is refused", position: 40, from: 100, gaps: [[40, 99]], code: "OUT_OF_ORDER_SEQUENCE" },
    { name: "a batch straddling the position means the source changed", position: 125, from: 100, code: "INVALID_REQUEST" },
    { name: "batches below fromOffset are refused", position: 100, from: 101, code: "INVALID_REQUEST" },
    { name: "overlapping batches are refused", position: 100, from: 100, batches: [hdr(100, 110), hdr(110, 120)], code: "INVALID_REQUEST" },
  ];
  for (const r of rows) {
    it(r.name, async () => {
      const send = { fromOffset: r.from, gaps: (r.gaps ?? []).map(([from, to]) => ({ from, to })) };
      const run = () => admitSend(r.position, send, r.batches ?? B);
      if (r.code) return void expect(await codeOf(run)).toBe(r.code);
      const a = run();
      expect(a.write).toEqual(r.write);
      expect(a.position).toBe(r.position2);
      expect(a.gap).toEqual(r.gap ? { from: r.gap[0], to: r.gap[1] } : null);
    });
  }

  it("writes every source batch exactly once, in order, through arbitrary resends, lost acks and leader changes", () => {
    const arb = fc.record({
      // The source: batches of 1..5 offsets with 0..2 offsets of control batches between them.
      shape: fc.array(fc.tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 2 })), { minLength: 1, maxLength: 40 }),
      steps: fc.array(fc.record({ back: fc.nat({ max: 30 }), take: fc.integer({ min: 1, max: 8 }), lose: fc.boolean(), failover: fc.boolean() }), { maxLength: 120 }),
    });
    fc.assert(
      fc.property(arb, ({ shape, steps }) => {
        const source: BatchHeader[] = [];
        let at = 0;
        for (const [len, skip] of shape) {
          source.push(hdr(at, at + len - 1));
          at += len + skip;
        }
        const last = source[source.length - 1]!;
        const end = last.baseOffset + last.lastOffsetDelta + 1;
        const log: BatchHeader[] = []; // the central's target partition
        let position: number | null = null; // the central's, in memory
        let acked = 0; // what the edge last heard
        const tail = Array.from({ length: 100 }, () => ({ back: 0, take: 8, lose: false, failover: false }));
        for (const s of [...steps, ...tail]) {
          // A new central leader knows only its log; it is the same position.
          if (s.failover) position = positionFromBatches(log);
          expect(position).toBe(positionFromBatches(log));
          // The edge resends from anywhere at or below what it heard acknowledged.
          const from = Math.max(0, acked - s.back);
          const chunk = source.filter((h) => h.baseOffset >= from).slice(0, s.take);
          const a = admitSend(position, { fromOffset: from, gaps: [] }, chunk);
          for (const i of a.write) log.push({ ...chunk[i]!, producerId: chunk[i]!.baseOffset, producerEpoch: MIRROR_STAMP_EPOCH });
          position = a.position;
          if (!s.lose) acked = a.position ?? 0;
          if (acked >= end) break;
        }
        expect(log.map((h) => readStamp(h)!.from)).toEqual(source.map((h) => h.baseOffset));
      }),
    );
  });
});
