/** Small helpers shared by the benchmarks: percentiles, a markdown table, a description of the machine. */
import { spawn } from "node:child_process";
import { cpus, totalmem, release } from "node:os";
import { join, resolve } from "node:path";

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** The middle of `xs` (the lower middle for an even count), unsorted input. */
export function median(xs: readonly number[]): number {
  return percentile([...xs].sort((a, b) => a - b), 50);
}

export function table(headers: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.map(String).join(" | ")} |`;
  return [line(headers), line(headers.map(() => "---")), ...rows.map(line)].join("\n");
}

export function machine(): string {
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  const g = globalThis as { Bun?: { version: string }; Deno?: { version: { deno: string } } };
  const runtime = g.Bun ? `Bun ${g.Bun.version}` : g.Deno ? `Deno ${g.Deno.version.deno}` : `Node ${process.versions.node}`;
  return `${cpus().length} cores (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, driver on ${runtime}`;
}

export const fmt = {
  int: (n: number) => Math.round(n).toLocaleString("en-US"),
  mb: (n: number) => (n / 1e6).toFixed(1),
  ms: (n: number) => n.toFixed(2),
  ratio: (n: number) => `${n.toFixed(2)}x`,
};

/**
 * `text` (a markdown file such as bench/RESULTS.md) with `block` added at the end of the section
 * under `heading` (a "## " line), before the next "## " section; the section is made at the end
 * of the file if there is none. One blank line between blocks.
 *
 * @example
 *   await writeFile(path, appendToSection(await readFile(path, "utf8"), "## Replication", run));
 */
export function appendToSection(text: string, heading: string, block: string): string {
  // A whole line: "### Replication" is not the section "## Replication".
  const at = `\n${text}`.indexOf(`\n${heading}\n`);
  if (at < 0) return `${text.trimEnd()}\n\n${heading}\n\n${block.trim()}\n`;
  const next = text.indexOf("\n## ", at + heading.length);
  if (next < 0) return `${text.trimEnd()}\n\n${block.trim()}\n`;
  return `${text.slice(0, next).trimEnd()}\n\n${block.trim()}\n\n${text.slice(next + 1)}`;
}

/** The repository root, and a binary installed from npm (bun, deno). */
export const REPO = resolve(import.meta.dirname, "..");
export const npmBin = (name: string): string => join(REPO, "node_modules", ".bin", name);

/**
 * What a load generator (bench/http-load.ts, bench/grpc-load.ts, bench/vs-grpc-load.ts,
 * bench/nats-load.ts) prints as its one JSON line. Latencies in ms; the optional ones come from the generators built on
 * bench/load-stats.ts (null in the JSON when there was no sample).
 */
export interface LoadResult {
  records: number;
  bytes: number;
  elapsedMs: number;
  p50: number;
  p99: number;
  p999?: number | null;
  /** Produce to a consumer seeing it, p50 and p99; e2eSamples how many messages were matched. */
  e2eP50?: number | null;
  e2eP99?: number | null;
  e2eSamples?: number;
  /** CPU seconds the generator process itself used (all of its life). */
  loadCpuS?: number;
  errors: number;
}

/**
 * Run a load generator as its own Bun process, so it does not share an event loop with the
 * broker, and return the JSON line it prints. `env` adds to this process's environment (the
 * generators' LOAD_* options).
 *
 * @example
 *   const r = await runLoadProcess(["bench/http-load.ts", url, "bench", "1024", "100", "8", "3000"]);
 */
export function runLoadProcess(args: string[], env: Record<string, string> = {}): Promise<LoadResult> {
  return new Promise((resolveLoad, reject) => {
    const child = spawn(npmBin("bun"), args, { cwd: REPO, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) => (code === 0 ? resolveLoad(JSON.parse(out) as LoadResult) : reject(new Error(`load generator ${args[0]} exited ${code}`))));
  });
}
