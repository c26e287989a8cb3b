/**
 * Egress: records of a log topic are published to MQTT topics built from each record's key
 * (`devices/{key}/commands`), one loop per partition.
 *
 * Position: until consumer groups land, each partition's position is a small JSON file,
 * `<data.dir>/mqtt-egress/<topic>-<rule hash>/<partition>.json` = `{"nextOffset": N}`, replaced
 * atomically (writeFileAtomic: temp file, fdatasync, rename, directory sync) only after every
 * publish of a round was acknowledged by the MQTT broker (QoS 1 and 2; QoS 0 "acknowledged" means
 * written to the socket). A crash between the acknowledgements and the file write republishes that
 * round: at-least-once, with at most `batchRecords` repeats per partition. A first start with no
 * file begins at the end of the log (`startFrom: "latest"`, so devices are not flooded with
 * history) or at its start (`"earliest"`), and writes the file at once, so records produced while
 * the bridge is down are not skipped after a restart.
 */
import type { MqttClient } from "mqtt";
import type { Broker } from "../../src/broker.ts";
import { isTributaryError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import { joinPath, nodeFileSystem, writeFileAtomic, type FileSystem } from "../../src/runtime/fs.ts";
import type { EgressRuleConfig } from "./config.ts";
import type { BridgeMetrics } from "./metrics.ts";
import { HEADER_MQTT_TOPIC, egressTopic } from "./rules.ts";

const RETRY_MS = 1_000;
const WAIT_MS = 1_000;
const PUBLISH_TIMEOUT_MS = 30_000;

export class EgressRule {
  private readonly abort = new AbortController();
  private loops: Promise<void>[] = [];
  private readonly dir: string;
  private readonly utf8 = new TextDecoder("utf-8", { fatal: true });

  constructor(
    private readonly rule: EgressRuleConfig,
    private readonly broker: Broker,
    private readonly client: MqttClient,
    private readonly metrics: BridgeMetrics,
    private readonly logger: Logger,
    private readonly fs: FileSystem = nodeFileSystem,
  ) {
    this.dir = joinPath(broker.config.dataDir, "mqtt-egress", `${rule.topic}-${fnv1a(rule.mqttTopicText)}`);
  }

  start(): void {
    this.loops = [this.run()];
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
    await this.fs.mkdirp(this.dir);
    await Promise.all(Array.from({ length: partitions }, (_, p) => this.partitionLoop(p)));
  }

  private async partitionLoop(p: number): Promise<void> {
    const file = joinPath(this.dir, `${p}.json`);
    const loaded = await this.load(file);
    let offset: number;
    if (loaded === null) {
      const d = this.broker.describeTopic(this.rule.topic).partitions[p]!;
      offset = this.rule.startFrom === "earliest" ? d.logStartOffset : d.highWatermark;
      await this.store(file, offset);
    } else {
      offset = loaded;
    }
    while (!this.stopped) {
      try {
        const res = await this.broker.fetch(this.rule.topic, p, offset, { maxRecords: this.rule.batchRecords, waitMs: WAIT_MS, signal: this.abort.signal });
        if (this.stopped) return;
        if (res.records.length === 0 && res.nextOffset === offset) continue;
        await this.withTimeout(Promise.all(res.records.map((r) => this.publish(p, r.key, r.value, r.headers))));
        offset = res.nextOffset;
        await this.store(file, offset);
      } catch (e) {
        if (this.stopped) return;
        if (isTributaryError(e) && e.code === "OFFSET_OUT_OF_RANGE") {
          const d = this.broker.describeTopic(this.rule.topic).partitions[p]!;
          const next: number = offset < d.logStartOffset ? d.logStartOffset : d.highWatermark;
          this.logger.warn("MQTT egress: stored position is outside the log; moving", { topic: this.rule.topic, partition: p, from: offset, to: next });
          offset = next;
          await this.store(file, offset);
          continue;
        }
        this.logger.warn("MQTT egress: round failed, retrying from the stored position", { topic: this.rule.topic, partition: p, offset, error: e });
        await this.sleep(RETRY_MS);
      }
    }
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

  private async load(file: string): Promise<number | null> {
    const bytes = await this.fs.readFile(file);
    if (bytes === null) return null;
    const v = JSON.parse(new TextDecoder().decode(bytes)) as { nextOffset?: unknown };
    if (typeof v.nextOffset !== "number" || !Number.isSafeInteger(v.nextOffset) || v.nextOffset < 0) {
      throw new Error(`MQTT egress position file ${file} is damaged: ${JSON.stringify(v)}`);
    }
    return v.nextOffset;
  }

  private store(file: string, offset: number): Promise<void> {
    return writeFileAtomic(this.fs, file, new TextEncoder().encode(JSON.stringify({ nextOffset: offset })));
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

/** A short stable name for a rule's MQTT topic template, fit for a directory name. */
function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}
