/**
 * One "box" per broker on a single machine: each process in its own Linux CPU cgroup with the
 * same quota (`cores` of CPU time per period, all its threads together), so that a 3-peer
 * cluster is measured as three equal boxes would run it, and a single broker as one such box,
 * instead of everything sharing the machine's cores. cgroup v2 (`cpu.max`) or v1
 * (`cpu.cfs_quota_us`); needs root. The quota is enforced per 10 ms period, so a box that used its
 * share waits for the next period: latency percentiles under a quota carry that, and are not
 * what separate boxes would show.
 *
 * @example
 *   const box = await CpuBox.create("bench-peer-1", 0.5);
 *   box.add(broker.pid);
 *   ...
 *   await box.remove(); // after the process has exited
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

const ROOT = "/sys/fs/cgroup";
const PERIOD_US = 10_000;

export class CpuBox {
  private constructor(readonly dir: string) {}

  /** A cgroup named `name` limited to `cores`; throws, saying why, where that cannot be made. */
  static async create(name: string, cores: number): Promise<CpuBox> {
    if (!(cores > 0)) throw new Error(`a CPU box needs a positive number of cores, not ${cores}`);
    const quota = String(Math.round(cores * PERIOD_US));
    const v2 = existsSync(join(ROOT, "cgroup.controllers"));
    const dir = v2 ? join(ROOT, name) : join(ROOT, "cpu", name);
    try {
      if (v2 && !readFileSync(join(ROOT, "cgroup.subtree_control"), "utf8").includes("cpu")) await writeFile(join(ROOT, "cgroup.subtree_control"), "+cpu");
      await mkdir(dir, { recursive: true });
      if (v2) await writeFile(join(dir, "cpu.max"), `${quota} ${PERIOD_US}`);
      else {
        await writeFile(join(dir, "cpu.cfs_period_us"), String(PERIOD_US));
        await writeFile(join(dir, "cpu.cfs_quota_us"), quota);
      }
    } catch (e) {
      throw new Error(`cannot make the CPU cgroup ${dir} (root and a cgroup cpu controller are needed): ${(e as Error).message}`);
    }
    return new CpuBox(dir);
  }

  /** Move process `pid` (all its threads, and what it starts later) into the box. */
  add(pid: number): Promise<void> {
    return writeFile(join(this.dir, "cgroup.procs"), String(pid));
  }

  /** Delete the (empty) cgroup. */
  async remove(): Promise<void> {
    await rmdir(this.dir).catch(() => {});
  }
}
