/**
 * The broker as the edge's mirror sees it (source.ts's `MirrorHost`), over the few hooks the
 * broker exposes for it: local partition logs (raw whole batches up to the high watermark, as
 * `PartitionLog.read` returns them), topic changes, the internal checkpoint topic (created like
 * `__consumer_offsets`, written with acks=all), the leadership of that topic, and committed offsets.
 *
 * Leadership: on a single node this peer always leads. In a cluster it leads once its replica of
 * `__mirror_checkpoints` is leader and its high watermark has reached the log end it had when it
 * became leader (its own term's entry committed, so the replay sees every checkpoint), the wait
 * the group coordinator makes for `__consumer_offsets`.
 */
import type { Broker } from "../broker.ts";
import { CHECKPOINTS_TOPIC, CHECKPOINTS_TOPIC_CONFIG } from "./checkpoints.ts";
import type { CheckpointTopic, GroupOffsetsReader, MirrorHost, MirrorSourceLog, SourceBounds } from "./source.ts";

export function brokerMirrorHost(broker: Broker): MirrorHost {
  return { source: sourceOf(broker), checkpoints: checkpointTopicOf(broker), groups: groupsOf(broker) };
}

function sourceOf(broker: Broker): MirrorSourceLog {
  return {
    topics: () => broker.topicRecords(),
    bounds(topic, partition): SourceBounds | null {
      const log = broker.localPartition(topic, partition)?.log;
      return log ? { logStartOffset: log.logStartOffset, highWatermark: log.highWatermark, logEndOffset: log.logEndOffset, sizeBytes: log.sizeBytes } : null;
    },
    read(topic, partition, offset, maxBytes) {
      const log = broker.localPartition(topic, partition)?.log;
      if (!log) return Promise.reject(new Error(`invariant broken: no local replica of ${topic}/${partition} to mirror`));
      return log.read(offset, maxBytes);
    },
    onHighWatermark(topic, partition, fn) {
      return broker.localPartition(topic, partition)?.log.onHighWatermark(fn) ?? (() => {});
    },
    onTopicsChanged: (fn) => broker.onTopicsChanged(fn),
  };
}

function checkpointTopicOf(broker: Broker): CheckpointTopic {
  return {
    ensure: () => broker.ensureInternalTopic(CHECKPOINTS_TOPIC, CHECKPOINTS_TOPIC_CONFIG),
    append: (records) => broker.appendInternal(CHECKPOINTS_TOPIC, records.map((r) => ({ key: r.key, value: r.value }))),
    readAll: (fromOffset) => broker.readInternal(CHECKPOINTS_TOPIC, fromOffset),
    onLeadership(fn) {
      let reported: boolean | null = null;
      let waiting: (() => void) | null = null;
      const report = (leading: boolean) => {
        if (reported !== leading) fn((reported = leading));
      };
      const check = () => {
        waiting?.();
        waiting = null;
        const local = broker.localPartition(CHECKPOINTS_TOPIC, 0);
        if (!local?.leading) return report(false);
        const end = local.log.logEndOffset;
        if (local.log.highWatermark >= end) return report(true);
        waiting = local.log.onHighWatermark((hw) => {
          if (hw >= end) check();
        });
      };
      const unsubscribeLeader = broker.onLeaderChange(CHECKPOINTS_TOPIC, 0, check);
      // A replica opened later (the topic created, or this peer given one) changes nothing by itself: watch topics too.
      const unsubscribeTopics = broker.onTopicsChanged(check);
      check();
      return () => {
        waiting?.();
        unsubscribeLeader();
        unsubscribeTopics();
      };
    },
  };
}

function groupsOf(broker: Broker): GroupOffsetsReader {
  return {
    async committed(group) {
      const offsets = await broker.groups.fetchCommittedOffsets(group);
      return offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset, metadata: o.metadata }));
    },
    onCommit: (fn) => broker.onOffsetsCommitted(fn),
  };
}
