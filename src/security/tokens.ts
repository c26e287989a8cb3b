/**
 * Bearer tokens and the token file. A token is `trb_<id>_<secret>`: `id` (16 hex digits) names the
 * file entry to check, so a request costs one key derivation, not one per entry; `secret` is 32
 * random bytes (base64url). The file keeps only a salted scrypt hash of the secret, never the
 * token; a token is shown once, when it is created.
 *
 * Token file (JSON, `auth.tokens.file`; written by `tributary token create|revoke`, mode 0600):
 *
 *   { "version": 1,
 *     "tokens": [ { "id": "9c1f0e2a7b3d4c55", "name": "sensor-gw", "kdf": "scrypt:16384:8:1",
 *                   "salt": "<base64>", "hash": "<base64, 32 bytes>", "createdAtMs": 1790000000000,
 *                   "revokedAtMs": null } ] }
 *
 * `name` is the principal a request with that token runs as; several tokens may share a name
 * (rotation). A revoked entry is kept (with `revokedAtMs`) so a refusal can say "revoked"
 * rather than "unknown".
 *
 * @example
 *   const { token, entry } = await newToken("sensor-gw", Date.now());
 *   await verifySecret(entry, token) === "ok";
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto";
import { TributaryError } from "../errors.ts";

export interface TokenEntry {
  id: string;
  name: string;
  kdf: string;
  salt: string;
  hash: string;
  createdAtMs: number;
  revokedAtMs: number | null;
}

export interface TokenFile {
  version: 1;
  tokens: TokenEntry[];
}

export const EMPTY_TOKEN_FILE: TokenFile = { version: 1, tokens: [] };

/**
 * scrypt at N=2^14, r=8, p=1 (16 MiB, tens of ms on a 2-core gateway). The secret is 256 random
 * bits, so the hash is not what keeps it safe against guessing; the cost protects a stolen file
 * against tokens made weak by accident, and verified tokens are cached (see authenticator.ts).
 */
const KDF = { name: "scrypt:16384:8:1", N: 16384, r: 8, p: 1, keyLen: 32, saltLen: 16 } as const;
const TOKEN_RE = /^trb_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const NAME_RE = /^[A-Za-z0-9._@-]{1,128}$/;

/** The scrypt options of a `scrypt:N:r:p` kdf field; INVALID_CONFIG for one scrypt would refuse. */
function kdfOptions(kdf: string): ScryptOptions {
  const m = /^scrypt:(\d{1,10}):(\d{1,4}):(\d{1,4})$/.exec(kdf);
  const [N, r, p] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
  // N a power of two above 1; the memory scrypt needs (128 * N * r) within maxmem.
  if (!m || N < 2 || (N & (N - 1)) !== 0 || r < 1 || p < 1 || 128 * N * r > KDF_MAXMEM / 2) {
    throw new TributaryError("INVALID_CONFIG", `token file: unknown or unusable kdf ${JSON.stringify(kdf)} (expected scrypt:<N, a power of 2>:<r>:<p>)`);
  }
  return { N, r, p, maxmem: KDF_MAXMEM };
}
const KDF_MAXMEM = 64 * 1024 * 1024;

function derive(secret: string, salt: Buffer, kdf: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    try {
      scrypt(secret, salt, KDF.keyLen, kdfOptions(kdf), (err, key) => (err ? reject(new TributaryError("INVALID_CONFIG", `token file: kdf ${JSON.stringify(kdf)} failed: ${err.message}`)) : resolve(key)));
    } catch (e) {
      reject(e instanceof TributaryError ? e : new TributaryError("INVALID_CONFIG", `token file: kdf ${JSON.stringify(kdf)} failed: ${(e as Error).message}`));
    }
  });
}

/** The id and secret of a well-formed token; null for anything else. */
export function splitToken(token: string): { id: string; secret: string } | null {
  const m = TOKEN_RE.exec(token);
  return m ? { id: m[1]!, secret: m[2]! } : null;
}

export function checkTokenName(name: string): void {
  if (!NAME_RE.test(name)) throw new TributaryError("INVALID_REQUEST", `a token name is 1 to 128 of A-Z a-z 0-9 . _ @ -, got ${JSON.stringify(name)}`);
}

/** A fresh token and the entry that stores its hash. */
export async function newToken(name: string, nowMs: number): Promise<{ token: string; entry: TokenEntry }> {
  checkTokenName(name);
  const id = randomBytes(8).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  const salt = randomBytes(KDF.saltLen);
  const hash = await derive(secret, salt, KDF.name);
  return {
    token: `trb_${id}_${secret}`,
    entry: { id, name, kdf: KDF.name, salt: salt.toString("base64"), hash: hash.toString("base64"), createdAtMs: nowMs, revokedAtMs: null },
  };
}

export type Verdict = "ok" | "malformed" | "unknown" | "revoked";

/** Check a presented token against the file; constant-time on the hash. */
export async function verifyToken(file: TokenFile, token: string): Promise<{ verdict: Verdict; entry?: TokenEntry }> {
  const parts = splitToken(token);
  if (!parts) return { verdict: "malformed" };
  const entry = file.tokens.find((t) => t.id === parts.id);
  if (!entry) return { verdict: "unknown" };
  const expected = Buffer.from(entry.hash, "base64");
  const got = await derive(parts.secret, Buffer.from(entry.salt, "base64"), entry.kdf);
  if (expected.length !== got.length || !timingSafeEqual(expected, got)) return { verdict: "unknown" };
  // Revocation is checked after the hash, so "revoked" is said only to someone holding the token.
  if (entry.revokedAtMs !== null) return { verdict: "revoked", entry };
  return { verdict: "ok", entry };
}

/** Revoke every live token of `nameOrId` (a principal name or a token id); how many were revoked. */
export function revoke(file: TokenFile, nameOrId: string, nowMs: number): { file: TokenFile; revoked: number } {
  let revoked = 0;
  const tokens = file.tokens.map((t) => {
    if (t.revokedAtMs === null && (t.name === nameOrId || t.id === nameOrId)) {
      revoked++;
      return { ...t, revokedAtMs: nowMs };
    }
    return t;
  });
  return { file: { version: 1, tokens }, revoked };
}

/** Check the parsed JSON of a token file; anything off is INVALID_CONFIG. */
export function parseTokenFile(json: unknown): TokenFile {
  const bad = (why: string) => new TributaryError("INVALID_CONFIG", `token file: ${why}`);
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw bad(`expected {"version": 1, "tokens": [...]}`);
  const o = json as Record<string, unknown>;
  if (o.version !== 1) throw bad(`version must be 1`);
  if (!Array.isArray(o.tokens)) throw bad(`tokens must be a list`);
  const tokens = o.tokens.map((raw: unknown, i): TokenEntry => {
    const t = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
    const str = (k: string) => {
      if (typeof t[k] !== "string" || t[k] === "") throw bad(`tokens[${i}].${k} must be a non-empty string`);
      return t[k] as string;
    };
    if (typeof t.createdAtMs !== "number") throw bad(`tokens[${i}].createdAtMs must be a number`);
    if (t.revokedAtMs !== null && typeof t.revokedAtMs !== "number") throw bad(`tokens[${i}].revokedAtMs must be a number or null`);
    kdfOptions(str("kdf")); // a kdf scrypt would refuse is a bad file, not a failed request
    return { id: str("id"), name: str("name"), kdf: str("kdf"), salt: str("salt"), hash: str("hash"), createdAtMs: t.createdAtMs, revokedAtMs: t.revokedAtMs as number | null };
  });
  return { version: 1, tokens };
}
