/**
 * Bearer tokens for tests against broker processes: `tributary token create` run on Bun against a
 * token file, as an operator would; the token (printed once on stdout) is returned.
 */
import { spawnSync } from "node:child_process";
import { expect } from "vitest";
import { REPO_ROOT, runtimeCommand } from "./broker-process.ts";

export function createToken(tokensFile: string, name: string): string {
  const cmd = runtimeCommand("bun", ["token", "create", name, "--file", tokensFile]);
  const r = spawnSync(cmd.command, cmd.args, { cwd: REPO_ROOT, env: { ...process.env, NO_COLOR: "1" }, encoding: "utf8", timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim();
}
