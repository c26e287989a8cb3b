/**
 * Reading and writing the token file (format in tokens.ts). Writes are atomic (a temporary file
 * in the same directory, fsync'ed, then renamed over the old one) and the file is mode 0600, so a
 * broker re-reading it never sees half a file and other users never see the hashes.
 */
import { open, readFile, rename, unlink } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { TributaryError } from "../errors.ts";
import { EMPTY_TOKEN_FILE, parseTokenFile, type TokenFile } from "./tokens.ts";

/** The file's tokens; a file that does not exist yet holds none. */
export async function readTokenFile(path: string): Promise<TokenFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return EMPTY_TOKEN_FILE;
    throw e;
  }
  try {
    return parseTokenFile(JSON.parse(text));
  } catch (e) {
    if (e instanceof TributaryError) throw e;
    throw new TributaryError("INVALID_CONFIG", `token file ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

export async function writeTokenFile(path: string, file: TokenFile): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  const handle = await open(tmp, "wx", 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(file, null, 2)}\n`);
    await handle.sync();
  } catch (e) {
    await handle.close();
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await handle.close();
  await rename(tmp, path);
}
