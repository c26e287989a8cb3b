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
 *
 * Partitions without a local replica are read from a replica elsewhere (remote-source.ts over
 * `Broker.readReplica`); the choice is made per call, and per subscription for the listeners.
 */
import type { Broker } from "../broker.ts";
import { CHECKPOINTS_TOPIC, CHECKPOINTS_TOPIC_CONFIG } from "./checkpoints.ts";
import { systemClock, type Clock } from "../runtime/clock.ts";
import { RemotePartitions } from "./remote-source.ts";
import type { CheckpointTopic, GroupOffsetsReader, MirrorHost, MirrorSourceLog, SourceBounds } from "./source.ts";

/** `clock` times the remote partitions' poll retries. */
export function brokerMirrorHost(broker: Broker, clock: Clock = systemClock): MirrorHost {
  return { source: sourceOf(broker, new RemotePartitions(broker, clock)), checkpoints: checkpointTopicOf(broker), groups: groupsOf(broker) };
}

function sourceOf(broker: Broker, remote: RemotePartitions): MirrorSourceLog {
  return {
    topics: () => broker.topicRecords(),
    bounds(topic, partition): SourceBounds | null {
      const log = broker.localPartition(topic, partition)?.log;
      if (!log) return remote.bounds(topic, partition);
      return { logStartOffset: log.logStartOffset, highWatermark: log.highWatermark, logEndOffset: log.logEndOffset, sizeBytes: log.sizeBytes };
    },
    read(topic, partition, offset, maxBytes) {
      const log = broker.localPartition(topic, partition)?.log;
      return log ? log.read(offset, maxBytes) : remote.read(topic, partition, offset, maxBytes);
    },
    onHighWatermark(topic, partition, fn) {
      const log = broker.localPartition(topic, partition)?.log;
      return log ? log.onHighWatermark(fn) : remote.onHighWatermark(topic, partition, fn);
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
