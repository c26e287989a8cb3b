/**
 * Mirrored consumer groups of one link: the committed offsets of the configured groups, for the
 * topics the link carries, go to the central with `sink.commitGroupOffsets` (in source offsets;
 * the central translates them, see index.ts). `sync()` runs periodically (the edge's timer) and
 * after commits; it sends only what changed since the central last took it. A commit the central
 * holds back (`pending`: beyond its position, the records have not arrived) is sent again on a
 * later sync; a refused one is logged and not sent again until the group commits anew.
 *
 * Bounds: at most MAX_COMMITS_PER_SYNC commits per call to the sink; the memory of what was sent
 * holds one entry per (group, topic, partition) the groups commit.
 */
import type { Logger } from "../logger.ts";
import type { GroupOffsetsReader } from "./source.ts";
import type { GroupOffsetCommit, MirrorSink } from "./types.ts";

export const MAX_COMMITS_PER_SYNC = 1000;

export interface GroupOffsetsOptions {
  readonly link: string;
  readonly cluster: string;
  readonly groups: readonly string[];
  readonly carries: (topic: string) => boolean;
  readonly reader: GroupOffsetsReader;
  readonly logger: Logger;
}

export class GroupOffsetsMirror {
  /** `group/topic/partition` -> the source offset the central took (or refused). */
  private readonly sent = new Map<string, number>();
  private readonly pendingKeys = new Set<string>();
  private running: Promise<void> | null = null;

  constructor(private readonly o: GroupOffsetsOptions) {}

  /** Commits the central holds back, to be sent again. */
  get pending(): number {
    return this.pendingKeys.size;
  }

  /** One pass; a pass already running is joined rather than doubled. */
  sync(sink: MirrorSink | null): Promise<void> {
    if (!sink || this.o.groups.length === 0) return Promise.resolve();
    this.running ??= this.pass(sink).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async pass(sink: MirrorSink): Promise<void> {
    const commits: GroupOffsetCommit[] = [];
    for (const group of this.o.groups) {
      for (const c of await this.o.reader.committed(group)) {
        if (!this.o.carries(c.topic) || this.sent.get(key(group, c.topic, c.partition)) === c.offset) continue;
        if (commits.length < MAX_COMMITS_PER_SYNC) commits.push({ group, sourceTopic: c.topic, partition: c.partition, sourceOffset: c.offset, metadata: c.metadata });
      }
    }
    if (commits.length === 0) return;
    const results = await sink.commitGroupOffsets(this.o.cluster, commits);
    for (const r of results) {
      const k = key(r.commit.group, r.commit.sourceTopic, r.commit.partition);
      if (r.ok || !r.pending) {
        this.sent.set(k, r.commit.sourceOffset);
        this.pendingKeys.delete(k);
        if (!r.ok) this.o.logger.warn("mirror: the central refused a group offset", { link: this.o.link, group: r.commit.group, topic: r.commit.sourceTopic, partition: r.commit.partition, code: r.code, error: r.message });
      } else {
        this.pendingKeys.add(k);
      }
    }
  }
}

function key(group: string, topic: string, partition: number): string {
  return JSON.stringify([group, topic, partition]);
}
