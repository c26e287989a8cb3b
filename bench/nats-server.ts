/**
 * NATS JetStream servers for the side-by-side benchmarks: one server, or a cluster of `size`
 * servers with `cluster {}` routes on loopback, each with file storage in its own directory and
 * free ports; started from scratch, ready once each logs "Server is ready" (and, for a cluster,
 * once a stream can be created: the JetStream meta group has elected its leader).
 *
 * `sync: "always"` writes `sync_interval: always` (fsync before every PubAck: the same promise as
 * Tributary's flush.mode=batch); `"default"` leaves JetStream's default (fsync every 2 minutes,
 * acks from the page cache). `sync_interval` needs nats-server 2.10 or later: the binary is
 * $NATS_SERVER, else bench/.tools/nats-server (`sh bench/get-nats-server.sh` fetches Debian
 * trixie's 2.10), else the system's (Debian bookworm's 2.9.10).
 *
 * @example
 *   const js = await startJetStream({ dir, sync: "always", size: 3 });
 *   const leaderUrl = await js.createStream({ name: "BENCH", subject: "bench", replicas: 3 });
 *   await js.stop();
 */
import { jetstreamManager, StorageType, type StreamInfo } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { REPO } from "./lib.ts";
import { freePorts } from "../test/support/ports.ts";

const STREAM_CREATE_TIMEOUT_MS = 90_000;

export function natsServerBinary(): string {
  if (process.env.NATS_SERVER) return process.env.NATS_SERVER;
  const fetched = join(REPO, "bench/.tools/nats-server");
  if (existsSync(fetched)) return fetched;
  for (const p of ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]) if (existsSync(p)) return p;
  return "nats-server";
}

/** "2.10.27", or null when the binary is missing. */
export function natsServerVersion(bin = natsServerBinary()): string | null {
  try {
    return execFileSync(bin, ["--version"]).toString().trim().replace(/^nats-server:\s*v?/, "");
  } catch {
    return null;
  }
}

/** Whether this server knows `sync_interval` (2.10 and later). */
export function natsCanSyncAlways(version: string | null): boolean {
  const [major, minor] = (version ?? "0.0").split(".").map(Number);
  return major! > 2 || (major === 2 && minor! >= 10);
}

export interface JetStreamServers {
  urls: string[];
  pids: number[];
  version: string;
  /** Create a file-storage stream; resolves with the URL of the server leading it. */
  createStream(s: { name: string; subject: string; replicas: number }): Promise<string>;
  stop(): Promise<void>;
}

interface Node {
  name: string;
  client: number;
  route: number;
}

function config(dir: string, node: Node, all: Node[], sync: "always" | "default"): string {
  const js = [`store_dir: "${join(dir, node.name)}"`, ...(sync === "always" ? ["sync_interval: always"] : [])];
  const lines = [`server_name: ${node.name}`, `listen: 127.0.0.1:${node.client}`, `jetstream { ${js.join(", ")} }`];
  if (all.length > 1) {
    const routes = all.map((n) => `nats-route://127.0.0.1:${n.route}`).join(", ");
    lines.push(`cluster { name: bench, listen: 127.0.0.1:${node.route}, routes: [${routes}] }`);
  }
  return lines.join("\n") + "\n";
}

interface Started {
  child: ChildProcess;
  /** The server's log lately (its last LOG_KEEP_CHARS). */
  log(): string;
}
const LOG_KEEP_CHARS = 20_000;

function startOne(bin: string, configPath: string): Promise<Started> {
  const child = spawn(bin, ["-c", configPath], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  let ready = false;
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited ${code}:\n${log.slice(-4000)}`));
    };
    const timer = setTimeout(() => {
      child.off("exit", onExit);
      child.kill("SIGKILL");
      reject(new Error(`nats-server ${configPath} not ready in 30 s:\n${log.slice(-4000)}`));
    }, 30_000);
    child.once("exit", onExit);
    child.stderr!.setEncoding("utf8");
    // Read to the end, so a chatty server never blocks on a full pipe; keep only the tail.
    child.stderr!.on("data", (d: string) => {
      log = (log + d).slice(-LOG_KEEP_CHARS);
      if (!ready && log.includes("Server is ready")) {
        ready = true;
        clearTimeout(timer);
        child.off("exit", onExit);
        resolve({ child, log: () => log });
      }
    });
  });
}

function stopOne(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(force);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

export async function startJetStream(options: { dir: string; sync: "always" | "default"; size?: number }): Promise<JetStreamServers> {
  const bin = natsServerBinary();
  const version = natsServerVersion(bin);
  if (version === null) throw new Error(`nats-server not found (${bin}): apt-get install -y nats-server, or sh bench/get-nats-server.sh`);
  if (options.sync === "always" && !natsCanSyncAlways(version)) {
    throw new Error(`nats-server ${version} has no sync_interval (2.10+ needed for ack after fsync): run sh bench/get-nats-server.sh`);
  }
  const size = options.size ?? 1;
  const ports = await freePorts(2 * size);
  const nodes: Node[] = Array.from({ length: size }, (_, i) => ({ name: `n${i + 1}`, client: ports[2 * i]!, route: ports[2 * i + 1]! }));
  await mkdir(options.dir, { recursive: true });
  const started: Started[] = [];
  const stop = async () => {
    await Promise.all(started.map((s) => stopOne(s.child)));
  };
  const logs = () => started.map((s, i) => `--- ${nodes[i]!.name}:\n${s.log().slice(-1000)}`).join("\n");
  try {
    for (const n of nodes) {
      const path = join(options.dir, `${n.name}.conf`);
      await writeFile(path, config(options.dir, n, nodes, options.sync));
      started.push(await startOne(bin, path));
    }
  } catch (e) {
    await stop();
    throw e;
  }
  const urls = nodes.map((n) => `127.0.0.1:${n.client}`);
  return {
    urls,
    pids: started.map((s) => s.child.pid!),
    version,
    stop,
    async createStream(s) {
      const nc = await connect({ servers: urls });
      try {
        // A new cluster times out or answers "JetStream system temporarily unavailable" until
        // its meta group has a leader: retry the whole creation until then (bounded).
        let lastError: unknown = null;
        let info: StreamInfo | undefined;
        const deadline = Date.now() + STREAM_CREATE_TIMEOUT_MS;
        while (!info && Date.now() < deadline) {
          try {
            const jsm = await jetstreamManager(nc, { timeout: 5000 });
            await jsm.streams.add({ name: s.name, subjects: [s.subject], storage: StorageType.File, num_replicas: s.replicas });
            const i = await jsm.streams.info(s.name);
            if (s.replicas === 1 || i.cluster?.leader) info = i;
          } catch (e) {
            lastError = e;
          }
          if (!info) await new Promise((r) => setTimeout(r, 250));
        }
        if (!info) throw new Error(`JetStream stream ${s.name} not created in ${STREAM_CREATE_TIMEOUT_MS} ms: ${String(lastError)}\n${logs().slice(-3000)}`);
        const leader = info.cluster?.leader;
        const i = leader ? nodes.findIndex((n) => n.name === leader) : 0;
        return urls[Math.max(0, i)]!;
      } finally {
        await nc.close();
      }
    },
  };
}
