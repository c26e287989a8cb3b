/**
 * Topic names and the topic metadata file.
 *
 * Layout under the data directory:
 *
 *   meta/topics.json            every topic: name, id, partition count, config overrides, creation time
 *   topics/<name>~<id>/<p>/     one partition log per directory (segments, indexes)
 *
 * The directory carries the topic's random id after `~` (a character topic names cannot hold), so a
 * topic deleted and created again under the same name never meets the old files.
 *
 * Crash safety by ordering: create makes the partition directories first and then writes the
 * metadata (atomically, synced), so a crash in between leaves only orphan directories; delete
 * writes the metadata first and then removes the directories. On start, directories that the
 * metadata does not name are removed.
 */
import { TributaryError } from "./errors.ts";
import { joinPath, writeFileAtomic, type FileSystem } from "./runtime/fs.ts";
import type { TopicSettingKey } from "./config.ts";

/**
 * A mirror target's binding to its one source, `cluster/topic/topicId` (src/mirror/central.ts):
 * kept with the topic's config overrides, set only by the central's mirror open, never by a
 * create request.
 */
export const MIRROR_SOURCE_KEY = "mirror.source";

export interface TopicRecord {
  name: string;
  id: string;
  partitions: number;
  config: Partial<Record<TopicSettingKey | typeof MIRROR_SOURCE_KEY, string>>;
  createdAtMs: number;
}

interface MetadataFile {
  version: 1;
  topics: TopicRecord[];
}

/** Kafka's rule: 1 to 249 characters of ASCII letters, digits, '.', '_' and '-', not "." or "..". */
const LEGAL = /^[a-zA-Z0-9._-]{1,249}$/;
/** Names starting with "__" are kept for the broker's own topics (consumer offsets, mirror checkpoints). */
const INTERNAL_PREFIX = "__";
/** Upper bound on partitions per topic: each partition holds open files and memory on small hardware. */
export const MAX_PARTITIONS = 1000;

export function validateTopicName(name: unknown, { internal = false } = {}): asserts name is string {
  if (typeof name !== "string" || !LEGAL.test(name) || name === "." || name === "..") {
    throw new TributaryError(
      "INVALID_TOPIC_NAME",
      `topic names are 1 to 249 characters of letters, digits, '.', '_' and '-', and not "." or "..": ${JSON.stringify(name)}`,
    );
  }
  if (!internal && name.startsWith(INTERNAL_PREFIX)) {
    throw new TributaryError("INVALID_TOPIC_NAME", `topic names starting with "${INTERNAL_PREFIX}" are reserved for internal topics: ${name}`);
  }
}

/** Kafka refuses names that differ only by '.' versus '_', since metrics names fold them together. */
export function collisionKey(name: string): string {
  return name.replace(/\./g, "_");
}

export class TopicMetadataStore {
  private readonly file: string;

  constructor(
    private readonly fs: FileSystem,
    private readonly dataDir: string,
  ) {
    this.file = joinPath(dataDir, "meta", "topics.json");
  }

  topicDir(t: Pick<TopicRecord, "name" | "id">): string {
    return joinPath(this.dataDir, "topics", `${t.name}~${t.id}`);
  }

  partitionDir(t: Pick<TopicRecord, "name" | "id">, partition: number): string {
    return joinPath(this.topicDir(t), String(partition));
  }

  async load(): Promise<TopicRecord[]> {
    await this.fs.mkdirp(joinPath(this.dataDir, "meta"));
    await this.fs.mkdirp(joinPath(this.dataDir, "topics"));
    const bytes = await this.fs.readFile(this.file);
    if (!bytes) return [];
    let parsed: MetadataFile;
    try {
      parsed = JSON.parse(new TextDecoder().decode(bytes)) as MetadataFile;
    } catch (e) {
      // Written atomically, so a bad file is damage from outside: refuse to guess.
      throw new Error(`topic metadata ${this.file} is not valid JSON; restore it from a backup`, { cause: e });
    }
    if (parsed.version !== 1 || !Array.isArray(parsed.topics)) {
      throw new Error(`topic metadata ${this.file} has an unknown version ${String(parsed.version)}`);
    }
    return parsed.topics;
  }

  async save(topics: readonly TopicRecord[]): Promise<void> {
    const body: MetadataFile = { version: 1, topics: [...topics] };
    await writeFileAtomic(this.fs, this.file, new TextEncoder().encode(`${JSON.stringify(body, null, 1)}\n`));
  }

  /** Remove topic directories the metadata does not name (a crash during create or delete). */
  async removeOrphans(topics: readonly TopicRecord[]): Promise<string[]> {
    const known = new Set(topics.map((t) => `${t.name}~${t.id}`));
    const removed: string[] = [];
    for (const entry of await this.fs.list(joinPath(this.dataDir, "topics"))) {
      if (!known.has(entry)) {
        await this.fs.remove(joinPath(this.dataDir, "topics", entry));
        removed.push(entry);
      }
    }
    return removed;
  }
}

export function newTopicId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
