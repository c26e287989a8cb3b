import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { KeylessPartitioner, murmur2, partitionForKey, toPositive } from "../src/partitioner.ts";

const enc = new TextEncoder();

// Kafka's own vectors: clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
const KAFKA_MURMUR2: [Uint8Array, number][] = [
  [enc.encode("21"), -973932308],
  [enc.encode("foobar"), -790332482],
  [enc.encode("a-little-bit-long-string"), -985981536],
  [enc.encode("a-little-bit-longer-string"), -1486304829],
  [enc.encode("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971],
  [new Uint8Array([0x61, 0x62, 0x63]), 479470107],
  // From sarama's murmur2 test, generated with the JVM client 1.0.0: bytes that are not text.
  [new Uint8Array([12, 42, 56, 24, 109, 111]), 274204207],
];

describe("murmur2", () => {
  it.each(KAFKA_MURMUR2.map(([k, h]) => [Array.from(k).join(","), k, h] as const))("hashes [%s] like Kafka's Utils.murmur2", (_name, key, hash) => {
    expect(murmur2(key)).toBe(hash);
  });

  it("hashes a view by its own bytes, whatever its offset in the underlying buffer", () => {
    const big = enc.encode("xxxa-little-bit-longer-stringyy");
    expect(murmur2(big.subarray(3, 29))).toBe(-1486304829);
  });

  it("covers every tail length (0 to 3 bytes past the last 4-byte block) and returns an int32", () => {
    const seen = new Set<number>();
    for (let n = 0; n <= 8; n++) {
      const h = murmur2(new Uint8Array(n).fill(0xff));
      expect(h).toBe(h | 0);
      seen.add(h);
    }
    expect(seen.size).toBe(9);
  });
});

describe("partitionForKey", () => {
  it("clears the sign bit rather than taking the absolute value, as Kafka's toPositive does", () => {
    expect(toPositive(-790332482)).toBe(1357151166);
    expect(toPositive(-2147483648)).toBe(0);
    expect(toPositive(479470107)).toBe(479470107);
  });

  // Expected partitions: toPositive(vector) % n, worked out by hand from the vectors above.
  it.each([
    ["21", 7, 3],
    ["foobar", 4, 2],
    ["foobar", 10, 6],
    ["a-little-bit-long-string", 12, 8],
    ["a-little-bit-longer-string", 6, 5],
    ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 10, 7],
    ["abc", 7, 4],
  ] as const)("puts key %s, with %i partitions, on partition %i like the Java producer", (key, n, expected) => {
    expect(partitionForKey(enc.encode(key), n)).toBe(expected);
  });

  it("differs from a Math.abs partitioner for a negative hash (the classic porting mistake)", () => {
    // |murmur2("foobar")| % 7 would be 2; Kafka puts it on 0.
    expect(partitionForKey(enc.encode("foobar"), 7)).toBe(0);
  });

  it("always lands in range", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 1, max: 1000 }), (key, n) => {
        const p = partitionForKey(key, n);
        return Number.isInteger(p) && p >= 0 && p < n;
      }),
    );
  });

  it("refuses a partition count that is not a positive integer, as a bug", () => {
    expect(() => partitionForKey(enc.encode("k"), 0)).toThrow(/partition count/);
  });
});

describe("KeylessPartitioner", () => {
  it("round-robin moves on every record", () => {
    const p = new KeylessPartitioner("round-robin");
    expect(Array.from({ length: 7 }, () => p.next(3))).toEqual([0, 1, 2, 0, 1, 2, 0]);
  });

  it("sticky keeps one partition for a whole request and moves on per request", () => {
    const p = new KeylessPartitioner("sticky");
    const requests: number[][] = [];
    for (let r = 0; r < 4; r++) {
      const first = p.partitionForRequest(3);
      requests.push([first, p.next(3), p.next(3)]);
    }
    expect(requests).toEqual([
      [0, 0, 0],
      [1, 1, 1],
      [2, 2, 2],
      [0, 0, 0],
    ]);
  });

  it("sticky next() picks a partition by itself before any request, and again when partitions shrink", () => {
    const p = new KeylessPartitioner("sticky", 4);
    expect(p.next(6)).toBe(4);
    expect(p.next(6)).toBe(4);
    expect(p.next(3)).toBe(2); // 4 is gone: rotate to 5 % 3
    expect(p.partitionForRequest(3)).toBe(0);
  });

  it("starts where told, and keeps rotating evenly however the count changes", () => {
    const p = new KeylessPartitioner("round-robin", 5);
    expect([p.next(4), p.next(4), p.next(2), p.next(2)]).toEqual([1, 2, 1, 0]);
    const counts = [0, 0, 0, 0, 0];
    for (let i = 0; i < 5000; i++) counts[p.partitionForRequest(5)]!++;
    expect(counts).toEqual([1000, 1000, 1000, 1000, 1000]);
  });
});
