/**
 * Egress: records of a log topic are published to MQTT topics built from each record's key
 * (`devices/{key}/commands`), one loop per partition.
 *
 * Position: the committed offsets of a consumer group, one group per rule (`egressGroupId`):
 * `mqtt-egress.<connection>.<topic>.<hash>`, the hash (FNV-1a, 8 hex digits) being that of the
 * rule's `mqttTopic` template, so two rules taking one log topic to different MQTT topics keep
 * apart. Characters a group id may not hold are replaced by `_`. The bridge commits as a group
 * without members (memberId "", generation -1), so the position shows in `tributary group
 * describe` and `GET /v1/groups/{group}` with its lag, like any group's.
 *
 * - Commit: after every publish of a round was acknowledged by the MQTT broker (QoS 1 and 2; QoS 0
 *   "acknowledged" means written to the socket), with metadata naming the MQTT bridge. A crash
 *   between the acknowledgements and the commit republishes that round: at-least-once, with at
 *   most `batchRecords` repeats per partition. A commit that fails is retried (not the round), so
 *   a failing commit stalls the loop instead of flooding devices. On shutdown, a round whose
 *   publishes were all acknowledged is still committed.
 * - Start: the committed offset while it lies in the log, else `startFrom` (`broker.groups
 *   .startOffset`): the end of the log ("latest", so devices are not flooded with history) or its
 *   start ("earliest"). A start without a commit commits that offset at once, so records produced
 *   while the bridge is down are not skipped after a restart.
 * - Migration: before groups, the position was `<data.dir>/mqtt-egress/<topic>-<hash>/<p>.json`
 *   (`{"nextOffset": N}`). A partition whose group has no commit starts from that file's offset
 *   (taken like a committed one: `startFrom` if it is outside the log), commits it, and the file is
 *   removed only after the commit is durable. Once the group has a commit, a leftover file is
 *   removed unread.
 * - Moved from outside: the group has no members, so `tributary group reset-offsets` works while
 *   the bridge runs; a commit that differs from the bridge's last one is taken up before the next
 *   round (and the round in flight, if any, is not committed over it).
 */
import type { MqttClient } from "mqtt";
import type { Broker } from "../../src/broker.ts";
import { isTributaryError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import { joinPath, nodeFileSystem, type FileSystem } from "../../src/runtime/fs.ts";
import type { EgressRuleConfig } from "./config.ts";
import type { BridgeMetrics } from "./metrics.ts";
import { HEADER_MQTT_TOPIC, egressTopic } from "./rules.ts";

const RETRY_MS = 1_000;
const WAIT_MS = 1_000;
const PUBLISH_TIMEOUT_MS = 30_000;
const GROUP_ID_MAX = 249;
const METADATA_MAX = 4096;

/**
 * The consumer group holding an egress rule's position.
 * @example egressGroupId({ connection: "local", topic: "commands", mqttTopicText: "devices/{key}/commands" }) // "mqtt-egress.local.commands.<8 hex>"
 */
export function egressGroupId(rule: Pick<EgressRuleConfig, "connection" | "topic" | "mqttTopicText">): string {
  const safe = (s: string) => s.replace(/[^a-zA-Z0-9._-]/g, "_");
  const id = `mqtt-egress.${safe(rule.connection)}.${safe(rule.topic)}.${fnv1a(rule.mqttTopicText)}`;
  if (id.length <= GROUP_ID_MAX) return id;
  // Only with names near the 249-character limit: keep a readable prefix and hash the whole.
  return `mqtt-egress.${safe(rule.topic).slice(0, 200)}.${fnv1a(`${rule.connection}\u0000${rule.topic}\u0000${rule.mqttTopicText}`)}`;
}

export class EgressRule {
  readonly groupId: string;
  private readonly abort = new AbortController();
  private loops: Promise<void>[] = [];
  /** The pre-group position files of this rule (read once, for migration). */
  private readonly legacyDir: string;
  private readonly metadata: string;
  /** Per partition: the offset this rule last committed (or found committed). */
  private readonly committed = new Map<number, number>();
  private readonly utf8 = new TextDecoder("utf-8", { fatal: true });

  constructor(
    private readonly rule: EgressRuleConfig,
    private readonly broker: Broker,
    private readonly client: MqttClient,
    private readonly metrics: BridgeMetrics,
    private readonly logger: Logger,
    private readonly fs: FileSystem = nodeFileSystem,
  ) {
    this.groupId = egressGroupId(rule);
    this.legacyDir = joinPath(broker.config.dataDir, "mqtt-egress", `${rule.topic}-${fnv1a(rule.mqttTopicText)}`);
    const meta = JSON.stringify({ by: "tributary-mqtt-bridge", connection: rule.connection, mqttTopic: rule.mqttTopicText });
    this.metadata = meta.length <= METADATA_MAX ? meta : JSON.stringify({ by: "tributary-mqtt-bridge", connection: rule.connection.slice(0, 1000) });
  }

  start(): void {
    this.logger.info("MQTT egress: position kept in consumer group", { topic: this.rule.topic, mqttTopic: this.rule.mqttTopicText, group: this.groupId });
    this.loops = [this.run().catch((e: unknown) => {
      if (!this.stopped) this.logger.error("MQTT egress stopped on an error", { topic: this.rule.topic, group: this.groupId, error: e });
    })];
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled(this.loops);
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private async run(): Promise<void> {
    let partitions = 0;
    while (!this.stopped && partitions === 0) {
      try {
        partitions = this.broker.describeTopic(this.rule.topic).partitions.length;
      } catch (e) {
        if (!isTributaryError(e) || (e.code !== "TOPIC_NOT_FOUND" && e.code !== "NOT_READY")) throw e;
        await this.sleep(RETRY_MS);
      }
    }
    if (this.stopped) return;
    const starts = await Promise.all(Array.from({ length: partitions }, (_, p) => this.startPosition(p)));
    if (this.stopped || starts.some((s) => s === null)) return;
    await this.removeLegacyDir();
    await Promise.all(starts.map((offset, p) => this.partitionLoop(p, offset!)));
  }

  /** Where partition `p` starts, committed to the group before the loop runs (null: stopped first). */
  private async startPosition(p: number): Promise<number | null> {
    const file = joinPath(this.legacyDir, `${p}.json`);
    const tp = { topic: this.rule.topic, partition: p };
    const [prior] = await this.broker.groups.fetchCommittedOffsets(this.groupId, [tp]);
    if (prior !== undefined) {
      await this.fs.remove(file);
      const offset = await this.broker.groups.startOffset(this.groupId, this.rule.topic, p, this.rule.startFrom);
      if (offset === prior.offset) {
        this.committed.set(p, offset);
        return offset;
      }
      this.logger.warn("MQTT egress: committed position is outside the log; starting by startFrom", { group: this.groupId, topic: this.rule.topic, partition: p, committed: prior.offset, to: offset, startFrom: this.rule.startFrom });
      return (await this.commit(p, offset)) ? offset : null;
    }
    const legacy = await this.loadLegacy(file);
    let offset = await this.broker.groups.startOffset(this.groupId, this.rule.topic, p, this.rule.startFrom);
    let metadata = this.metadata;
    if (legacy !== null) {
      const d = this.broker.describeTopic(this.rule.topic).partitions[p]!;
      const inLog = legacy >= d.logStartOffset && legacy <= d.highWatermark;
      this.logger.info("MQTT egress: moving the position file into the consumer group", { group: this.groupId, topic: this.rule.topic, partition: p, file, offset: legacy, inLog });
      if (inLog) offset = legacy;
      metadata = this.metadataWith({ migratedFrom: file });
    }
    if (!(await this.commit(p, offset, metadata))) return null;
    // Only now that the group holds the position durably: a crash before this keeps the file, and
    // the next start finds the commit and removes it.
    if (legacy !== null) await this.fs.remove(file);
    return offset;
  }

  private async partitionLoop(p: number, start: number): Promise<void> {
    let offset = start;
    while (!this.stopped) {
      try {
        offset = (await this.movedFromOutside(p)) ?? offset;
        const res = await this.broker.fetch(this.rule.topic, p, offset, { maxRecords: this.rule.batchRecords, waitMs: WAIT_MS, signal: this.abort.signal });
        if (this.stopped) return;
        if (res.records.length === 0 && res.nextOffset === offset) continue;
        await this.withTimeout(Promise.all(res.records.map((r) => this.publish(p, r.key, r.value, r.headers))));
        const moved = await this.movedFromOutside(p);
        if (moved !== null) {
          offset = moved;
          continue;
        }
        if (!(await this.commit(p, res.nextOffset))) return;
        offset = res.nextOffset;
      } catch (e) {
        if (this.stopped) return;
        if (isTributaryError(e) && e.code === "OFFSET_OUT_OF_RANGE") {
          const d = this.broker.describeTopic(this.rule.topic).partitions[p]!;
          const next: number = offset < d.logStartOffset ? d.logStartOffset : d.highWatermark;
          this.logger.warn("MQTT egress: position is outside the log; moving", { group: this.groupId, topic: this.rule.topic, partition: p, from: offset, to: next });
          if (!(await this.commit(p, next))) return;
          offset = next;
          continue;
        }
        this.logger.warn("MQTT egress: round failed, retrying from the committed position", { group: this.groupId, topic: this.rule.topic, partition: p, offset, error: e });
        await this.sleep(RETRY_MS);
      }
    }
  }

  /**
   * The group's committed offset when someone other than this loop moved it (`group
   * reset-offsets`), else null. A group deleted under the bridge is not a move: the next commit
   * creates it again.
   */
  private async movedFromOutside(p: number): Promise<number | null> {
    const [c] = await this.broker.groups.fetchCommittedOffsets(this.groupId, [{ topic: this.rule.topic, partition: p }]);
    if (c === undefined || c.offset === this.committed.get(p)) return null;
    this.logger.info("MQTT egress: the group's offset was moved from outside; following it", { group: this.groupId, topic: this.rule.topic, partition: p, from: this.committed.get(p), to: c.offset });
    this.committed.set(p, c.offset);
    return c.offset;
  }

  /**
   * Commit until it is durable; false only when the bridge stops first. Tried once even when
   * stopping, so a round acknowledged as the bridge shuts down is not published again at the next
   * start (the bridge stops before the broker closes).
   */
  private async commit(p: number, offset: number, metadata = this.metadata): Promise<boolean> {
    for (let attempt = 0; attempt === 0 || !this.stopped; attempt++) {
      try {
        await this.broker.groups.commitOffsets({ groupId: this.groupId, memberId: "", generationId: -1, offsets: [{ topic: this.rule.topic, partition: p, offset, metadata }] });
        this.committed.set(p, offset);
        return true;
      } catch (e) {
        if (this.stopped) return false;
        const hint = isTributaryError(e) && e.code === "UNKNOWN_MEMBER_ID" ? "the group has members: it belongs to the MQTT bridge alone, remove them" : undefined;
        this.logger.warn("MQTT egress: commit failed, retrying the commit", { group: this.groupId, topic: this.rule.topic, partition: p, offset, hint, error: e });
        await this.sleep(RETRY_MS);
      }
    }
    return false;
  }

  private metadataWith(extra: Record<string, string>): string {
    const meta = JSON.stringify({ ...(JSON.parse(this.metadata) as Record<string, string>), ...extra });
    return meta.length <= METADATA_MAX ? meta : this.metadata;
  }

  private async publish(p: number, key: Uint8Array | null, value: Uint8Array | null, headers: { key: string; value: Uint8Array | null }[]): Promise<void> {
    const topic = egressTopic(this.rule.mqttTopic, this.rule.topic, p, key);
    if (topic === null) {
      this.metrics.egressUnroutable.inc({ topic: this.rule.topic });
      return;
    }
    const userProperties: Record<string, string[]> = {};
    for (const h of headers) {
      if (h.key === HEADER_MQTT_TOPIC || h.value === null) continue;
      try {
        (userProperties[h.key] ??= []).push(this.utf8.decode(h.value));
      } catch {
        // A header that is not text cannot be an MQTT user property: left out.
      }
    }
    const opts: Parameters<MqttClient["publishAsync"]>[2] = { qos: this.rule.qos, retain: this.rule.retain };
    if (this.client.options.protocolVersion === 5 && Object.keys(userProperties).length > 0) opts.properties = { userProperties };
    await this.client.publishAsync(topic, Buffer.from(value ?? new Uint8Array(0)), opts);
    this.metrics.egressPublished.inc({ topic: this.rule.topic });
  }

  /** A publish whose acknowledgement never comes (a connection lost mid-flight) must not stall the loop. */
  private async withTimeout<T>(work: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`MQTT publishes not acknowledged within ${PUBLISH_TIMEOUT_MS} ms`)), PUBLISH_TIMEOUT_MS);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The offset of a pre-group position file, or null when there is none (or it is unreadable). */
  private async loadLegacy(file: string): Promise<number | null> {
    const bytes = await this.fs.readFile(file);
    if (bytes === null) return null;
    const text = new TextDecoder().decode(bytes);
    try {
      const v = JSON.parse(text) as { nextOffset?: unknown };
      if (typeof v.nextOffset === "number" && Number.isSafeInteger(v.nextOffset) && v.nextOffset >= 0) return v.nextOffset;
    } catch {
      // Reported below.
    }
    this.logger.error("MQTT egress: the old position file is damaged; starting by startFrom instead", { group: this.groupId, file, contents: text.slice(0, 200), startFrom: this.rule.startFrom });
    return null;
  }

  /** The rule's old directory, once it holds nothing more, and `mqtt-egress` itself once empty. */
  private async removeLegacyDir(): Promise<void> {
    const parent = joinPath(this.broker.config.dataDir, "mqtt-egress");
    if (!(await this.fs.exists(this.legacyDir))) return;
    if ((await this.fs.list(this.legacyDir)).length === 0) await this.fs.remove(this.legacyDir);
    if ((await this.fs.list(parent)).length === 0) await this.fs.remove(parent);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.abort.signal.addEventListener("abort", () => {
        clearTimeout(t);
        resolve();
      }, { once: true });
    });
  }
}

/** A short stable name for a rule's MQTT topic template, fit for a group id (and the old directory name). */
function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}
