/**
 * CRC-32C against the bitwise definition and RFC 3720's patterns, for both implementations: the
 * one `crc32c` runs (the native @node-rs/crc32 from 256 bytes on, where it loads) and the JS
 * tables alone. Then which one each runtime the broker runs on gets.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { crc32cBackend, crc32cUpdate, crc32cUpdateJs } from "../src/storage/crc32c.ts";
import { REPO_ROOT } from "./support/broker-process.ts";

/** The definition, one bit at a time: slow, obviously right, and sharing no tables with the code. */
function crc32cBitwise(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

describe.each([
  ["crc32cUpdate (the broker's)", crc32cUpdate],
  ["crc32cUpdateJs (the tables)", crc32cUpdateJs],
])("%s", (_name, crc32cUpdate) => {
  const crc32c = (buf: Uint8Array, start = 0, end = buf.length) => crc32cUpdate(0, buf, start, end);

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
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.nat(), fc.nat(), (buf, a, b) => {
        const start = buf.length === 0 ? 0 : a % (buf.length + 1);
        const end = start + (buf.length - start === 0 ? 0 : b % (buf.length - start + 1));
        return crc32c(buf, start, end) === crc32cBitwise(buf.slice(start, end)) && crc32c(buf) === crc32cBitwise(buf);
      }),
    );
  });

  it("continues across pieces: update(crc(a), b) = crc(a + b)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1000 }), fc.uint8Array({ maxLength: 1000 }), (a, b) => {
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
    const long = Uint8Array.from({ length: 5000 }, (_, i) => (i * 131 + 3) & 0xff);
    const view = long.subarray(7, 4007);
    expect(crc32c(view)).toBe(crc32cBitwise(view.slice()));
    expect(crc32c(long, 7, 4007)).toBe(crc32cBitwise(view.slice()));
  });

  it("refuses a range outside the buffer as a bug, not garbage", () => {
    expect(() => crc32c(new Uint8Array(4), 0, 5)).toThrow(/outside/);
    expect(() => crc32c(new Uint8Array(4), 3, 2)).toThrow(/outside/);
  });
});

describe("the implementation each runtime gets", () => {
  const script = `import { crc32cBackend } from "./src/storage/crc32c.ts"; console.log(crc32cBackend);`;
  it("is the native one under Node (this runner), Bun and Deno", () => {
    expect(crc32cBackend).toBe("native");
    const bun = execFileSync(join(REPO_ROOT, "node_modules/.bin/bun"), ["-e", script], { cwd: REPO_ROOT, encoding: "utf8" }).trim();
    const deno = execFileSync(join(REPO_ROOT, "node_modules/.bin/deno"), ["eval", "-A", "--ext=ts", script], { cwd: REPO_ROOT, encoding: "utf8" }).trim();
    expect({ bun, deno }).toEqual({ bun: "native", deno: "native" });
  });
});
