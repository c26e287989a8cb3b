/** Small helpers shared by the benchmarks: percentiles, a markdown table, a description of the machine. */
import { cpus, totalmem, release } from "node:os";

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
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
