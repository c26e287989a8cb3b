/**
 * `npm run bench:profile [bun|deno] [RECORD_BYTES:BATCH:INFLIGHT | catchup:MIB]`: where a broker's
 * CPU goes in produce and fetch. One broker process runs under its runtime's profiler while
 * bench/vs-grpc-load.ts (another process) produces on a ProduceStream with a Subscribe tail
 * alongside (the fetch path), for BENCH_SECONDS (default 5); BENCH_FLUSH sets flush.mode (default
 * batch). `catchup:MIB` profiles scenario (e) instead: a backlog of MIB MiB of 1 KiB records is
 * written (batches of 100) to a broker without the profiler, which is then restarted under it
 * and read from the start with one Subscribe.
 *
 * - Bun: `bun --cpu-prof` writes a Chrome .cpuprofile when the process exits (SIGTERM).
 * - Deno 2.9 has no --cpu-prof flag: the broker runs with `--inspect=127.0.0.1:0` and this script
 *   drives V8's profiler over the inspector protocol (Profiler.start / Profiler.stop).
 *
 * Both give the same format; the summary prints self time by function and by area (our storage,
 * the broker, the gRPC gateway, grpc-js and HTTP/2, protobuf-es, runtime natives, garbage
 * collection), as shares of the samples in which the broker was busy. The raw profile is left in
 * bench/out/ (gitignored) for a flame graph (e.g. DevTools, speedscope).
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO, runLoadProcess, table } from "./lib.ts";
import { createTopic, STREAM_INFLIGHT_MAX, TOPIC } from "./vs-systems.ts";
import { startBrokerProcess, type BrokerProcess, type Runtime } from "../test/support/broker-process.ts";
import { waitFor } from "../test/support/wait.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
}

const OUT = join(REPO, "bench/out");
const TOP = 30;

/** The Deno inspector: one WebSocket, requests by id. */
async function inspector(broker: BrokerProcess): Promise<(method: string, params?: object) => Promise<unknown>> {
  const url = await waitFor("the inspector's address", () => broker.stderrLines().map((l) => l.match(/(ws:\/\/\S+)/)?.[1]).find(Boolean));
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let next = 1;
  const pending = new Map<number, (v: unknown) => void>();
  ws.onmessage = (e) => {
    const m = JSON.parse(String(e.data)) as { id?: number; result?: unknown };
    if (m.id !== undefined) pending.get(m.id)?.(m.result);
  };
  return (method, params = {}) =>
    new Promise((resolve) => {
      const id = next++;
      pending.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
}

function area(url: string, fn: string): string {
  if (fn === "(garbage collector)") return "garbage collection";
  if (fn === "(idle)" || fn === "(program)" || fn === "(root)") return fn;
  if (url.includes("/src/storage/")) return "src/storage (codec, CRC-32C, segments, flusher)";
  if (url.includes("/src/")) return "src (broker, partition, metrics, ...)";
  if (url.includes("/gateways/")) return "gateways (gRPC and HTTP front ends)";
  if (url.includes("@grpc/grpc-js")) return "grpc-js";
  if (url.includes("@bufbuild/protobuf")) return "protobuf-es";
  if (url.includes("node_modules")) return "other packages";
  if (url.startsWith("node:") || url.startsWith("internal:") || url.startsWith("ext:")) return "runtime JS (streams, http2, fs, net)";
  return "runtime natives";
}

function summarize(p: CpuProfile): string {
  const busy = p.nodes.filter((n) => !["(idle)", "(program)", "(root)"].includes(n.callFrame.functionName));
  const total = busy.reduce((a, n) => a + (n.hitCount ?? 0), 0) || 1;
  const byFn = new Map<string, number>();
  const byArea = new Map<string, number>();
  for (const n of busy) {
    const f = n.callFrame;
    const file = f.url.replace(/^.*\/(node_modules\/|wt-[^/]+\/|main\/)/, "");
    const key = `${f.functionName || "(anonymous)"} ${file ? `${file}:${f.lineNumber + 1}` : "[native]"}`;
    byFn.set(key, (byFn.get(key) ?? 0) + (n.hitCount ?? 0));
    const a = area(f.url, f.functionName);
    byArea.set(a, (byArea.get(a) ?? 0) + (n.hitCount ?? 0));
  }
  const pct = (v: number) => `${((v / total) * 100).toFixed(1)}%`;
  const top = [...byFn].sort((a, b) => b[1] - a[1]).slice(0, TOP);
  const areas = [...byArea].sort((a, b) => b[1] - a[1]);
  return [
    `busy samples: ${total}`,
    table(["area", "self"], areas.map(([a, v]) => [a, pct(v)])),
    table(["function", "self"], top.map(([f, v]) => [f, pct(v)])),
  ].join("\n\n");
}

const BROKER_ARGS = ["--grpc-stream-max-inflight", String(STREAM_INFLIGHT_MAX), "--flush-mode", process.env.BENCH_FLUSH ?? "batch"];

/** Scenario (e)'s backlog, written before the profiled broker starts: `records` 1 KiB records. */
async function fillBacklog(runtime: Runtime, dir: string, records: number): Promise<void> {
  const broker = await startBrokerProcess({ runtime, dataDir: dir, args: BROKER_ARGS });
  try {
    await createTopic(broker);
    const r = await runLoadProcess(["bench/vs-grpc-load.ts", "stream", broker.grpcAddress, TOPIC, "1024", "100", "16", "600000"], { LOAD_E2E: "0", LOAD_COUNT: String(records) });
    if (r.records < records) throw new Error(`wrote ${r.records} of ${records} backlog records`);
  } finally {
    await broker.stop();
  }
}

async function main(): Promise<void> {
  const runtime = (process.argv[2] ?? "bun") as Runtime;
  const shape = process.argv[3] ?? "1024:1:256";
  const [size, batch, inflight] = shape.split(":");
  const catchupRecords = size === "catchup" ? Math.floor((Number(batch ?? 256) * 2 ** 20) / 1024) : 0;
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  await mkdir(OUT, { recursive: true });
  const dir = await mkdtemp(join(tmpdir(), "tributary-profile-"));
  const profDir = await mkdtemp(join(tmpdir(), "tributary-cpuprof-"));
  try {
    if (catchupRecords > 0) await fillBacklog(runtime, dir, catchupRecords);
    const broker = await startBrokerProcess({
      runtime,
      dataDir: dir,
      runtimeArgs: runtime === "bun" ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : ["--inspect=127.0.0.1:0"],
      args: BROKER_ARGS,
    });
    let profile: CpuProfile;
    try {
      if (catchupRecords === 0) await createTopic(broker);
      const send = runtime === "deno" ? await inspector(broker) : null;
      await send?.("Profiler.enable");
      await send?.("Profiler.start");
      const load =
        catchupRecords > 0
          ? ["bench/vs-grpc-load.ts", "catchup", broker.grpcAddress, TOPIC, String(catchupRecords), "300000"]
          : ["bench/vs-grpc-load.ts", "stream", broker.grpcAddress, TOPIC, size!, batch!, inflight!, String(seconds * 1000)];
      const r = await runLoadProcess(load, { LOAD_E2E: "1" });
      console.log(`load: ${Math.round(r.records / (r.elapsedMs / 1000))} records/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`);
      profile = send ? ((await send("Profiler.stop")) as { profile: CpuProfile }).profile : { nodes: [] };
    } finally {
      await broker.stop();
    }
    if (runtime === "bun") {
      const file = (await readdir(profDir)).find((f) => f.endsWith(".cpuprofile"));
      if (!file) throw new Error("bun wrote no .cpuprofile");
      profile = JSON.parse(await readFile(join(profDir, file), "utf8")) as CpuProfile;
    }
    const out = join(OUT, catchupRecords > 0 ? `${runtime}-catchup-${batch}.cpuprofile` : `${runtime}-${size}x${batch}-${inflight}.cpuprofile`);
    await writeFile(out, JSON.stringify(profile));
    console.log(`profile: ${out}\n\n${summarize(profile)}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await rm(profDir, { recursive: true, force: true });
  }
}

await main();
