/**
 * The `tributary` client commands: topic administration, produce from stdin and consume to stdout,
 * all over a running broker's HTTP API (see gateways/http). Arguments are parsed with
 * node:util parseArgs, and I/O goes through `process` and fetch, which Bun and Deno both provide.
 *
 * Produce sends each stdin line's bytes unchanged (CBOR byte strings), and consume asks for
 * `encoding=base64` and writes the stored bytes back unchanged, so any line round-trips exactly,
 * JSON or not.
 *
 * Group commands read and change consumer groups through /v1/groups (see
 * gateways/http/routes-consumers.ts).
 *
 * @example
 *   tributary group reset-offsets ingest --topic telemetry --to-datetime 2026-11-22T08:00:00Z
 *   printf 'dev-1\t{"temp":21.5}\n' | tributary produce telemetry
 *   tributary consume telemetry --from-beginning --print-key
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
// The plain-JavaScript entry: the main one loads a native addon that crashes Bun and Deno.
import { Encoder } from "cbor-x/encode";
import { newToken, revoke } from "../src/security/tokens.ts";
import { readTokenFile, writeTokenFile } from "../src/security/token-file.ts";
import type { ClusterStatus } from "../src/broker.ts";
import type { MirrorStatus } from "../src/mirror/edge.ts";

export const CLIENT_USAGE = `usage: tributary <command> [options]

commands:
  serve [--help]                     run a broker (see tributary serve --help)
  topic create NAME [--partitions N] [--config key=value ...]
  topic list
  topic describe NAME [--json]
  topic delete NAME
  produce TOPIC [--key K] [--partition P] [--acks 0|1|all]
      one record per stdin line, sent as raw bytes; without --key, a line
      "key<TAB>value" sets the record's key
  consume TOPIC [--partition P] [--from-beginning | --offset N] [--follow]
                [--max-records N] [--print-key]
      one value per line on stdout, as stored (JSON as its text, bytes as they are);
      starts at the end of the partition unless --from-beginning or --offset;
      without --follow, stops once it has caught up
  group list
  group describe GROUP [--json]
      members, assignment, committed offsets and lag per partition
  group reset-offsets GROUP --topic T (--to-earliest | --to-latest | --to-offset N
                      | --to-datetime ISO) [--partition P ...]
      only for a group without active members
  group delete GROUP
  cluster status [--json]            peers, the controller's leader, and per partition its leader,
                                     replicas, term, commit and each replica's lag
  cluster add-peer ID@HOST:PORT      add a peer (start it first with the full --cluster-peers)
  cluster remove-peer ID             remove a peer (its partition replicas move to other peers first)
  cluster reassign TOPIC PARTITION --replicas 1,2,4
                                     move a partition's replicas (one at a time; see cluster status)
  mirror status [--json]             per mirror link its state, and per partition the lag in records,
                                     bytes and seconds, last advance, drain estimate, stalled, dropped
  mirror pause|resume LINK           stop sending on a mirror link, or start again
  token create NAME [--file F]       add a token for principal NAME to the token file; prints it once
  token revoke NAME|ID [--file F]    revoke every live token of NAME (or the one token ID)
  token list [--file F]              ids, names, dates; never secrets
      token commands work on the token file itself (--file, default $TRIBUTARY_AUTH_TOKENS_FILE),
      not over HTTP, so an operator can bootstrap a broker with authentication on
  help                               this text

every client command takes --url URL (default $TRIBUTARY_URL or http://127.0.0.1:8480)
and --token TOKEN (default $TRIBUTARY_TOKEN), sent as Authorization: Bearer TOKEN
`;

const DEFAULT_URL = "http://127.0.0.1:8480";
/** Records and body bytes per produce request: bounded well under http.max.request.bytes (8 MiB). */
const PRODUCE_BATCH_RECORDS = 1000;
const PRODUCE_BATCH_BYTES = 1024 * 1024;
const CONSUME_BATCH_RECORDS = 500;
/** The server caps a long poll at http.max.wait.ms; asking for more just means "as long as allowed". */
const FOLLOW_WAIT_MS = 30_000;

const cborEncoder = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true });
const utf8 = new TextEncoder();

/** A refusal from the broker or the network: printed as `error: CODE: message`, exit 1. */
class ClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Bad command-line use: printed with the usage text, exit 2. */
class UsageError extends Error {}

export async function runClientCommand(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "topic":
        return await topicCommand(rest);
      case "produce":
        return await produceCommand(rest);
      case "consume":
        return await consumeCommand(rest);
      case "group":
        return await groupCommand(rest);
      case "cluster":
        return await clusterCommand(rest);
      case "mirror":
        return await mirrorCommand(rest);
      case "token":
        return await tokenCommand(rest);
      case "help":
      case "--help":
      case "-h":
        await writeOut(utf8.encode(CLIENT_USAGE));
        return 2;
      default:
        throw new UsageError(command === undefined ? "no command given" : `unknown command ${JSON.stringify(command)}`);
    }
  } catch (e) {
    if (e instanceof ClientError) {
      console.error(`error: ${e.code}: ${e.message}`);
      return 1;
    }
    if (e instanceof UsageError || isParseArgsError(e)) {
      console.error(`error: ${(e as Error).message}\n\n${CLIENT_USAGE}`);
      return 2;
    }
    if (isBrokenPipe(e)) return 0; // `tributary consume ... | head`: the reader has what it wanted
    console.error(`error: INTERNAL: ${(e as Error).message}`);
    return 1;
  }
}

function isParseArgsError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("ERR_PARSE_ARGS");
}

function isBrokenPipe(e: unknown): boolean {
  return (e as { code?: unknown } | null)?.code === "EPIPE";
}

// ---- arguments ---------------------------------------------------------------------------------

type Options = NonNullable<ParseArgsConfig["options"]>;

function parse<O extends Options>(args: string[], options: O) {
  return parseArgs({
    args,
    options: { ...options, url: { type: "string" }, token: { type: "string" } } as O & { url: { type: "string" }; token: { type: "string" } },
    allowPositionals: true,
    strict: true,
  });
}

/** Where requests go, and the bearer token they carry (--token, else $TRIBUTARY_TOKEN; none: no header). */
interface Target {
  url: string;
  token: string | undefined;
}

type Flag = string | boolean | (string | boolean)[] | undefined;

function baseUrl(values: { url?: Flag; token?: Flag }): Target {
  const url = typeof values.url === "string" ? values.url : (process.env.TRIBUTARY_URL ?? DEFAULT_URL);
  try {
    new URL(url);
  } catch {
    throw new UsageError(`--url ${url} is not a URL`);
  }
  const token = typeof values.token === "string" ? values.token : process.env.TRIBUTARY_TOKEN || undefined;
  return { url: url.replace(/\/+$/, ""), token };
}

function intFlag(raw: string | undefined, name: string, min: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${name} must be an integer of at least ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

function onePositional(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`expected ${what}${positionals.length > 1 ? `, got also ${positionals.slice(1).join(" ")}` : ""}`);
  return positionals[0]!;
}

// ---- HTTP --------------------------------------------------------------------------------------

interface ApiRequest {
  method?: string;
  body?: Uint8Array<ArrayBuffer> | string;
  contentType?: string;
}

/** One request to the API; a non-2xx reply becomes a ClientError with the broker's code. */
async function api({ url, token }: Target, path: string, req: ApiRequest = {}): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (req.contentType) headers["content-type"] = req.contentType;
  let res: Response;
  try {
    res = await fetch(`${url}${path}`, { method: req.method ?? "GET", headers, body: req.body });
  } catch (e) {
    const cause = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
    throw new ClientError("UNREACHABLE", `cannot reach the broker at ${url}: ${cause}`);
  }
  if (res.ok) return res;
  const text = await res.text();
  let code = `HTTP_${res.status}`;
  let message = text.trim() || res.statusText;
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === "string") code = body.error.code;
    if (typeof body.error?.message === "string") message = body.error.message;
  } catch {
    // Not our error body (a proxy, say): keep the status and text.
  }
  throw new ClientError(code, message);
}

async function apiJson<T>(url: Target, path: string, req: ApiRequest = {}): Promise<T> {
  const res = await api(url, path, req);
  return (await res.json()) as T;
}

const topicPath = (topic: string) => `/v1/topics/${encodeURIComponent(topic)}`;

// ---- output ------------------------------------------------------------------------------------

/** Write to stdout and wait until it is handed to the OS, so process.exit cannot cut it short. */
function writeOut(bytes: Uint8Array): Promise<void> {
  if (bytes.length === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    process.stdout.write(bytes, (err) => (err ? reject(err) : resolve()));
  });
}

function printLines(lines: string[]): Promise<void> {
  return writeOut(utf8.encode(lines.map((l) => `${l}\n`).join("")));
}

// ---- topic -------------------------------------------------------------------------------------

interface PartitionDescription {
  partition: number;
  logStartOffset: number;
  highWatermark: number;
  logEndOffset: number;
  sizeBytes: number;
}

interface TopicDescription {
  name: string;
  partitions: PartitionDescription[];
  config: Record<string, string>;
  createdAtMs: number;
}

async function topicCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case "create": {
      const { values, positionals } = parse(rest, { partitions: { type: "string" }, config: { type: "string", multiple: true } });
      const name = onePositional(positionals, "a topic name: topic create NAME");
      const partitions = intFlag(values.partitions, "--partitions", 1);
      const config: Record<string, string> = {};
      for (const kv of values.config ?? []) {
        const eq = kv.indexOf("=");
        if (eq <= 0) throw new UsageError(`--config takes key=value, got ${JSON.stringify(kv)}`);
        config[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
      const body = JSON.stringify({ name, ...(partitions === undefined ? {} : { partitions }), config });
      const t = await apiJson<TopicDescription>(baseUrl(values), "/v1/topics", { method: "POST", body, contentType: "application/json" });
      await printLines([`created topic ${t.name} with ${t.partitions.length} partition${t.partitions.length === 1 ? "" : "s"}`]);
      return 0;
    }
    case "list": {
      const { values, positionals } = parse(rest, {});
      if (positionals.length > 0) throw new UsageError(`topic list takes no arguments`);
      const { topics } = await apiJson<{ topics: TopicDescription[] }>(baseUrl(values), "/v1/topics");
      await printLines(topics.map((t) => t.name));
      return 0;
    }
    case "describe": {
      const { values, positionals } = parse(rest, { json: { type: "boolean" } });
      const name = onePositional(positionals, "a topic name: topic describe NAME");
      const t = await apiJson<TopicDescription>(baseUrl(values), topicPath(name));
      await printLines(values.json ? [JSON.stringify(t, null, 2)] : describeLines(t));
      return 0;
    }
    case "delete": {
      const { values, positionals } = parse(rest, {});
      const name = onePositional(positionals, "a topic name: topic delete NAME");
      await api(baseUrl(values), topicPath(name), { method: "DELETE" });
      await printLines([`deleted topic ${name}`]);
      return 0;
    }
    default:
      throw new UsageError(sub === undefined ? "topic needs a subcommand: create, list, describe or delete" : `unknown topic subcommand ${JSON.stringify(sub)}`);
  }
}

function describeLines(t: TopicDescription): string[] {
  const cols = ["partition", "logStartOffset", "highWatermark", "logEndOffset", "sizeBytes"] as const;
  const rows = [cols.map(String), ...t.partitions.map((p) => cols.map((c) => String(p[c])))];
  const widths = cols.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return [
    `topic: ${t.name}`,
    `created: ${new Date(t.createdAtMs).toISOString()}`,
    `partitions: ${t.partitions.length}`,
    ...rows.map((r) => `  ${r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()}`),
    `config:`,
    ...Object.entries(t.config)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `  ${k}=${v}`),
  ];
}

// ---- produce -----------------------------------------------------------------------------------

interface OutRecord {
  key: Uint8Array | string | null;
  value: Uint8Array;
  partition?: number;
}

/** Split stdin into lines of bytes (without the "\n", or a "\r\n" ending). */
async function* stdinLines(): AsyncGenerator<Uint8Array> {
  // The start of a line not yet ended, kept as its chunks so a long line is copied once.
  let partial: Uint8Array[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Uint8Array | string>) {
    const bytes = typeof chunk === "string" ? utf8.encode(chunk) : chunk;
    let start = 0;
    for (let nl = bytes.indexOf(0x0a); nl >= 0; nl = bytes.indexOf(0x0a, start)) {
      partial.push(bytes.subarray(start, nl));
      yield trimCr(concat(partial));
      partial = [];
      start = nl + 1;
    }
    if (start < bytes.length) partial.push(bytes.slice(start));
  }
  if (partial.length > 0) yield trimCr(concat(partial));
}

function trimCr(line: Uint8Array): Uint8Array {
  return line.length > 0 && line[line.length - 1] === 0x0d ? line.subarray(0, line.length - 1) : line;
}

async function produceCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { key: { type: "string" }, partition: { type: "string" }, acks: { type: "string" } });
  const topic = onePositional(positionals, "a topic: produce TOPIC");
  const partition = intFlag(values.partition, "--partition", 0);
  const acks = values.acks ?? "1";
  if (!["0", "1", "all", "-1"].includes(acks)) throw new UsageError(`--acks must be 0, 1 or all, got ${JSON.stringify(acks)}`);
  const url = baseUrl(values);
  const path = `${topicPath(topic)}/records?acks=${encodeURIComponent(acks)}`;

  let batch: OutRecord[] = [];
  let batchBytes = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const body = new Uint8Array(cborEncoder.encode({ records: batch }));
    batch = [];
    batchBytes = 0;
    await api(url, path, { method: "POST", body, contentType: "application/cbor" });
  };
  for await (const line of stdinLines()) {
    const record: OutRecord = { key: values.key ?? null, value: line };
    if (values.key === undefined) {
      const tab = line.indexOf(0x09);
      if (tab >= 0) {
        record.key = line.subarray(0, tab);
        record.value = line.subarray(tab + 1);
      }
    }
    if (partition !== undefined) record.partition = partition;
    const size = record.value.length + (record.key?.length ?? 0) + 16;
    if (batch.length > 0 && (batch.length >= PRODUCE_BATCH_RECORDS || batchBytes + size > PRODUCE_BATCH_BYTES)) await flush();
    batch.push(record);
    batchBytes += size;
  }
  await flush();
  return 0;
}

// ---- consume -----------------------------------------------------------------------------------

interface FetchedRecord {
  offset: number;
  key?: null;
  keyBase64?: string;
  value?: null;
  valueBase64?: string;
}

interface FetchReply {
  records: FetchedRecord[];
  nextOffset: number;
  highWatermark: number;
}

function base64Bytes(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const NULL_TEXT = utf8.encode("null");
const TAB = utf8.encode("\t");
const NEWLINE = utf8.encode("\n");

async function consumeCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    partition: { type: "string" },
    "from-beginning": { type: "boolean" },
    offset: { type: "string" },
    follow: { type: "boolean" },
    "max-records": { type: "string" },
    "print-key": { type: "boolean" },
  });
  const topic = onePositional(positionals, "a topic: consume TOPIC");
  const partition = intFlag(values.partition, "--partition", 0) ?? 0;
  const maxRecords = intFlag(values["max-records"], "--max-records", 1);
  if (values["from-beginning"] && values.offset !== undefined) throw new UsageError("give --from-beginning or --offset, not both");
  const url = baseUrl(values);
  const follow = values.follow === true;

  // undefined: let the broker start at the partition's log start offset.
  let offset = intFlag(values.offset, "--offset", 0);
  if (offset === undefined && !values["from-beginning"]) {
    const t = await apiJson<TopicDescription>(url, topicPath(topic));
    const p = t.partitions.find((x) => x.partition === partition);
    if (!p) throw new ClientError("PARTITION_NOT_FOUND", `topic ${topic} has partitions 0 to ${t.partitions.length - 1}, not ${partition}`);
    offset = p.highWatermark;
  }

  let printed = 0;
  for (;;) {
    const want = Math.min(CONSUME_BATCH_RECORDS, maxRecords === undefined ? CONSUME_BATCH_RECORDS : maxRecords - printed);
    const q = new URLSearchParams({ maxRecords: String(want), encoding: "base64" });
    if (offset !== undefined) q.set("offset", String(offset));
    if (follow) q.set("waitMs", String(FOLLOW_WAIT_MS));
    const reply = await apiJson<FetchReply>(url, `${topicPath(topic)}/partitions/${partition}/records?${q}`);
    const out: Uint8Array[] = [];
    for (const r of reply.records.slice(0, want)) {
      if (values["print-key"]) out.push(r.keyBase64 === undefined ? NULL_TEXT : base64Bytes(r.keyBase64), TAB);
      out.push(r.valueBase64 === undefined ? NULL_TEXT : base64Bytes(r.valueBase64), NEWLINE);
      printed++;
    }
    await writeOut(concat(out));
    offset = reply.nextOffset;
    if (maxRecords !== undefined && printed >= maxRecords) return 0;
    if (!follow && (reply.records.length === 0 || reply.nextOffset >= reply.highWatermark)) return 0;
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

// ---- group -------------------------------------------------------------------------------------

interface GroupListing {
  groupId: string;
  state: string;
  members: number;
  assignor: string | null;
}

interface GroupDescription {
  groupId: string;
  state: string;
  generationId: number;
  assignor: string | null;
  members: { memberId: string; clientId: string; topics: string[]; assignment: { topic: string; partition: number }[] }[];
  partitions: { topic: string; partition: number; committedOffset: number | null; highWatermark: number; lag: number | null; memberId: string | null }[];
  totalLag: number;
}

const groupPath = (group: string) => `/v1/groups/${encodeURIComponent(group)}`;

async function groupCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case "list": {
      const { values, positionals } = parse(rest, {});
      if (positionals.length > 0) throw new UsageError("group list takes no arguments");
      const { groups } = await apiJson<{ groups: GroupListing[] }>(baseUrl(values), "/v1/groups");
      await printLines(groups.map((g) => `${g.groupId}\t${g.state}\t${g.members} member${g.members === 1 ? "" : "s"}`));
      return 0;
    }
    case "describe": {
      const { values, positionals } = parse(rest, { json: { type: "boolean" } });
      const group = onePositional(positionals, "a group id: group describe GROUP");
      const d = await apiJson<GroupDescription>(baseUrl(values), groupPath(group));
      await printLines(values.json ? [JSON.stringify(d, null, 2)] : groupLines(d));
      return 0;
    }
    case "reset-offsets": {
      const { values, positionals } = parse(rest, {
        topic: { type: "string" },
        "to-earliest": { type: "boolean" },
        "to-latest": { type: "boolean" },
        "to-offset": { type: "string" },
        "to-datetime": { type: "string" },
        partition: { type: "string", multiple: true },
      });
      const group = onePositional(positionals, "a group id: group reset-offsets GROUP --topic T --to-...");
      if (!values.topic) throw new UsageError("group reset-offsets needs --topic T");
      const targets: Record<string, unknown>[] = [];
      if (values["to-earliest"]) targets.push({ to: "earliest" });
      if (values["to-latest"]) targets.push({ to: "latest" });
      if (values["to-offset"] !== undefined) targets.push({ to: "offset", offset: intFlag(values["to-offset"], "--to-offset", 0) });
      if (values["to-datetime"] !== undefined) {
        const ms = Date.parse(values["to-datetime"]);
        if (Number.isNaN(ms)) throw new UsageError(`--to-datetime takes an ISO-8601 date and time, got ${JSON.stringify(values["to-datetime"])}`);
        targets.push({ to: "timestamp", timestamp: ms });
      }
      if (targets.length !== 1) throw new UsageError("give exactly one of --to-earliest, --to-latest, --to-offset N, --to-datetime ISO");
      const partitions = values.partition?.map((p) => intFlag(p, "--partition", 0)!);
      const body = JSON.stringify({ topic: values.topic, ...targets[0], ...(partitions ? { partitions } : {}) });
      const { offsets } = await apiJson<{ offsets: { topic: string; partition: number; offset: number }[] }>(baseUrl(values), `${groupPath(group)}/offsets/reset`, {
        method: "POST",
        body,
        contentType: "application/json",
      });
      await printLines(offsets.map((o) => `${o.topic}\t${o.partition}\t${o.offset}`));
      return 0;
    }
    case "delete": {
      const { values, positionals } = parse(rest, {});
      const group = onePositional(positionals, "a group id: group delete GROUP");
      await api(baseUrl(values), groupPath(group), { method: "DELETE" });
      await printLines([`deleted group ${group}`]);
      return 0;
    }
    default:
      throw new UsageError(sub === undefined ? "group needs a subcommand: list, describe, reset-offsets or delete" : `unknown group subcommand ${JSON.stringify(sub)}`);
  }
}

function groupLines(d: GroupDescription): string[] {
  const lines = [`group ${d.groupId}: ${d.state}, generation ${d.generationId}, ${d.members.length} member${d.members.length === 1 ? "" : "s"}${d.assignor ? `, ${d.assignor}` : ""}, total lag ${d.totalLag}`];
  for (const m of d.members) lines.push(`  member ${m.memberId}${m.clientId ? ` (${m.clientId})` : ""}: ${m.assignment.map((a) => `${a.topic}/${a.partition}`).join(" ") || "-"}`);
  lines.push("  TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER");
  for (const p of d.partitions) {
    lines.push(`  ${p.topic}\t${p.partition}\t${p.committedOffset ?? "-"}\t${p.highWatermark}\t${p.lag ?? "-"}\t${p.memberId ?? "-"}`);
  }
  return lines;
}

// ---- cluster -----------------------------------------------------------------------------------

async function clusterCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "add-peer" || sub === "remove-peer") return membershipCommand(sub, rest);
  if (sub === "reassign") return reassignCommand(rest);
  if (sub !== "status") throw new UsageError(sub === undefined ? "cluster needs a subcommand: status, add-peer, remove-peer or reassign" : `unknown cluster subcommand ${JSON.stringify(sub)}`);
  const { values, positionals } = parse(rest, { json: { type: "boolean" } });
  if (positionals.length > 0) throw new UsageError("cluster status takes no arguments");
  const status = await apiJson<ClusterStatus>(baseUrl(values), "/v1/cluster");
  await printLines(values.json ? [JSON.stringify(status, null, 2)] : clusterLines(status));
  return 0;
}

async function membershipCommand(sub: "add-peer" | "remove-peer", rest: string[]): Promise<number> {
  const { values, positionals } = parse(rest, {});
  const arg = onePositional(positionals, sub === "add-peer" ? "a peer: cluster add-peer ID@HOST:PORT" : "a peer id: cluster remove-peer ID");
  if (sub === "add-peer") {
    const m = /^(\d+)@(.+:\d+)$/.exec(arg);
    if (!m) throw new UsageError(`cluster add-peer takes ID@HOST:PORT (the new peer's peer listener), got ${JSON.stringify(arg)}`);
    await api(baseUrl(values), "/v1/cluster/peers", { method: "POST", body: JSON.stringify({ id: Number(m[1]), address: m[2] }), contentType: "application/json" });
    await printLines([`added peer ${m[1]} at ${m[2]}`]);
  } else {
    const id = intFlag(arg, "peer id", 1)!;
    await api(baseUrl(values), `/v1/cluster/peers/${id}`, { method: "DELETE" });
    await printLines([`removed peer ${id}`]);
  }
  return 0;
}

async function reassignCommand(rest: string[]): Promise<number> {
  const { values, positionals } = parse(rest, { replicas: { type: "string" } });
  if (positionals.length !== 2) throw new UsageError("cluster reassign takes TOPIC PARTITION --replicas 1,2,4");
  const [topic, partitionArg] = positionals as [string, string];
  const partition = intFlag(partitionArg, "partition", 0)!;
  const list = typeof values.replicas === "string" ? values.replicas.split(",") : [];
  if (list.length === 0 || !list.every((x) => /^\d+$/.test(x))) throw new UsageError("--replicas is a comma-separated list of peer ids, e.g. --replicas 1,2,4");
  const replicas = list.map(Number);
  await api(baseUrl(values), "/v1/cluster/reassign", { method: "POST", body: JSON.stringify({ topic, partition, replicas }), contentType: "application/json" });
  await printLines([`moving ${topic} partition ${partition} to replicas ${replicas.join(",")} (see cluster status)`]);
  return 0;
}

function clusterLines(s: ClusterStatus): string[] {
  const lines = [`peer ${s.self} of ${s.peers.length}; controller leader: ${s.controller.leader || "none"}`];
  for (const p of s.peers) lines.push(`  peer ${p.id}\t${p.address}\t${p.reachable ? "up" : "unreachable"}`);
  lines.push("  TOPIC\tPARTITION\tLEADER\tTERM\tCOMMIT\tREPLICAS\tLAG");
  for (const p of s.partitions) {
    const lag = p.lag.map((l) => `${l.peer}:${l.entries}`).join(",") || "-";
    const move = p.move ? `\tmoving to ${p.move.target.join(",")} (voters now ${p.move.voters.join(",") || "?"})` : "";
    lines.push(`  ${p.topic}\t${p.partition}\t${p.leader || "none"}\t${p.term}\t${p.commit}\t${p.replicas.join(",")}\t${lag}${move}`);
  }
  return lines;
}

// ---- mirror ------------------------------------------------------------------------------------

async function mirrorCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "pause" || sub === "resume") {
    const { values, positionals } = parse(rest, {});
    const link = onePositional(positionals, `a link name: mirror ${sub} LINK`);
    await api(baseUrl(values), `/v1/mirror/links/${encodeURIComponent(link)}/${sub}`, { method: "POST" });
    await printLines([`${sub === "pause" ? "paused" : "resumed"} mirror link ${link}`]);
    return 0;
  }
  if (sub !== "status") throw new UsageError(sub === undefined ? "mirror needs a subcommand: status, pause or resume" : `unknown mirror subcommand ${JSON.stringify(sub)}`);
  const { values, positionals } = parse(rest, { json: { type: "boolean" } });
  if (positionals.length > 0) throw new UsageError("mirror status takes no arguments");
  const status = await apiJson<MirrorStatus>(baseUrl(values), "/v1/mirror");
  await printLines(values.json ? [JSON.stringify(status, null, 2)] : mirrorLines(status));
  return 0;
}

function mirrorLines(s: MirrorStatus): string[] {
  const lines = [`edge cluster ${s.cluster}; ${s.leading ? "links run on this peer" : "links run on the leader of __mirror_checkpoints"}`];
  const secs = (n: number | null) => (n === null ? "-" : `${Math.round(n)}s`);
  for (const l of s.links) {
    const sum = l.summary;
    lines.push(`link ${l.name}: ${l.state}${l.lastError ? ` (last error: ${l.lastError})` : ""}, lag ${sum.lagRecords} records / ${sum.lagBytes} bytes, drain ${secs(sum.drainSeconds)}, ${sum.stalledPartitions} stalled`);
    lines.push("  TOPIC\tPARTITION\tTARGET\tSTATE\tPOSITION\tLAG\tLAG_BYTES\tLAG_S\tLAST_ADVANCE\tDRAIN\tSTALLED");
    for (const p of l.partitions) {
      const g = p.lag;
      const last = g?.lastAdvanceMs ? new Date(g.lastAdvanceMs).toISOString() : "-";
      lines.push(`  ${p.topic}\t${p.partition}\t${p.target}\t${p.state}${p.message ? ` (${p.message})` : ""}\t${g?.position ?? "-"}\t${g?.lagRecords ?? "-"}\t${g?.lagBytes ?? "-"}\t${g ? g.lagSeconds.toFixed(1) : "-"}\t${last}\t${secs(g?.drainSeconds ?? null)}\t${g?.stalled ? "yes" : "no"}`);
    }
    for (const d of l.dropped) lines.push(`  dropped ${d.topic}/${d.partition}: ${d.droppedOffsets} offsets in ${d.ranges.map((r) => `[${r.from}, ${r.to}) ${r.reason}`).join(", ")}`);
  }
  return lines;
}

// ---- token -------------------------------------------------------------------------------------

/** The token file itself, not the broker: works before any token exists (bootstrap). */
async function tokenCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({ args: rest, options: { file: { type: "string" } }, allowPositionals: true, strict: true });
  const path = values.file ?? process.env.TRIBUTARY_AUTH_TOKENS_FILE;
  if (!path) throw new UsageError("token commands need the token file: --file F or $TRIBUTARY_AUTH_TOKENS_FILE");
  switch (sub) {
    case "create": {
      const name = onePositional(positionals, "a principal name: token create NAME");
      const file = await readTokenFile(path);
      const { token, entry } = await newToken(name, Date.now()).catch((e: unknown) => {
        throw new UsageError((e as Error).message);
      });
      await writeTokenFile(path, { version: 1, tokens: [...file.tokens, entry] });
      // The only time the token is shown: stdout, so it can be captured; the note goes to stderr.
      console.error(`created token ${entry.id} for ${name}; it is shown once, store it now`);
      await printLines([token]);
      return 0;
    }
    case "revoke": {
      const which = onePositional(positionals, "a principal name or token id: token revoke NAME|ID");
      const { file, revoked } = revoke(await readTokenFile(path), which, Date.now());
      if (revoked === 0) throw new ClientError("TOKEN_NOT_FOUND", `no live token named or with id ${which} in ${path}`);
      await writeTokenFile(path, file);
      await printLines([`revoked ${revoked} token${revoked === 1 ? "" : "s"} of ${which}`]);
      return 0;
    }
    case "list": {
      if (positionals.length > 0) throw new UsageError("token list takes no arguments");
      const file = await readTokenFile(path);
      await printLines(
        file.tokens.map((t) => `${t.id}\t${t.name}\tcreated ${new Date(t.createdAtMs).toISOString()}\t${t.revokedAtMs === null ? "live" : `revoked ${new Date(t.revokedAtMs).toISOString()}`}`),
      );
      return 0;
    }
    default:
      throw new UsageError(sub === undefined ? "token needs a subcommand: create, revoke or list" : `unknown token subcommand ${JSON.stringify(sub)}`);
  }
}
