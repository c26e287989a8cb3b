/**
 * Mirrored consumer-group offsets at the central (a helper of central.ts; design in index.ts,
 * "Consumer group offsets"): each edge commit (a source offset) is translated on its target
 * partition's leader, and the translated offsets are committed through the broker's group
 * service, one commit per group, as a simple consumer's. A source offset beyond the central's
 * position is pending: the edge sends it again later.
 *
 * The commit's metadata names the source it came from, with the edge's own metadata cut to keep
 * within the coordinator's 4096 characters:
 *
 *   {"source":{"cluster":"site7","topic":"telemetry","partition":0,"offset":1234},"metadata":"..."}
 *
 * @example
 *   const results = await commitMirroredOffsets(io, "site7", [{ group: "g", sourceTopic: "t", partition: 0, sourceOffset: 120, metadata: "" }]);
 */
import { TributaryError, isTributaryError } from "../errors.ts";
import type { OffsetCommit } from "../groups/types.ts";
import type { CentralTopic } from "./central.ts";
import { checkCommit, checkCommits, checkPartition } from "./central-checks.ts";
import type { GroupOffsetCommit, GroupOffsetResult } from "./types.ts";

const MAX_COMMIT_METADATA_CHARS = 4096;

export interface MirroredOffsetsIo {
  targetOf(cluster: string, sourceTopic: string): CentralTopic | undefined;
  /** The central offset for a source offset, on the partition's leader; null: pending. */
  translate(t: CentralTopic, partition: number, sourceOffset: number): Promise<number | null>;
  commit(groupId: string, offsets: OffsetCommit[]): Promise<void>;
}

/** One result per commit, in order; a refusal is a result, a bug is thrown. */
export async function commitMirroredOffsets(io: MirroredOffsetsIo, cluster: string, commits: readonly GroupOffsetCommit[]): Promise<GroupOffsetResult[]> {
  checkCommits(cluster, commits);
  const results: GroupOffsetResult[] = new Array(commits.length);
  const byGroup = new Map<string, { index: number; topic: string; offset: number }[]>();
  await Promise.all(
    commits.map(async (c, index) => {
      try {
        checkCommit(c);
        const t = io.targetOf(cluster, c.sourceTopic);
        if (!t) throw new TributaryError("TOPIC_NOT_FOUND", `${cluster}/${c.sourceTopic} is not mirrored here`);
        checkPartition(t, c.partition);
        const offset = await io.translate(t, c.partition, c.sourceOffset);
        if (offset === null) results[index] = { ok: false, commit: c, pending: true };
        else byGroup.set(c.group, [...(byGroup.get(c.group) ?? []), { index, topic: t.record.name, offset }]);
      } catch (e) {
        results[index] = refused(c, e);
      }
    }),
  );
  for (const [groupId, unordered] of byGroup) {
    // Translations finish in any order; of two commits for one partition in a call, the later one wins.
    const list = unordered.sort((a, b) => a.index - b.index);
    const offsets = list.map((l) => ({ topic: l.topic, partition: commits[l.index]!.partition, offset: l.offset, metadata: commitMetadata(cluster, commits[l.index]!) }));
    try {
      await io.commit(groupId, offsets);
      for (const l of list) results[l.index] = { ok: true, commit: commits[l.index]!, targetOffset: l.offset };
    } catch (e) {
      for (const l of list) results[l.index] = refused(commits[l.index]!, e);
    }
  }
  return results;
}

function refused(commit: GroupOffsetCommit, e: unknown): GroupOffsetResult {
  if (!isTributaryError(e)) throw e;
  return { ok: false, commit, pending: false, code: e.code, message: e.message };
}

/** The central commit's metadata: the source it was translated from, and the edge's metadata cut to fit. */
export function commitMetadata(cluster: string, c: GroupOffsetCommit): string {
  const source = { cluster, topic: c.sourceTopic, partition: c.partition, offset: c.sourceOffset };
  let metadata = c.metadata ?? "";
  for (;;) {
    const text = JSON.stringify({ source, metadata });
    if (text.length <= MAX_COMMIT_METADATA_CHARS || metadata === "") return text;
    metadata = metadata.slice(0, Math.max(0, metadata.length - (text.length - MAX_COMMIT_METADATA_CHARS)));
  }
}
