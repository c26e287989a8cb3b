/**
 * The mirror links file (`mirror.config`): parsed and checked whole before any link starts, so a
 * mistake stops start-up with one INVALID_CONFIG message naming the field. Unknown fields are
 * refused. Pure: `parseMirrorConfig` takes the parsed JSON; reading files is the caller's.
 *
 *   {"links": [{
 *     "name": "to-dc",                                  1-64 letters, digits, '_', '-'; unique
 *     "central": {"address": "dc.example:8481",         the central's gRPC listener
 *                 "tls": {"ca": "ca.pem", "cert": "edge.pem", "key": "edge.key"},   optional, file paths
 *                 "token": "..."},                      optional bearer token
 *     "topics": {"include": ["telemetry", "alarms.*"], "exclude": [], "prefix": "{cluster}."},
 *     "uplink": {"bytesPerSecond": 125000, "backlogShare": 0.5, "maxSendBytes": 1048576,
 *                "maxInflightSends": 4, "priorities": [{"pattern": "alarms.*", "priority": 3}],
 *                "compression": "gzip"},                 "gzip" (default) or "none": how each send's payload travels
 *     "stallAfterMs": 60000,                            a partition with lag whose position has not moved this long is stalled
 *     "groups": ["dashboard"]                           consumer groups whose offsets are mirrored
 *   }]}
 *
 * @example
 *   const config = parseMirrorConfig(JSON.parse(text), "site7");
 */
import { TributaryError, isTributaryError } from "../errors.ts";
import { compileTopicMapping, validateClusterId, type TopicMapping } from "./topics.ts";
import { UplinkScheduler, type PriorityRule, type UplinkConfig } from "./uplink.ts";

export interface CentralConfig {
  readonly address: string;
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: string } | null;
  readonly token: string | null;
}

export type SendCompression = "gzip" | "none";

export interface MirrorLinkConfig {
  readonly name: string;
  readonly central: CentralConfig;
  readonly mapping: TopicMapping;
  readonly uplink: UplinkConfig;
  /** How each send's payload is compressed on the wire. Default gzip. */
  readonly compression: SendCompression;
  /** Lag without progress for this long is reported stalled (lag.ts). Default 60 s. */
  readonly stallAfterMs: number;
  readonly groups: readonly string[];
}

export interface MirrorConfig {
  readonly links: readonly MirrorLinkConfig[];
}

export const MAX_LINKS = 16;
export const MAX_MIRRORED_GROUPS = 256;
const LINK_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const ADDRESS = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+):(\d{1,5})$/;
const MAX_GROUP_ID_CHARS = 255;
export const DEFAULT_STALL_AFTER_MS = 60_000;
const MAX_STALL_AFTER_MS = 86_400_000;

type Json = Record<string, unknown>;

function fail(message: string): never {
  throw new TributaryError("INVALID_CONFIG", `mirror config: ${message}`);
}

function object(v: unknown, where: string, allowed: readonly string[]): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(`${where} must be an object`);
  for (const k of Object.keys(v)) if (!allowed.includes(k)) fail(`${where}: unknown field ${JSON.stringify(k)} (allowed: ${allowed.join(", ")})`);
  return v as Json;
}

function text(v: unknown, where: string): string {
  if (typeof v !== "string" || v.length === 0 || v.length > 4096) fail(`${where} must be a non-empty string of at most 4096 characters`);
  return v;
}

function list(v: unknown, where: string, max: number): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) fail(`${where} must be an array`);
  if (v.length > max) fail(`${where} holds ${v.length} entries, at most ${max}`);
  return v;
}

/** Run a checker of another module, naming the field on its INVALID_CONFIG. */
function within<T>(where: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (isTributaryError(e) && e.code === "INVALID_CONFIG") fail(`${where}: ${e.message}`);
    throw e;
  }
}

function central(v: unknown, where: string): CentralConfig {
  const o = object(v, where, ["address", "tls", "token"]);
  const address = text(o.address, `${where}.address`);
  const m = ADDRESS.exec(address);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) fail(`${where}.address must be host:port (port 1 to 65535), got ${JSON.stringify(address.slice(0, 300))}`);
  let tls: CentralConfig["tls"] = null;
  if (o.tls !== undefined && o.tls !== null) {
    const t = object(o.tls, `${where}.tls`, ["ca", "cert", "key"]);
    tls = { ca: text(t.ca, `${where}.tls.ca`), cert: text(t.cert, `${where}.tls.cert`), key: text(t.key, `${where}.tls.key`) };
  }
  // The token's value is never repeated in a message.
  let token: string | null = null;
  if (o.token !== undefined && o.token !== null) {
    if (typeof o.token !== "string" || o.token.length === 0 || o.token.length > 4096 || /\s/.test(o.token)) fail(`${where}.token must be a non-empty string without spaces`);
    token = o.token;
  }
  return { address, tls, token };
}

function number(v: unknown, where: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) fail(`${where} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function uplink(v: unknown, where: string): { config: UplinkConfig; compression: SendCompression } {
  const o = object(v, where, ["bytesPerSecond", "backlogShare", "priorities", "maxSendBytes", "maxInflightSends", "compression"]);
  const compression = o.compression ?? "gzip";
  if (compression !== "gzip" && compression !== "none") fail(`${where}.compression must be "gzip" or "none", got ${JSON.stringify(compression)}`);
  const bytesPerSec = number(o.bytesPerSecond, `${where}.bytesPerSecond`);
  if (bytesPerSec === undefined) fail(`${where}.bytesPerSecond is required`);
  const priorities: PriorityRule[] = list(o.priorities, `${where}.priorities`, 256).map((r, i) => {
    const p = object(r, `${where}.priorities[${i}]`, ["pattern", "priority"]);
    return { pattern: p.pattern as string, priority: p.priority as number };
  });
  const config: UplinkConfig = {
    bytesPerSec,
    ...(o.backlogShare !== undefined ? { backlogShare: number(o.backlogShare, `${where}.backlogShare`)! } : {}),
    ...(o.maxSendBytes !== undefined ? { maxSendBytes: number(o.maxSendBytes, `${where}.maxSendBytes`)! } : {}),
    ...(o.maxInflightSends !== undefined ? { maxInflightSends: number(o.maxInflightSends, `${where}.maxInflightSends`)! } : {}),
    priorities,
  };
  // The scheduler's own checks, so the file and the code cannot disagree.
  within(where, () => new UplinkScheduler(config, 0));
  return { config, compression };
}

function link(v: unknown, i: number, clusterId: string): MirrorLinkConfig {
  const where = `links[${i}]`;
  const o = object(v, where, ["name", "central", "topics", "uplink", "groups", "stallAfterMs"]);
  const name = text(o.name, `${where}.name`);
  if (!LINK_NAME.test(name)) fail(`${where}.name must be 1 to 64 letters, digits, '_' and '-', got ${JSON.stringify(name.slice(0, 100))}`);
  const t = object(o.topics, `${where}.topics`, ["include", "exclude", "prefix"]);
  const mapping = within(`${where}.topics`, () =>
    compileTopicMapping(
      {
        include: t.include as string[],
        ...(t.exclude !== undefined ? { exclude: t.exclude as string[] } : {}),
        ...(t.prefix !== undefined ? { targetPrefix: t.prefix as string } : {}),
      },
      clusterId,
    ),
  );
  const groups = list(o.groups, `${where}.groups`, MAX_MIRRORED_GROUPS).map((g, j) => {
    if (typeof g !== "string" || g.length === 0 || g.length > MAX_GROUP_ID_CHARS) fail(`${where}.groups[${j}] must be a group id of 1 to ${MAX_GROUP_ID_CHARS} characters`);
    return g;
  });
  if (new Set(groups).size !== groups.length) fail(`${where}.groups names a group twice`);
  const stallAfterMs = number(o.stallAfterMs, `${where}.stallAfterMs`) ?? DEFAULT_STALL_AFTER_MS;
  if (!Number.isInteger(stallAfterMs) || stallAfterMs < 1 || stallAfterMs > MAX_STALL_AFTER_MS) fail(`${where}.stallAfterMs must be an integer from 1 to ${MAX_STALL_AFTER_MS}, got ${stallAfterMs}`);
  const up = uplink(o.uplink, `${where}.uplink`);
  return { name, central: central(o.central, `${where}.central`), mapping, uplink: up.config, compression: up.compression, stallAfterMs, groups };
}

/** Check a parsed mirror config file for the edge cluster `clusterId`. */
export function parseMirrorConfig(json: unknown, clusterId: string): MirrorConfig {
  within("mirror.cluster.id", () => validateClusterId(clusterId));
  const o = object(json, "the file", ["links"]);
  const links = list(o.links, "links", MAX_LINKS).map((l, i) => link(l, i, clusterId));
  if (links.length === 0) fail("links must name at least one link");
  const names = new Set<string>();
  for (const l of links) {
    if (names.has(l.name)) fail(`two links are named ${JSON.stringify(l.name)}`);
    names.add(l.name);
  }
  return { links };
}
