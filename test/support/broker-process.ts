/**
 * A real broker process for process-level tests: `tributary serve` under Bun or Deno on free
 * loopback ports, started from the repository root. Readiness is the JSON lines the serve command
 * logs once each listener is up ({"msg":"listening","listener":"http"|"grpc","port":N,...}): the
 * start resolves when both the HTTP and the gRPC gateway listen; there are no fixed sleeps. A
 * start that fails or hangs reports the process's stderr.
 *
 * @example
 *   const broker = await startBrokerProcess({ runtime: "bun", dataDir });
 *   await fetch(`${broker.url}/healthz`);
 *   new Client(broker.grpcAddress, credentials.createInsecure()); // the gRPC gateway
 *   await broker.stop();
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

export type Runtime = "bun" | "deno";

export interface BrokerProcessOptions {
  runtime: Runtime;
  dataDir: string;
  env?: Record<string, string>;
  /** Extra `serve` flags, after --data-dir and --http-port. */
  args?: string[];
  /** Flags for the runtime itself, before the script (a profiler: `--inspect=127.0.0.1:0` on Deno, `--cpu-prof` on Bun). */
  runtimeArgs?: string[];
  /** How long to wait for the "listening" line; default 30 s. */
  startTimeoutMs?: number;
}

export interface BrokerProcess {
  url: string;
  port: number;
  /** The gRPC gateway's port, and host:port to dial. */
  grpcPort: number;
  grpcAddress: string;
  pid: number;
  child: ChildProcess;
  /** Every stderr line so far (the broker's JSON log lines, and anything else it printed). */
  stderrLines(): string[];
  /** Send `signal` and resolve once the process has exited (at once if it already has). */
  kill(signal: NodeJS.Signals): Promise<void>;
  /** SIGTERM, then SIGKILL if it has not exited within 10 s. */
  stop(): Promise<void>;
}

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** The command line that runs `cli/main.ts` with `args` under `runtime`, from the repository root. */
export function runtimeCommand(runtime: Runtime, args: string[], runtimeArgs: string[] = []): { command: string; args: string[] } {
  if (runtime === "bun") return { command: join(REPO_ROOT, "node_modules/.bin/bun"), args: [...runtimeArgs, "cli/main.ts", ...args] };
  return { command: join(REPO_ROOT, "node_modules/.bin/deno"), args: ["run", "-A", ...runtimeArgs, "cli/main.ts", ...args] };
}

/**
 * The environment a broker runs with on Bun, as `npm start` and `bin/tributary` start it (see the
 * README, "Memory allocator"): mimalloc keeps the pages it frees instead of returning them to the
 * kernel after 100 ms (Bun's default), so the next batch's buffers do not fault them back in.
 */
export const BUN_BROKER_ENV: Readonly<Record<string, string>> = { MIMALLOC_PURGE_DELAY: "-1" };

/** The environment a broker under `runtime` starts with: BUN_BROKER_ENV on Bun, which this process's environment overrides. */
export function brokerEnv(runtime: Runtime): NodeJS.ProcessEnv {
  return { ...(runtime === "bun" ? BUN_BROKER_ENV : {}), ...process.env };
}

/** Keep at most this many stderr lines: a long test must not grow memory without bound. */
const STDERR_LINES_MAX = 5000;

interface ListeningLine {
  msg: string;
  listener?: string;
  url?: string;
  port?: number;
}

function parseListening(line: string): ListeningLine | null {
  if (!line.startsWith("{")) return null;
  try {
    const v = JSON.parse(line) as ListeningLine;
    return v.msg === "listening" && (v.listener === "http" || v.listener === "grpc") && typeof v.port === "number" ? v : null;
  } catch {
    return null;
  }
}

export async function startBrokerProcess(options: BrokerProcessOptions): Promise<BrokerProcess> {
  const cmd = runtimeCommand(options.runtime, [
    "serve",
    "--data-dir",
    options.dataDir,
    "--http-port",
    "0",
    // Every listener on a free port, so brokers of parallel tests never meet on a default one.
    "--grpc-port",
    "0",
    ...(options.args ?? []),
  ], options.runtimeArgs);
  const child = spawn(cmd.command, cmd.args, {
    cwd: REPO_ROOT,
    env: { ...brokerEnv(options.runtime), DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let partial = "";
  let exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exitPromise = new Promise<void>((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve();
    });
  });
  // stdout is drained so a chatty child can never block on a full pipe.
  child.stdout?.resume();

  const listening = await new Promise<{ port: number; url: string; grpcPort: number }>((resolve, reject) => {
    let http: { port: number; url: string } | null = null;
    let grpcPort: number | null = null;
    const timeoutMs = options.startTimeoutMs ?? 30_000;
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`broker (${options.runtime}) ${why}; stderr:\n${[...lines, partial].join("\n")}`));
    };
    const timer = setTimeout(() => fail(`did not log "listening" within ${timeoutMs} ms`), timeoutMs);
    child.once("error", (e) => fail(`could not be spawned: ${e.message}`));
    child.once("exit", (code, signal) => fail(`exited before listening (code ${code}, signal ${signal})`));
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      partial += chunk;
      const parts = partial.split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) {
        lines.push(line);
        if (lines.length > STDERR_LINES_MAX) lines.splice(0, lines.length - STDERR_LINES_MAX);
        const found = settled ? null : parseListening(line);
        if (found?.port === undefined) continue;
        if (found.listener === "http") http = { port: found.port, url: found.url ?? `http://127.0.0.1:${found.port}` };
        else grpcPort = found.port;
        if (http && grpcPort !== null) {
          settled = true;
          clearTimeout(timer);
          resolve({ ...http, grpcPort });
        }
      }
    });
  });

  const kill = async (signal: NodeJS.Signals): Promise<void> => {
    if (exited === null) child.kill(signal);
    await exitPromise;
  };
  return {
    url: listening.url,
    port: listening.port,
    grpcPort: listening.grpcPort,
    grpcAddress: `127.0.0.1:${listening.grpcPort}`,
    pid: child.pid ?? -1,
    child,
    stderrLines: () => [...lines],
    kill,
    async stop() {
      if (exited !== null) return;
      child.kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const forced = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          child.kill("SIGKILL");
          resolve();
        }, 10_000);
      });
      await Promise.race([exitPromise, forced]);
      clearTimeout(timer);
      await exitPromise;
    },
  };
}
