/**
 * What a benchmark reads about a server process from /proc (Linux): CPU seconds used so far
 * (`/proc/<pid>/stat` utime + stime, every thread, in clock ticks), resident memory now (VmRSS)
 * and its peak over the process's life (VmHWM, from `/proc/<pid>/status`). A process that has
 * exited reads as NaN, so a table shows the hole instead of a wrong number.
 *
 * @example
 *   const before = cpuSeconds(pid);
 *   await runLoad();
 *   const cpu = cpuSeconds(pid) - before, peak = peakRssBytes(pid);
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

let ticksPerSecond = 0;
function clockTicks(): number {
  if (ticksPerSecond === 0) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

function read(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

export function cpuSeconds(pid: number): number {
  const stat = read(`/proc/${pid}/stat`);
  if (stat === null) return NaN;
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / clockTicks();
}

function statusKiB(pid: number, key: "VmRSS" | "VmHWM"): number {
  const status = read(`/proc/${pid}/status`);
  const m = status?.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
  return m ? Number(m[1]) * 1024 : NaN;
}

export const rssBytes = (pid: number): number => statusKiB(pid, "VmRSS");
export const peakRssBytes = (pid: number): number => statusKiB(pid, "VmHWM");

/** CPU seconds of several processes (a cluster) summed; peak RSS of the largest one. */
export interface ProcSample {
  cpuS: number;
  peakRssBytes: number;
}

export function sample(pids: readonly number[]): ProcSample {
  return {
    cpuS: pids.reduce((a, pid) => a + cpuSeconds(pid), 0),
    peakRssBytes: Math.max(...pids.map(peakRssBytes)),
  };
}
