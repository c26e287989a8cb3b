/** AdminService: topics and the cluster, over the broker's topic calls. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { TopicDescription } from "../../src/broker.ts";
import type { ServiceHandlers } from "./bridge.ts";
import type { GrpcDeps } from "./deps.ts";
import { AdminService, type TopicDescriptionSchema } from "./gen/tributary/v1/admin_pb.ts";

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

export function adminHandlers({ broker, limits }: GrpcDeps, boundPort: () => number): ServiceHandlers<Methods> {
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
  };
}
