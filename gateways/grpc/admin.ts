/** AdminService: topics and the cluster, over the broker's topic calls; the edge's mirror links. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { TopicDescription } from "../../src/broker.ts";
import { TributaryError } from "../../src/errors.ts";
import type { MirrorStatus } from "../../src/mirror/edge.ts";
import type { OffsetRange } from "../../src/mirror/types.ts";
import type { ServiceHandlers } from "./bridge.ts";
import type { GrpcDeps } from "./deps.ts";
import { AdminService, type DescribeMirrorResponseSchema, type TopicDescriptionSchema } from "./gen/tributary/v1/admin_pb.ts";

type Methods = typeof AdminService extends { method: infer M } ? M : never;

function toTopicDescription(d: TopicDescription): MessageInitShape<typeof TopicDescriptionSchema> {
  return {
    name: d.name,
    partitions: d.partitions.map((p) => ({
      partition: p.partition,
      logStartOffset: BigInt(p.logStartOffset),
      highWatermark: BigInt(p.highWatermark),
      logEndOffset: BigInt(p.logEndOffset),
      sizeBytes: BigInt(p.sizeBytes),
    })),
    config: d.config,
    createdAtMs: BigInt(d.createdAtMs),
  };
}

const range = (r: OffsetRange & { reason: string }) => ({ from: BigInt(r.from), to: BigInt(r.to), reason: r.reason });

/** The edge's mirror status as the proto has it: -1 stands for "not known" where JSON has null. */
export function toMirrorStatus(s: MirrorStatus): MessageInitShape<typeof DescribeMirrorResponseSchema> {
  return {
    cluster: s.cluster,
    leading: s.leading,
    links: s.links.map((l) => ({
      name: l.name,
      state: l.state,
      lastError: l.lastError ?? "",
      reconnects: BigInt(l.reconnects),
      lagRecords: BigInt(l.summary.lagRecords),
      lagBytes: BigInt(l.summary.lagBytes),
      maxLagSeconds: l.summary.maxLagSeconds,
      drainSeconds: l.summary.drainSeconds ?? -1,
      stalledPartitions: l.summary.stalledPartitions,
      sendBytesPerSec: l.summary.sendBytesPerSec,
      pendingGroupOffsets: BigInt(l.pendingGroupOffsets),
      partitions: l.partitions.map((p) => ({
        topic: p.topic,
        partition: p.partition,
        target: p.target,
        state: p.state,
        message: p.message ?? "",
        position: BigInt(p.lag?.position ?? -1),
        highWatermark: BigInt(p.lag?.highWatermark ?? -1),
        lagRecords: BigInt(p.lag?.lagRecords ?? 0),
        lagBytes: BigInt(p.lag?.lagBytes ?? 0),
        lagSeconds: p.lag?.lagSeconds ?? 0,
        lastAdvanceMs: BigInt(p.lag?.lastAdvanceMs ?? 0),
        drainSeconds: p.lag?.drainSeconds ?? -1,
        stalled: p.lag?.stalled ?? false,
        gaps: p.gaps.map(range),
        dropped: (l.dropped.find((d) => d.topic === p.topic && d.partition === p.partition)?.ranges ?? []).map(range),
      })),
    })),
  };
}

export function adminHandlers({ broker, limits, mirror }: GrpcDeps, boundPort: () => number): ServiceHandlers<Methods> {
  return {
    async createTopic(req) {
      return { topic: toTopicDescription(await broker.createTopic(req.name, req.partitions, req.config)) };
    },
    async listTopics() {
      return { topics: broker.listTopics().map(toTopicDescription) };
    },
    async describeTopic(req) {
      return { topic: toTopicDescription(broker.describeTopic(req.name)) };
    },
    async deleteTopic(req) {
      await broker.deleteTopic(req.name);
      return {};
    },
    async describeCluster() {
      return { clusterId: "", controllerId: 0, brokers: [{ nodeId: 0, host: limits.host, port: boundPort() }], ready: broker.ready };
    },
    async describeMirror() {
      if (!mirror) throw new TributaryError("MIRROR_NOT_CONFIGURED", "this broker mirrors nothing: no mirror.config");
      return toMirrorStatus(mirror.status());
    },
  };
}
