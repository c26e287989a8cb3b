/**
 * HTTP helpers for process tests of a cluster (cluster-process.ts), and the bookkeeping that lets
 * a test say "no acknowledged write was lost" exactly.
 *
 * - `peerView`: one peer's own view of a partition, read from its `/metrics` (leader, term, high
 *   watermark, commit index). Local, so a stopped peer answers nothing (a short timeout) and a
 *   deposed one its own stale view, unlike `GET /v1/cluster`, which gathers every peer's view.
 * - `waitForLeader`: the peer that leads, as a majority of the cluster sees it.
 * - `Ledger`: every produce attempt and its outcome. Each record value is unique; a request is
 *   either acknowledged (with offsets), refused (an HTTP error reply) or of unknown outcome (no
 *   reply: reset, refused connection, client timeout). A refused request may have been written
 *   all the same (REQUEST_TIMED_OUT: its leader changed after the proposal), so only an
 *   acknowledgement is a promise.
 *   `check(log)` holds the final log to those promises: every acknowledged value is at the offset
 *   it was acknowledged at; a value is in the log at most once per attempt (once if its first
 *   attempt was acknowledged; the extra copies of retried ones are counted apart); the
 *   acknowledgements of a sequential producer's stream (ProduceLoad) are in log order; nothing
 *   else is in the log.
 * - `ProduceLoad`: a sequential producer loop over a ledger stream, retrying a failed request
 *   with the same values (so its duplicates are accounted as retries), until stopped.
 * - `readAll`: a partition read back whole from one peer (a follower serves committed reads).
 *
 * @example
 *   const ledger = new Ledger("t");
 *   const load = new ProduceLoad(ledger, "via-2", () => cluster.nodes[1]!);
 *   load.start();
 *   await load.stop();
 *   expect(ledger.check(await readAll(cluster.nodes[0]!, "t", 0)).violations).toEqual([]);
 */
import type { BrokerProcess } from "./broker-process.ts";
import type { ClusterProcess } from "./cluster-process.ts";
import { waitFor } from "./wait.ts";

const JSON_HEADERS = { "content-type": "application/json" };

export interface PeerView {
  /** Peer id this peer takes for the leader (0: none known). */
  leader: number;
  term: number;
  highWatermark: number;
  commitIndex: number;
}

/** A process that has exited (or was never started) answers nothing. */
export function isUp(node: BrokerProcess | undefined): node is BrokerProcess {
  return node !== undefined && node.child.exitCode === null && node.child.signalCode === null;
}

function metricValue(text: string, name: string, topic: string, partition: number): number | null {
  const prefix = `${name}{topic="${topic}",partition="${partition}"} `;
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  return line === undefined ? null : Number(line.slice(prefix.length));
}

/** Peer `node`'s view of `topic/partition`, or null when it does not answer within `timeoutMs` or has no replica yet. */
export async function peerView(node: BrokerProcess | undefined, topic: string, partition: number, timeoutMs = 500): Promise<PeerView | null> {
  if (!isUp(node)) return null;
  try {
    const r = await fetch(`${node.url}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await r.text();
    const get = (name: string) => metricValue(text, name, topic, partition);
    const leader = get("tributary_partition_leader");
    if (leader === null) return null;
    return {
      leader,
      term: get("tributary_partition_raft_term") ?? 0,
      highWatermark: get("tributary_partition_high_watermark") ?? 0,
      commitIndex: get("tributary_partition_raft_commit_index") ?? 0,
    };
  } catch {
    return null;
  }
}

export async function peerViews(cluster: ClusterProcess, topic: string, partition: number, among: readonly number[]): Promise<Map<number, PeerView>> {
  const views = await Promise.all(among.map(async (i) => [i, await peerView(cluster.nodes[i], topic, partition)] as const));
  return new Map(views.filter((v): v is readonly [number, PeerView] => v[1] !== null));
}

/**
 * The index of the peer leading `topic/partition` now, or null: a peer of `among` that names itself
 * leader, named so at the same term by a majority of the whole cluster (itself included), so a
 * deposed leader that still believes it leads is never taken for the leader.
 */
export async function currentLeader(cluster: ClusterProcess, topic: string, partition: number, among: readonly number[]): Promise<number | null> {
  const views = await peerViews(cluster, topic, partition, among);
  const majority = Math.floor(cluster.nodes.length / 2) + 1;
  for (const [i, v] of views) {
    if (v.leader !== i + 1) continue;
    const agree = [...views.values()].filter((w) => w.leader === i + 1 && w.term === v.term).length;
    if (agree >= majority) return i;
  }
  return null;
}

export interface LeaderWait {
  /** Peers to ask (default every peer); leave out a stopped or isolated one. */
  among?: readonly number[];
  /** A leader other than this peer index (the one just killed or cut off). */
  not?: number;
  timeoutMs?: number;
}

export async function waitForLeader(cluster: ClusterProcess, topic: string, partition: number, wait: LeaderWait = {}): Promise<number> {
  const among = wait.among ?? cluster.nodes.map((_, i) => i);
  return waitFor(
    `a leader of ${topic}/${partition}${wait.not === undefined ? "" : ` other than peer ${wait.not + 1}`}`,
    async () => {
      const l = await currentLeader(cluster, topic, partition, among);
      return l !== null && l !== wait.not ? { l } : undefined;
    },
    wait.timeoutMs ?? 20_000,
  ).then((r) => r.l);
}

export function indexesExcept(cluster: ClusterProcess, ...left: number[]): number[] {
  return cluster.nodes.map((_, i) => i).filter((i) => !left.includes(i));
}

/**
 * Create a topic through `node` (any peer: it goes through the controller) and wait until it has a
 * leader. A 503 is retried (on a loaded machine the peer may not have applied the committed change
 * within the request timeout); TOPIC_EXISTS after a retry means the first try got through.
 */
export async function createTopic(cluster: ClusterProcess, node: BrokerProcess, name: string, partitions = 1): Promise<void> {
  let tries = 0;
  await waitFor(`topic ${name} to be created`, async () => {
    const r = await fetch(`${node.url}/v1/topics`, { method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ name, partitions }) });
    const text = await r.text();
    tries++;
    if (r.status === 201 || (r.status === 409 && tries > 1 && text.includes("TOPIC_EXISTS"))) return true;
    if (r.status !== 503) throw new Error(`creating topic ${name}: ${r.status} ${text}`);
    return false;
  });
  for (let p = 0; p < partitions; p++) await waitForLeader(cluster, name, p);
}

export type ProduceOutcome =
  | { kind: "acked"; offsets: number[] }
  | { kind: "refused"; status: number; code: string; message: string }
  | { kind: "unknown"; error: string };

export interface Idempotence {
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
}

export interface ProduceOptions {
  acks?: "0" | "1" | "all";
  /** Longer than the broker's `cluster.request.timeout.ms` by default, so the broker decides. */
  timeoutMs?: number;
  idempotence?: Idempotence;
}

/** One produce request of string values to partition 0; its outcome, never a throw. */
export async function produce(node: BrokerProcess, topic: string, values: readonly string[], options: ProduceOptions = {}): Promise<ProduceOutcome> {
  const body = { records: values.map((value) => ({ value, partition: 0 })), ...options.idempotence };
  let r: Response;
  let text: string;
  try {
    r = await fetch(`${node.url}/v1/topics/${topic}/records?acks=${options.acks ?? "all"}`, {
      method: "POST",
      headers: JSON_HEADERS,
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(options.timeoutMs ?? 20_000),
    });
    text = await r.text();
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code;
    return { kind: "unknown", error: `${(e as Error).name}: ${(e as Error).message}${cause ? ` (${cause})` : ""}` };
  }
  if (r.status === 200) {
    const { offsets } = JSON.parse(text) as { offsets: { offset: number }[] };
    return { kind: "acked", offsets: offsets.map((o) => o.offset) };
  }
  try {
    const { error } = JSON.parse(text) as { error: { code: string; message: string } };
    return { kind: "refused", status: r.status, code: error.code, message: error.message };
  } catch {
    return { kind: "refused", status: r.status, code: "", message: text };
  }
}

export interface LogRecord {
  offset: number;
  value: unknown;
}

/** Every record of `topic/partition` below the high watermark of peer `node`, read from it. */
export async function readAll(node: BrokerProcess, topic: string, partition: number): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  let offset = 0;
  for (;;) {
    const r = await fetch(`${node.url}/v1/topics/${topic}/partitions/${partition}/records?offset=${offset}&maxRecords=1000`, { signal: AbortSignal.timeout(10_000) });
    if (r.status !== 200) throw new Error(`reading ${topic}/${partition} at ${offset} from ${node.url}: ${r.status} ${await r.text()}`);
    const page = (await r.json()) as { records: LogRecord[]; nextOffset: number; highWatermark: number };
    for (const rec of page.records) out.push({ offset: rec.offset, value: rec.value });
    if (page.nextOffset >= page.highWatermark || page.nextOffset === offset) return out;
    offset = page.nextOffset;
  }
}

/** Wait until every peer in `among` has the same high watermark for the partition, and return it. */
export async function waitForConvergence(cluster: ClusterProcess, topic: string, partition: number, among?: readonly number[], timeoutMs = 20_000): Promise<number> {
  const peers = among ?? cluster.nodes.map((_, i) => i);
  return waitFor(
    `peers ${peers.map((i) => i + 1).join(", ")} to agree on the high watermark of ${topic}/${partition}`,
    async () => {
      const views = await peerViews(cluster, topic, partition, peers);
      if (views.size !== peers.length) return undefined;
      const hws = new Set([...views.values()].map((v) => v.highWatermark));
      return hws.size === 1 ? [...hws][0]! : undefined;
    },
    timeoutMs,
  );
}

// ---- the ledger -----------------------------------------------------------------------------

interface Attempt {
  target: string;
  sentAtMs: number;
  doneAtMs: number;
  outcome: ProduceOutcome;
}

interface RequestState {
  stream: string;
  /** Made by a sequential producer (ProduceLoad): its acknowledgements must be in log order. */
  sequential: boolean;
  values: string[];
  attempts: Attempt[];
  /** Offsets of the acknowledgement, if one came (the request is not sent again after it). */
  acked: number[] | null;
}

export interface LedgerReport {
  violations: string[];
  /** Values acknowledged. */
  acked: number;
  /** Extra copies of values whose request was retried after an unknown or refused outcome. */
  duplicatesFromRetries: number;
  /** Values that were never acknowledged and are in the log anyway (allowed: the outcome was unknown). */
  unacknowledgedPresent: number;
}


export class Ledger {
  private readonly requests: RequestState[] = [];
  private readonly byValue = new Map<string, RequestState>();
  private nextId = 0;

  constructor(readonly topic: string) {}

  /**
   * A new request of `count` fresh values on `stream` (values are unique across the ledger).
   * `sequential`: the stream sends one request at a time, so its acknowledgements must be in log order.
   */
  newRequest(stream: string, count: number, sequential = false): RequestState {
    const values = Array.from({ length: count }, () => `${stream}#${this.nextId++}`);
    const req: RequestState = { stream, sequential, values, attempts: [], acked: null };
    this.requests.push(req);
    for (const v of values) this.byValue.set(v, req);
    return req;
  }

  /** Send (or send again) `req` to `node`, recording the attempt and its outcome. */
  async send(req: RequestState, node: BrokerProcess, options: ProduceOptions = {}): Promise<ProduceOutcome> {
    if (req.acked) throw new Error(`request ${req.values[0]} was acknowledged already`);
    const sentAtMs = Date.now();
    const outcome = await produce(node, this.topic, req.values, options);
    req.attempts.push({ target: node.url, sentAtMs, doneAtMs: Date.now(), outcome });
    if (outcome.kind === "acked") req.acked = outcome.offsets;
    return outcome;
  }

  /** One request of fresh values, sent once. */
  async produceOnce(stream: string, node: BrokerProcess, count = 1, options: ProduceOptions = {}): Promise<ProduceOutcome> {
    return this.send(this.newRequest(stream, count), node, options);
  }

  get ackedValues(): number {
    return this.requests.reduce((n, r) => n + (r.acked ? r.values.length : 0), 0);
  }

  /** Attempts that did not end in an acknowledgement. */
  failedAttempts(stream?: string): Attempt[] {
    return this.requests.filter((r) => stream === undefined || r.stream === stream).flatMap((r) => r.attempts.filter((a) => a.outcome.kind !== "acked"));
  }

  /** Requests of `stream` in the order they were made. */
  requestsOf(stream: string): readonly RequestState[] {
    return this.requests.filter((r) => r.stream === stream);
  }

  /** Hold `log` (a partition read back whole) to every acknowledgement; see the file comment. */
  check(log: readonly LogRecord[]): LedgerReport {
    const violations: string[] = [];
    const at = new Map<number, unknown>();
    const copies = new Map<string, number>();
    let lastOffset = -1;
    for (const rec of log) {
      if (rec.offset <= lastOffset) violations.push(`offset ${rec.offset} follows offset ${lastOffset}`);
      lastOffset = rec.offset;
      at.set(rec.offset, rec.value);
      if (typeof rec.value !== "string" || !this.byValue.has(rec.value)) violations.push(`offset ${rec.offset} holds ${JSON.stringify(rec.value)}, which no request sent`);
      else copies.set(rec.value, (copies.get(rec.value) ?? 0) + 1);
    }
    let duplicatesFromRetries = 0;
    let unacknowledgedPresent = 0;
    const lastAckedOffset = new Map<string, number>();
    for (const req of this.requests) {
      const tries = req.attempts.length;
      req.values.forEach((v, k) => {
        const n = copies.get(v) ?? 0;
        if (req.acked) {
          const offset = req.acked[k]!;
          if (at.get(offset) !== v) violations.push(`${v} was acknowledged at offset ${offset}, which holds ${JSON.stringify(at.get(offset) ?? "nothing")}`);
          const prev = lastAckedOffset.get(req.stream) ?? -1;
          if (req.sequential && offset <= prev) violations.push(`${v} (stream ${req.stream}) was acknowledged at offset ${offset}, not after the stream's previous acknowledgement at ${prev}`);
          lastAckedOffset.set(req.stream, Math.max(prev, offset));
        } else if (n > 0) {
          unacknowledgedPresent++;
        }
        duplicatesFromRetries += Math.max(0, Math.min(n, tries) - 1);
        if (n > tries) violations.push(`${v} is in the log ${n} times but was sent ${tries} times${req.acked && tries === 1 ? " (acknowledged on its only attempt)" : ""}`);
      });
    }
    return { violations, acked: this.ackedValues, duplicatesFromRetries, unacknowledgedPresent };
  }

  /** Every value of requests of `stream` that is in `log`. */
  presentValues(log: readonly LogRecord[], stream: string): string[] {
    const mine = new Set(this.requestsOf(stream).flatMap((r) => r.values));
    return log.map((r) => r.value).filter((v): v is string => typeof v === "string" && mine.has(v));
  }
}

/**
 * Every `intervalMs`, one fresh single-record produce to each of `nodes` (not waiting for the
 * earlier ones: each waits out the election in its peer's retries), until one is acknowledged;
 * then wait for every probe to finish. Resolves with when the first acknowledgement came (epoch
 * ms): how soon the cluster serves writes again, to within `intervalMs`. At most `maxProbes` are sent.
 */
export async function probeUntilAck(ledger: Ledger, nodes: readonly BrokerProcess[], intervalMs = 100, maxProbes = 200): Promise<number> {
  let firstAckMs: number | null = null;
  const probes: Promise<unknown>[] = [];
  while (firstAckMs === null && probes.length < maxProbes) {
    for (const node of nodes) {
      probes.push(
        ledger.produceOnce("probe", node).then((o) => {
          if (o.kind === "acked") firstAckMs ??= Date.now();
        }),
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  await Promise.all(probes);
  if (firstAckMs === null) throw new Error(`none of ${probes.length} probes was acknowledged`);
  return firstAckMs;
}

// ---- the load -------------------------------------------------------------------------------

export interface ProduceLoadOptions {
  recordsPerRequest?: number;
  /**
   * Least time from one request's start to the next (default 50 ms): a steady load, not the
   * cluster's full throughput, so on a 2-core machine timers (Raft ticks) are not starved.
   */
  paceMs?: number;
  acks?: "0" | "1" | "all";
  /** Per attempt; default longer than the broker's request timeout, so the broker decides. */
  timeoutMs?: number;
}

const PACE_MS = 50;
const RETRY_MIN_MS = 20;
const RETRY_MAX_MS = 200;

/**
 * A sequential producer on one ledger stream: one request at a time to `target()` (asked anew for
 * every attempt, so it can follow the leader), at most one every `paceMs`, each failed attempt
 * retried with the same values after a short backoff, until `stop()`; the request in flight then
 * finishes (or gives up).
 */
export class ProduceLoad {
  private running: Promise<void> | null = null;
  private stopping = false;

  constructor(
    private readonly ledger: Ledger,
    readonly stream: string,
    private readonly target: () => BrokerProcess | Promise<BrokerProcess>,
    private readonly options: ProduceLoadOptions = {},
  ) {}

  start(): this {
    if (!this.running) this.running = this.loop();
    return this;
  }

  /** Stop after the request in flight; an unacknowledged one is left unacknowledged (it is in the ledger). */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  /** Resolves once `n` more values of this stream are acknowledged than now. */
  async acksFromNow(n: number, timeoutMs = 20_000): Promise<void> {
    const count = () => this.ledger.requestsOf(this.stream).reduce((k, r) => k + (r.acked ? r.values.length : 0), 0);
    const goal = count() + n;
    await waitFor(`${n} more acknowledgements on stream ${this.stream}`, () => count() >= goal, timeoutMs);
  }

  private async loop(): Promise<void> {
    const options = { acks: this.options.acks ?? "all", ...(this.options.timeoutMs ? { timeoutMs: this.options.timeoutMs } : {}) } as const;
    while (!this.stopping) {
      const startedMs = Date.now();
      const req = this.ledger.newRequest(this.stream, this.options.recordsPerRequest ?? 3, true);
      let wait = RETRY_MIN_MS;
      while (!this.stopping || req.attempts.length === 0) {
        const outcome = await this.ledger.send(req, await this.target(), options);
        if (outcome.kind === "acked") break;
        if (this.stopping) break;
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(RETRY_MAX_MS, wait * 2);
      }
      const restMs = startedMs + (this.options.paceMs ?? PACE_MS) - Date.now();
      if (restMs > 0 && !this.stopping) await new Promise((r) => setTimeout(r, restMs));
    }
  }
}
