/**
 * `bun bench/peer-transport.ts`: what the peer transport (gateways/peer/) costs per MB, alone.
 * Two Bun processes on loopback: this one sends AppendEntries frames through a GrpcTransport as
 * a leader does (ENTRIES_PER_FRAME entries of ENTRY_BYTES each, one group), at most IN_FLIGHT
 * frames unanswered by the receiver's AppResp; the child (same file, argv "receive") is a
 * follower's transport that answers each App with an AppResp frame, as Raft does. Each side
 * reports its own CPU (process.cpuUsage) per MB of entry data, so a change to the codec or the
 * link can be measured without the brokers, storage and the noise of the whole cluster.
 *
 * Options (env): BENCH_SECONDS (default 3), BENCH_ENTRY_BYTES (default 102400: a batch of
 * 100 x 1 KiB records), BENCH_ENTRIES_PER_FRAME (default 2), BENCH_INFLIGHT (default 4).
 * Prints one JSON line: { mbPerS, sendCpuMsPerMb, receiveCpuMsPerMb, ... }.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { EntryType, MessageType, type Entry, type Message } from "../src/raft/index.ts";
import type { GroupMessage } from "../src/cluster/types.ts";
import { GrpcTransport } from "../gateways/peer/transport.ts";

const GROUP = "bench/0";
const seconds = Number(process.env.BENCH_SECONDS ?? 3);
const entryBytes = Number(process.env.BENCH_ENTRY_BYTES ?? 102_400);
const perFrame = Number(process.env.BENCH_ENTRIES_PER_FRAME ?? 2);
const inFlight = Number(process.env.BENCH_INFLIGHT ?? 4);

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function appResp(to: number, index: number): Message {
  return { type: MessageType.AppResp, from: 2, to, term: 1, logTerm: 0, index, entries: [], commit: index, reject: false, rejectHint: 0 };
}

/** The follower: answers every App with an AppResp naming its last index; prints CPU on stdin's end. */
async function receive(): Promise<void> {
  let transport: GrpcTransport | undefined;
  let bytes = 0;
  let started = 0;
  transport = await GrpcTransport.start({ self: 2, host: "127.0.0.1", port: 0, peers: [{ id: 1, address: process.argv[3]! }] });
  transport.listen({
    frame: (from, frame) => {
      for (const { message } of frame) {
        if (message.type !== MessageType.App) continue;
        if (started === 0) started = cpuMs();
        for (const e of message.entries) bytes += e.data.byteLength;
        const last = message.entries.at(-1)?.index ?? message.index;
        transport!.send(from, [{ group: GROUP, message: appResp(from, last) }]);
      }
    },
    call: () => Promise.reject(new Error("no calls")),
    unreachable: () => {},
  });
  console.log(JSON.stringify({ port: transport.port }));
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === "report") console.log(JSON.stringify({ cpuMs: cpuMs() - started, bytes }));
  }
  await transport.close();
}

async function send(): Promise<void> {
  let resolveAck: () => void = () => {};
  let acked = 0;
  const sender = await GrpcTransport.start({ self: 1, host: "127.0.0.1", port: 0, peers: [] });
  sender.listen({
    frame: (_from, frame) => {
      for (const { message } of frame) if (message.type === MessageType.AppResp) acked = Math.max(acked, message.index);
      resolveAck();
    },
    call: () => Promise.reject(new Error("no calls")),
    unreachable: () => {},
  });
  const child = spawn(process.execPath, [import.meta.path, "receive", `127.0.0.1:${sender.port}`], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const { port } = JSON.parse((await lines.next()).value as string) as { port: number };
  sender.setPeers([{ id: 1, address: `127.0.0.1:${sender.port}` }, { id: 2, address: `127.0.0.1:${port}` }]);

  const data = new Uint8Array(entryBytes).fill(7);
  let index = 0;
  const frame = (): GroupMessage[] => {
    const entries: Entry[] = [];
    for (let i = 0; i < perFrame; i++) entries.push({ term: 1, index: index + 1 + i, type: EntryType.Normal, data });
    const m: Message = { type: MessageType.App, from: 1, to: 2, term: 1, logTerm: 1, index, entries, commit: index, reject: false, rejectHint: 0 };
    index += perFrame;
    return [{ group: GROUP, message: m }];
  };
  const run = async (ms: number) => {
    const end = performance.now() + ms;
    while (performance.now() < end) {
      while (index - acked < inFlight * perFrame) sender.send(2, frame());
      await new Promise<void>((r) => {
        resolveAck = r;
        setTimeout(r, 100); // a dropped frame: carry on
      });
      if (index - acked >= inFlight * perFrame && performance.now() < end) acked = Math.max(acked, index - inFlight * perFrame + perFrame);
    }
  };
  await run(500); // warm up: connect, JIT
  const report = async () => {
    child.stdin!.write("report\n");
    return JSON.parse((await lines.next()).value as string) as { cpuMs: number; bytes: number };
  };
  const r0 = await report();
  const c0 = cpuMs();
  const a0 = acked;
  const t0 = performance.now();
  await run(seconds * 1000);
  const wallS = (performance.now() - t0) / 1000;
  const sentCpu = cpuMs() - c0;
  const r1 = await report();
  const mb = ((acked - a0) * entryBytes) / 1e6;
  const rmb = (r1.bytes - r0.bytes) / 1e6;
  console.log(
    JSON.stringify({
      entryBytes,
      perFrame,
      inFlight,
      mbPerS: +(mb / wallS).toFixed(1),
      sendCpuMsPerMb: +(sentCpu / mb).toFixed(2),
      receiveCpuMsPerMb: +((r1.cpuMs - r0.cpuMs) / rmb).toFixed(2),
    }),
  );
  child.stdin!.end();
  await new Promise((r) => child.once("exit", r));
  await sender.close();
}

if (process.argv[2] === "receive") await receive();
else await send();
