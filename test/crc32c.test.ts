import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { crc32c, crc32cUpdate } from "../src/storage/crc32c.ts";

/** The definition, one bit at a time: slow, obviously right, and sharing no tables with the code. */
function crc32cBitwise(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

describe("crc32c", () => {
  it("gives the check value for 123456789", () => {
    expect(crc32c(new TextEncoder().encode("123456789"))).toBe(0xe3069283);
  });

  // RFC 3720 (iSCSI) appendix B.4 test patterns.
  it.each([
    ["32 zero bytes", new Uint8Array(32), 0x8a9136aa],
    ["32 bytes of 0xff", new Uint8Array(32).fill(0xff), 0x62a8ab43],
    ["32 ascending bytes", Uint8Array.from({ length: 32 }, (_, i) => i), 0x46dd794e],
    ["32 descending bytes", Uint8Array.from({ length: 32 }, (_, i) => 31 - i), 0x113fdb5c],
  ])("matches RFC 3720 for %s", (_name, buf, expected) => {
    expect(crc32c(buf)).toBe(expected);
  });

  it("is 0 for no bytes and unsigned for every input", () => {
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32c(new Uint8Array([0x80]))).toBeGreaterThan(0x7fffffff);
  });

  it("agrees with the bitwise definition at every length around the 16-byte step", () => {
    const data = Uint8Array.from({ length: 70 }, (_, i) => (i * 151 + 7) & 0xff);
    for (let n = 0; n <= data.length; n++) expect(crc32c(data.subarray(0, n))).toBe(crc32cBitwise(data.subarray(0, n)));
  });

  it("agrees with the bitwise definition on arbitrary bytes and ranges", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), (buf, a, b) => {
        const start = buf.length === 0 ? 0 : a % (buf.length + 1);
        const end = start + (buf.length - start === 0 ? 0 : b % (buf.length - start + 1));
        return crc32c(buf, start, end) === crc32cBitwise(buf.slice(start, end)) && crc32c(buf) === crc32cBitwise(buf);
      }),
    );
  });

  it("continues across pieces: update(crc(a), b) = crc(a + b)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 100 }), (a, b) => {
        const ab = new Uint8Array(a.length + b.length);
        ab.set(a);
        ab.set(b, a.length);
        return crc32cUpdate(crc32c(a), b) === crc32c(ab);
      }),
    );
  });

  it("reads a view by its own bytes, not the underlying buffer's", () => {
    const big = new TextEncoder().encode("xx123456789yyy");
    expect(crc32c(big.subarray(2, 11))).toBe(0xe3069283);
    expect(crc32c(big, 2, 11)).toBe(0xe3069283);
  });

  it("refuses a range outside the buffer as a bug, not garbage", () => {
    expect(() => crc32c(new Uint8Array(4), 0, 5)).toThrow(/outside/);
    expect(() => crc32c(new Uint8Array(4), 3, 2)).toThrow(/outside/);
  });
});
