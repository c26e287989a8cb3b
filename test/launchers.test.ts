/**
 * The two ways a user starts a broker on Bun, `npm start` and the `tributary` command run as a
 * program (its shebang, as `npx tributary` runs it), start it with MIMALLOC_PURGE_DELAY=-1 (the
 * README's "Memory allocator"): without it, Bun's allocator hands freed pages back to the kernel
 * and every batch's buffers fault them in again. Read from the running broker's /proc entry.
 */
import { afterEach, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "./support/broker-process.ts";
import { waitFor } from "./support/wait.ts";

const running: { child: ChildProcess; dir: string }[] = [];

afterEach(async () => {
  for (const { child, dir } of running.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      // npm start runs the broker under sh under npm: signal the whole process group.
      process.kill(-child.pid!, "SIGTERM");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  }
});

/** Start `command args... serve` in its own process group; resolves once the broker listens on HTTP. */
async function launch(command: string, args: string[]): Promise<ChildProcess> {
  const dir = await mkdtemp(join(tmpdir(), "tributary-launch-"));
  const env: Record<string, string | undefined> = { ...process.env, PATH: `${join(REPO_ROOT, "node_modules/.bin")}:${process.env.PATH}` };
  delete env.MIMALLOC_PURGE_DELAY;
  const child = spawn(command, [...args, "--data-dir", dir, "--http-port", "0", "--grpc-port", "0"], { cwd: REPO_ROOT, env, detached: true, stdio: ["ignore", "ignore", "pipe"] });
  running.push({ child, dir });
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  await waitFor("the broker to listen", () => /"msg":"listening","listener":"http"/.test(stderr) || undefined, 30_000);
  return child;
}

/** The pids of `pid` and everything below it. */
async function tree(pid: number): Promise<number[]> {
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "")).trim();
  const below = await Promise.all(children ? children.split(/\s+/).map((c) => tree(Number(c))) : []);
  return [pid, ...below.flat()];
}

/** MIMALLOC_PURGE_DELAY of the Bun process running `serve` under `root`. */
async function brokerPurgeDelay(root: number): Promise<string | undefined> {
  for (const pid of await tree(root)) {
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
    if (!cmdline.some((a) => a.endsWith("bun")) || !cmdline.includes("serve")) continue;
    const environ = (await readFile(`/proc/${pid}/environ`, "utf8")).split("\0");
    return environ.find((v) => v.startsWith("MIMALLOC_PURGE_DELAY="))?.slice("MIMALLOC_PURGE_DELAY=".length) ?? "(unset)";
  }
  return undefined;
}

describe("broker launchers on Bun", () => {
  it("npm start runs the broker with MIMALLOC_PURGE_DELAY=-1", async () => {
    const child = await launch("npm", ["start", "--silent", "--"]);
    expect(await brokerPurgeDelay(child.pid!)).toBe("-1");
  });

  it("bin/tributary run as a program runs the broker with MIMALLOC_PURGE_DELAY=-1", async () => {
    const child = await launch(join(REPO_ROOT, "bin/tributary"), ["serve"]);
    expect(await brokerPurgeDelay(child.pid!)).toBe("-1");
  });
});
