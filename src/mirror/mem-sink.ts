/**
 * An in-memory central for tests and the simulation: it STANDS IN FOR THE CENTRAL CLUSTER (its
 * `MirrorService` and target partitions), so a mirror link can be run without a network or a
 * second broker. It keeps the central's contract exactly: one log per source partition holding
 * the stamped batches as sent, the position a function of that log (the end of its newest
 * stamped batch), admission by `admitSend` (stamp.ts), bindings refused for a second source.
 *
 * `MemCentral` is the central's state and survives its connections; `connect()` makes one
 * `MirrorSink` (a link's connection), so a runner that reconnects gets a fresh sink on the same
 * central. Faults, each for the next N calls: `failOpens`, `failSends` (refused before anything
 * is written), `loseAcks` (written, then the call fails: the edge must resend and be
 * deduplicated); `delayMs` holds every answer on the injected clock; `down` refuses everything.
 * A closed sink fails its calls, as a broken stream does.
 *
 * @example
 *   const central = new MemCentral({ clock });
 *   const sink = central.connect();
 *   await sink.open({ link: "l", cluster: "site7", topics: [binding] });
 *   central.loseAcks = 1; // the next send is written, its ack lost
 */
import { TributaryError } from "../errors.ts";
import type { Clock } from "../runtime/clock.ts";
import { decodeRecords, readBatchHeader, splitBatches, verifyBatchCrc, type DecodedRecord } from "../storage/record-batch.ts";
import { admitSend, readStamp } from "./stamp.ts";
import type { GroupOffsetCommit, GroupOffsetResult, LinkHello, MirrorAck, MirrorSink, SourceSend, TopicWelcome } from "./types.ts";

interface TargetLog {
  readonly sourceKey: string;
  readonly targetTopicId: string;
  /** Per partition: stamped batches, oldest first. */
  readonly partitions: Uint8Array[][];
  readonly positions: (number | null)[];
}

/** A record as the central holds it, with its source offset from the stamp. */
export interface MirroredRecord {
  readonly sourceOffset: number;
  readonly record: DecodedRecord;
}

export class MemCentral {
  failOpens = 0;
  failSends = 0;
  loseAcks = 0;
  delayMs = 0;
  down = false;
  /** Calls answered, for tests that wait for progress. */
  sendsAnswered = 0;
  /** Batches below the position dropped by admission (replays). */
  replayedBatches = 0;
  /** Sends written whose ack was then lost (`loseAcks`). */
  acksLost = 0;
  /** Commits of mirrored consumer groups: `group/topic/partition` -> source offset. */
  readonly groupOffsets = new Map<string, number>();
  private readonly targets = new Map<string, TargetLog>();
  private nextTopicId = 1;

  constructor(private readonly deps: { clock?: Clock } = {}) {}

  connect(): MirrorSink {
    return new MemMirrorSink(this);
  }

  /** Every record the central holds of a source partition, in its log's order. */
  records(target: string, partition: number): MirroredRecord[] {
    const out: MirroredRecord[] = [];
    for (const batch of this.targets.get(target)?.partitions[partition] ?? []) {
      const h = readBatchHeader(batch);
      const stamp = readStamp(h)!;
      for (const r of decodeRecords(batch)) out.push({ sourceOffset: stamp.from + (r.offset - h.baseOffset), record: r });
    }
    return out;
  }

  position(target: string, partition: number): number | null {
    return this.targets.get(target)?.positions[partition] ?? null;
  }

  /** Forget a target (an operator deleted it at the central): the next open sees a reset central. */
  dropTarget(target: string): void {
    this.targets.delete(target);
  }

  /** Answer after `delayMs` on the clock, so tests control when acks arrive. */
  async answer<T>(fn: () => T): Promise<T> {
    const clock = this.deps.clock;
    if (this.delayMs > 0 && clock) await new Promise<void>((resolve) => clock.setTimer(this.delayMs, resolve));
    if (this.down) throw new TributaryError("PEER_UNAVAILABLE", "the central is down (simulated)");
    return fn();
  }

  open(hello: LinkHello): readonly TopicWelcome[] {
    if (this.failOpens > 0) {
      this.failOpens--;
      throw new TributaryError("PEER_UNAVAILABLE", "open failed (simulated)");
    }
    return hello.topics.map((t): TopicWelcome => {
      const sourceKey = `${hello.cluster}/${t.sourceTopic}/${t.sourceTopicId}`;
      let log = this.targets.get(t.target);
      if (log && log.sourceKey !== sourceKey) {
        return { sourceTopic: t.sourceTopic, ok: false, code: "INVALID_REQUEST", message: `target ${t.target} is bound to ${log.sourceKey}` };
      }
      if (!log) {
        log = { sourceKey, targetTopicId: `target-${this.nextTopicId++}`, partitions: [], positions: [] };
        this.targets.set(t.target, log);
      }
      while (log.partitions.length < t.partitions) {
        log.partitions.push([]);
        log.positions.push(null);
      }
      return { sourceTopic: t.sourceTopic, ok: true, targetTopicId: log.targetTopicId, positions: [...log.positions] };
    });
  }

  send(targetOf: (topic: string) => string | undefined, sends: readonly SourceSend[]): readonly MirrorAck[] {
    if (this.failSends > 0) {
      this.failSends--;
      throw new TributaryError("PEER_UNAVAILABLE", "send failed (simulated)");
    }
    const acks = sends.map((s) => this.append(targetOf(s.source.topic), s));
    this.sendsAnswered++;
    if (this.loseAcks > 0) {
      this.loseAcks--;
      this.acksLost++;
      throw new TributaryError("REQUEST_TIMED_OUT", "written, ack lost (simulated)");
    }
    return acks;
  }

  private append(target: string | undefined, s: SourceSend): MirrorAck {
    const log = target === undefined ? undefined : this.targets.get(target);
    const p = s.source.partition;
    if (!log || p >= log.partitions.length) throw new TributaryError("INVALID_REQUEST", `${s.source.topic}/${p} was not opened on this link`);
    const batches = splitBatches(s.batches);
    if (batches.some((b) => !verifyBatchCrc(b))) throw new TributaryError("CORRUPT_RECORD", "a mirrored batch fails its CRC");
    const headers = batches.map((b) => readBatchHeader(b));
    if (headers.some((h) => readStamp(h) === null || readStamp(h)!.from !== h.baseOffset)) throw new TributaryError("INVALID_REQUEST", "a mirrored batch carries no source stamp");
    const admission = admitSend(log.positions[p]!, s, headers);
    for (const i of admission.write) log.partitions[p]!.push(batches[i]!.slice());
    this.replayedBatches += admission.skipped;
    log.positions[p] = admission.position;
    return { source: s.source, position: admission.position ?? s.fromOffset };
  }

  commit(targetOf: (topic: string) => string | undefined, commits: readonly GroupOffsetCommit[]): GroupOffsetResult[] {
    return commits.map((c): GroupOffsetResult => {
      const target = targetOf(c.sourceTopic);
      const position = target === undefined ? null : this.position(target, c.partition);
      if (target === undefined) return { ok: false, commit: c, pending: false, code: "TOPIC_NOT_FOUND", message: `${c.sourceTopic} is not mirrored on this link` };
      if (position === null || c.sourceOffset > position) return { ok: false, commit: c, pending: true };
      this.groupOffsets.set(`${c.group}/${c.sourceTopic}/${c.partition}`, c.sourceOffset);
      // The in-memory central keeps source offsets as its own (its batches keep their base offsets).
      return { ok: true, commit: c, targetOffset: c.sourceOffset };
    });
  }
}

/** One connection to a MemCentral. */
class MemMirrorSink implements MirrorSink {
  private closed = false;
  private routes = new Map<string, string>();

  constructor(private readonly central: MemCentral) {}

  async open(hello: LinkHello): Promise<readonly TopicWelcome[]> {
    const welcome = await this.call(() => this.central.open(hello));
    this.routes = new Map(hello.topics.map((t) => [t.sourceTopic, t.target]));
    return welcome;
  }

  send(sends: readonly SourceSend[]): Promise<readonly MirrorAck[]> {
    return this.call(() => this.central.send((t) => this.routes.get(t), sends));
  }

  commitGroupOffsets(_cluster: string, commits: readonly GroupOffsetCommit[]): Promise<readonly GroupOffsetResult[]> {
    return this.call(() => this.central.commit((t) => this.routes.get(t), commits));
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private async call<T>(fn: () => T): Promise<T> {
    if (this.closed) throw new TributaryError("PEER_UNAVAILABLE", "the mirror connection is closed");
    return this.central.answer(() => {
      if (this.closed) throw new TributaryError("PEER_UNAVAILABLE", "the mirror connection closed meanwhile");
      return fn();
    });
  }
}
