/** GroupsService: consumer groups over broker.groups (the coordinator, src/groups/coordinator.ts). */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CommittedOffset, GroupHeartbeatResponse, TopicPartition } from "../../src/broker.ts";
import { TributaryError } from "../../src/errors.ts";
import { ASSIGNOR_NAMES, type AssignorName, type OffsetResetTarget } from "../../src/groups/types.ts";
import type { ServiceHandlers } from "./bridge.ts";
import type { GrpcDeps } from "./deps.ts";
import { GroupsService, type CommittedOffsetSchema, type ResetOffsetsRequest } from "./gen/tributary/v1/groups_pb.ts";
import type { TopicPartitions, TopicPartitionsSchema } from "./gen/tributary/v1/records_pb.ts";
import { safeNumber } from "./records.ts";

type Methods = typeof GroupsService extends { method: infer M } ? M : never;

/** Flat (topic, partition) pairs grouped by topic, topics in first-seen order. */
export function groupByTopic(list: TopicPartition[]): MessageInitShape<typeof TopicPartitionsSchema>[] {
  const byTopic = new Map<string, number[]>();
  for (const tp of list) {
    const ps = byTopic.get(tp.topic);
    if (ps) ps.push(tp.partition);
    else byTopic.set(tp.topic, [tp.partition]);
  }
  return [...byTopic].map(([topic, partitions]) => ({ topic, partitions }));
}

export function flatten(list: TopicPartitions[]): TopicPartition[] {
  return list.flatMap((t) => t.partitions.map((partition) => ({ topic: t.topic, partition })));
}

function memberState(r: GroupHeartbeatResponse) {
  return {
    memberId: r.memberId,
    generation: r.generationId,
    assignment: groupByTopic(r.assignment),
    pendingPartitions: groupByTopic(r.pendingPartitions),
    rebalanceInProgress: r.rebalanceInProgress,
    heartbeatIntervalMs: r.heartbeatIntervalMs,
    sessionTimeoutMs: r.sessionTimeoutMs,
  };
}

function toCommitted(c: CommittedOffset): MessageInitShape<typeof CommittedOffsetSchema> {
  return { topic: c.topic, partition: c.partition, offset: BigInt(c.offset), metadata: c.metadata, commitTimestampMs: BigInt(c.commitTimestampMs) };
}

function assignorName(name: string | undefined): AssignorName | undefined {
  if (name === undefined || name === "") return undefined;
  if (!(ASSIGNOR_NAMES as readonly string[]).includes(name)) {
    throw new TributaryError("INVALID_REQUEST", `assignor must be one of ${ASSIGNOR_NAMES.join(", ")}, got ${JSON.stringify(name)}`);
  }
  return name as AssignorName;
}

function resetTarget(req: ResetOffsetsRequest): OffsetResetTarget {
  switch (req.target.case) {
    case "earliest":
      return { to: "earliest" };
    case "latest":
      return { to: "latest" };
    case "offset":
      return { to: "offset", offset: safeNumber(req.target.value, "offset") };
    case "timestampMs":
      return { to: "timestamp", timestampMs: safeNumber(req.target.value, "timestamp_ms") };
    case undefined:
      throw new TributaryError("INVALID_REQUEST", "give a target: earliest, latest, offset or timestamp_ms");
  }
}

export function groupsHandlers({ broker }: GrpcDeps): ServiceHandlers<Methods> {
  const groups = () => broker.groups;
  return {
    async joinGroup(req) {
      const r = await groups().heartbeat({
        groupId: req.groupId,
        topics: req.topics,
        sessionTimeoutMs: req.sessionTimeoutMs,
        assignor: assignorName(req.assignor),
        clientId: req.clientId,
      });
      return memberState(r);
    },
    async heartbeat(req) {
      if (req.memberId === "") throw new TributaryError("INVALID_REQUEST", "member_id is required: JoinGroup gives one");
      const r = await groups().heartbeat({
        groupId: req.groupId,
        memberId: req.memberId,
        topics: req.subscription?.topics,
        ownedPartitions: req.ownedPartitions ? flatten(req.ownedPartitions.partitions) : undefined,
      });
      return memberState(r);
    },
    async leaveGroup(req) {
      await groups().leave(req.groupId, req.memberId);
      return {};
    },
    async commitOffsets(req) {
      await groups().commitOffsets({
        groupId: req.groupId,
        memberId: req.memberId,
        generationId: req.generation,
        offsets: req.offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: safeNumber(o.offset, "offset"), metadata: o.metadata })),
      });
      return {};
    },
    async fetchOffsets(req) {
      const wanted = req.partitions.length > 0 ? flatten(req.partitions) : undefined;
      return { offsets: (await groups().fetchCommittedOffsets(req.groupId, wanted)).map(toCommitted) };
    },
    async listGroups() {
      return { groups: (await groups().listGroups()).map((g) => ({ groupId: g.groupId, state: g.state, members: g.members, assignor: g.assignor ?? "" })) };
    },
    async describeGroup(req) {
      const d = await groups().describeGroup(req.groupId);
      return {
        groupId: d.groupId,
        state: d.state,
        generation: d.generationId,
        assignor: d.assignor ?? "",
        members: d.members.map((m) => ({
          memberId: m.memberId,
          clientId: m.clientId,
          topics: m.topics,
          assignment: groupByTopic(m.assignment),
          pendingPartitions: groupByTopic(m.pendingPartitions),
          sessionTimeoutMs: m.sessionTimeoutMs,
          lastHeartbeatMs: BigInt(m.lastHeartbeatMs),
        })),
        partitions: d.partitions.map((p) => ({
          topic: p.topic,
          partition: p.partition,
          committedOffset: p.committedOffset === null ? undefined : BigInt(p.committedOffset),
          highWatermark: BigInt(p.highWatermark),
          logStartOffset: BigInt(p.logStartOffset),
          lag: p.lag === null ? undefined : BigInt(p.lag),
          memberId: p.memberId ?? undefined,
        })),
        totalLag: BigInt(d.totalLag),
      };
    },
    async resetOffsets(req) {
      const partitions = req.partitions.length > 0 ? req.partitions : undefined;
      return { offsets: (await groups().resetOffsets(req.groupId, req.topic, resetTarget(req), partitions)).map(toCommitted) };
    },
    async deleteGroup(req) {
      await groups().deleteGroup(req.groupId);
      return {};
    },
  };
}
