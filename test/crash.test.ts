/**
 * Durability through kill -9: a broker process under concurrent produce load over HTTP is killed
 * with SIGKILL at random moments and restarted on the same data directory, several times; every
 * record whose produce call was acknowledged must be there afterwards, byte-equal, at the offset
 * the acknowledgement named, and in each producer's order. A torn tail written by hand into the
 * last segment must be cut off on restart without losing anything acknowledged. The active
 * segment's file runs past its batches (log.preallocate.bytes): the zeros there are cut off on
 * restart without a torn-tail warning; a torn batch written into them is cut off with one.
 *
 * The moments are drawn from a seeded random source; a failure prints the seed.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdtemp, open, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBrokerProcess, type BrokerProcess } from "./support/broker-process.ts";
import { batchesEnd } from "./support/log-fixtures.ts";
import { rng } from "./support/random.ts";

interface Acked {
  partition: number;
  offset: number;
  value: string; // base64
  producer: number;
  seq: number;
}

/** Values that are never valid UTF-8 (leading 0xFF), so the gateway returns them as base64 bytes. */
function valueFor(producer: number, seq: number, cycle: number): string {
  const bytes = new Uint8Array(48);
  bytes[0] = 0xff;
  const view = new DataView(bytes.buffer);
  view.setUint32(1, producer);
  view.setUint32(5, seq);
  view.setUint32(9, cycle);
  for (let i = 13; i < bytes.length; i++) bytes[i] = (i * 31 + seq * 7 + producer) & 0xff;
  return Buffer.from(bytes).toString("base64");
}

async function createTopic(url: string, name: string, partitions: number): Promise<void> {
  const res = await fetch(`${url}/v1/topics`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, partitions }),
  });
  expect(res.status).toBe(201);
}

/** Produce until the broker dies; return what was acknowledged. */
async function producerLoop(url: string, topic: string, producer: number, cycle: number, stopAt: { stop: boolean }, acked: Acked[], seqStart: { next: number }) {
  while (!stopAt.stop) {
    const batch = Array.from({ length: 20 }, () => seqStart.next++);
    const records = batch.map((seq) => ({ key: `p${producer}`, valueBase64: valueFor(producer, seq, cycle) }));
    let res: Response;
    try {
      res = await fetch(`${url}/v1/topics/${topic}/records`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ records }),
      });
    } catch {
      return; // the broker died: this request is not acknowledged
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      return;
    }
    let body: { offsets: { partition: number; offset: number }[] };
    try {
      body = (await res.json()) as typeof body;
    } catch {
      return; // the reply was cut off: not acknowledged
    }
    body.offsets.forEach((o, i) => acked.push({ ...o, value: records[i]!.valueBase64, producer, seq: batch[i]! }));
  }
}

async function readAll(url: string, topic: string, partition: number): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  let offset = 0;
  for (;;) {
    const res = await fetch(`${url}/v1/topics/${topic}/partitions/${partition}/records?offset=${offset}&maxRecords=5000&maxBytes=8388608`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { records: { offset: number; valueBase64?: string }[]; nextOffset: number; highWatermark: number };
    for (const r of body.records) out.set(r.offset, r.valueBase64 ?? "<not bytes>");
    if (body.nextOffset >= body.highWatermark || body.records.length === 0) return out;
    offset = body.nextOffset;
  }
}

async function checkAcked(url: string, topic: string, partitions: number, acked: Acked[], seed: number): Promise<void> {
  for (let p = 0; p < partitions; p++) {
    const stored = await readAll(url, topic, p);
    for (const a of acked.filter((x) => x.partition === p)) {
      expect(stored.get(a.offset), `seed ${seed}: acknowledged record ${a.producer}/${a.seq} at ${p}/${a.offset}`).toBe(a.value);
    }
  }
  // Each producer's acknowledged records keep its order within their partition.
  const byProducer = new Map<number, Acked[]>();
  for (const a of acked) byProducer.set(a.producer, [...(byProducer.get(a.producer) ?? []), a]);
  for (const list of byProducer.values()) {
    const sorted = [...list].sort((x, y) => x.seq - y.seq);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]!.partition === sorted[i - 1]!.partition) {
        expect(sorted[i]!.offset, `seed ${seed}: order of producer ${sorted[i]!.producer}`).toBeGreaterThan(sorted[i - 1]!.offset);
      }
    }
  }
}

const running: BrokerProcess[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const b of running.splice(0)) await b.kill("SIGKILL");
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe.each([
  { runtime: "bun" as const, cycles: 8 },
  { runtime: "deno" as const, cycles: 3 },
])("crash safety on $runtime", ({ runtime, cycles }) => {
  it(
    "keeps every acknowledged record through repeated SIGKILL under concurrent load",
    async () => {
      const seed = Number(process.env.TRIBUTARY_CRASH_SEED ?? Date.now() % 1_000_000);
      const random = rng(seed);
      const dataDir = await mkdtemp(join(tmpdir(), `tributary-crash-${runtime}-`));
      dirs.push(dataDir);
      const topic = "crash";
      const partitions = 3;
      const acked: Acked[] = [];
      const seqs = Array.from({ length: 6 }, () => ({ next: 0 }));
      for (let cycle = 0; cycle < cycles; cycle++) {
        const broker = await startBrokerProcess({ runtime, dataDir });
        running.push(broker);
        if (cycle === 0) await createTopic(broker.url, topic, partitions);
        else await checkAcked(broker.url, topic, partitions, acked, seed);
        const flag = { stop: false };
        const loops = seqs.map((s, producer) => producerLoop(broker.url, topic, producer, cycle, flag, acked, s));
        // Kill once enough has been acknowledged in this cycle, after a random extra delay.
        const before = acked.length;
        const deadline = Date.now() + 20_000;
        while (acked.length < before + 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        await new Promise((r) => setTimeout(r, Math.floor(random() * 700)));
        await broker.kill("SIGKILL");
        running.splice(running.indexOf(broker), 1);
        flag.stop = true;
        await Promise.all(loops);
        expect(acked.length, `seed ${seed}: cycle ${cycle} acknowledged records`).toBeGreaterThan(before);
      }
      const last = await startBrokerProcess({ runtime, dataDir });
      running.push(last);
      await checkAcked(last.url, topic, partitions, acked, seed);
    },
    180_000,
  );
});

/**
 * A Bun broker with one single-partition topic `topic`, one producer until `count` records are
 * acknowledged, then SIGKILL. Returns its data dir, what was acknowledged, and the path of the
 * partition's last segment.
 */
async function killedAfterAcks(topic: string, count: number): Promise<{ dataDir: string; acked: Acked[]; segment: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), `tributary-${topic}-`));
  dirs.push(dataDir);
  const first = await startBrokerProcess({ runtime: "bun", dataDir });
  running.push(first);
  await createTopic(first.url, topic, 1);
  const acked: Acked[] = [];
  const flag = { stop: false };
  const loop = producerLoop(first.url, topic, 0, 0, flag, acked, { next: 0 });
  while (acked.length < count) await new Promise((r) => setTimeout(r, 5));
  flag.stop = true;
  await loop;
  await first.kill("SIGKILL");
  running.splice(running.indexOf(first), 1);
  const [topicDir] = (await readdir(join(dataDir, "topics"))).filter((d) => d.startsWith(`${topic}~`));
  const partDir = join(dataDir, "topics", topicDir!, "0");
  const segment = join(partDir, (await readdir(partDir)).filter((f) => f.endsWith(".log")).sort().at(-1)!);
  return { dataDir, acked, segment };
}

describe("torn tail", () => {
  it("cuts a partial batch and garbage off the last segment on restart and keeps appending", async () => {
    const { dataDir, acked, segment } = await killedAfterAcks("torn", 100);
    const dataEnd = batchesEnd(await readFile(segment));
    // The file was extended ahead of the appends: zeros follow the batches.
    expect((await stat(segment)).size).toBeGreaterThan(dataEnd);
    // A batch header that promises 4000 bytes, then only some of them, then junk: a torn write,
    // where the next append would have gone.
    const torn = new Uint8Array(200);
    new DataView(torn.buffer).setBigInt64(0, 999n);
    new DataView(torn.buffer).setInt32(8, 4000);
    torn[16] = 2;
    for (let i = 61; i < torn.length; i++) torn[i] = (i * 13) & 0xff;
    const fh = await open(segment, "r+");
    await fh.write(torn, 0, torn.length, dataEnd);
    await fh.close();

    const second = await startBrokerProcess({ runtime: "bun", dataDir });
    running.push(second);
    expect((await stat(segment)).size).toBe(dataEnd);
    expect(second.stderrLines().some((l) => l.includes("truncated a torn or corrupt tail"))).toBe(true);
    await checkAcked(second.url, "torn", 1, acked, 0);
    const res = await fetch(`${second.url}/v1/topics/torn/records`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ records: [{ value: { after: "restart" } }] }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { offsets: { offset: number }[] };
    expect(body.offsets[0]!.offset).toBe(acked.length);
  }, 60_000);

  it("after kill -9, cuts the zeros the active segment was extended by, without calling them torn", async () => {
    const { dataDir, acked, segment } = await killedAfterAcks("pre", 50);
    const dataEnd = batchesEnd(await readFile(segment));
    expect((await stat(segment)).size).toBeGreaterThan(dataEnd);

    const second = await startBrokerProcess({ runtime: "bun", dataDir });
    running.push(second);
    expect((await stat(segment)).size).toBe(dataEnd);
    expect(second.stderrLines().filter((l) => l.includes("torn"))).toEqual([]);
    await checkAcked(second.url, "pre", 1, acked, 0);
    // A clean stop leaves the file exact too.
    await second.stop();
    running.splice(running.indexOf(second), 1);
    expect((await stat(segment)).size).toBe(dataEnd);
  }, 60_000);
});
