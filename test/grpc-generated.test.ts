/**
 * The generated TypeScript in gateways/grpc/gen/ must be what `npm run generate` makes from
 * proto/ today: this regenerates into a temporary directory with the same buf.gen.yaml and
 * compares every file. A failure means a .proto changed without `npm run generate`, or someone
 * edited generated code by hand.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./support/broker-process.ts";

const run = promisify(execFile);
const GEN_DIR = "gateways/grpc/gen";

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) await walk(path);
      else out.push(relative(dir, path));
    }
  };
  await walk(dir);
  return out.sort();
}

describe("generated gRPC code", () => {
  let tmp = "";
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("matches what npm run generate makes from proto/", async () => {
    tmp = await mkdtemp(join(tmpdir(), "tributary-gen-"));
    // -o prefixes the template's `out`, so the fresh copy lands in tmp/gateways/grpc/gen.
    await run(join(REPO_ROOT, "node_modules/.bin/buf"), ["generate", "--template", "buf.gen.yaml", "-o", tmp], { cwd: REPO_ROOT });
    const fresh = join(tmp, GEN_DIR);
    const committed = join(REPO_ROOT, GEN_DIR);
    const files = await listFiles(fresh);
    expect(files.length).toBeGreaterThan(0);
    expect(await listFiles(committed), "files in gateways/grpc/gen (run npm run generate)").toEqual(files);
    for (const f of files) {
      const [a, b] = await Promise.all([readFile(join(committed, f), "utf8"), readFile(join(fresh, f), "utf8")]);
      expect(a, `${GEN_DIR}/${f} is stale or edited by hand: run npm run generate`).toBe(b);
    }
  });

  it("passes buf lint", async () => {
    await run(join(REPO_ROOT, "node_modules/.bin/buf"), ["lint"], { cwd: REPO_ROOT });
  });
});
