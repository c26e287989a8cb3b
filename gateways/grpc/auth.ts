/**
 * The gRPC gateway's security table: what each method needs, given its decoded request. The
 * bridge (bridge.ts) applies it in one place for every call: it authenticates the metadata
 * `authorization: Bearer <token>` before the handler runs, then checks each request message
 * (for ProduceStream, each batch) against the ACL. Resources: topic:<name>, group:<id>, cluster.
 *
 *   Produce, ProduceStream (each batch)          produce topic
 *   InitProducerId                               any authenticated principal
 *   Fetch, Subscribe                             consume topic (Subscribe from a group: also group)
 *   CreateTopic / DescribeTopic / DeleteTopic    create / describe / delete topic
 *   ListTopics, DescribeCluster, DescribeMirror, ListGroups   describe cluster
 *   JoinGroup                                    group group, consume each topic
 *   Heartbeat, LeaveGroup, FetchOffsets          group group
 *   CommitOffsets, ResetOffsets                  group group, consume each topic committed or reset
 *   DescribeGroup / DeleteGroup                  describe / delete group
 *   MirrorService Open                           mirror each target topic named
 *   MirrorService Send (each send)               mirror the source topic's target (none bound yet: mirror cluster)
 *   MirrorService Positions                      mirror each target reported
 *   MirrorService CommitGroupOffsets             mirror each offset's target (none bound yet: mirror cluster)
 *
 * Mirror requests name a source (edge cluster, topic), not the target: the rule asks the broker
 * which target the source is bound to (`MirrorTargets`).
 *
 * Under mutual TLS a call without an `authorization` entry runs as its client certificate's
 * subject CN (the guard decides, guard.ts); a bearer token, when sent, wins.
 *
 * A method missing from the table is refused for everyone (PERMISSION_DENIED names it), so a new
 * RPC cannot ship open by accident.
 */
import { TributaryError } from "../../src/errors.ts";
import { CLUSTER, group, topic, type Check, type SecurityGuard } from "../../src/security/guard.ts";
import { connectionOfPeer } from "../../src/security/connections.ts";
import { certificatePrincipal } from "../../src/security/tls.ts";
import type { CallQuota } from "./quota.ts";

type Fields = Record<string, unknown>;

/** Which target a mirrored source topic is bound to at this broker (Broker.mirrorTargetOf / mirrorTargetsOf). */
export interface MirrorTargets {
  targetOf(cluster: string, sourceTopic: string): string | null;
  targetsOf(cluster: string): string[];
}

const NO_TARGETS: MirrorTargets = { targetOf: () => null, targetsOf: () => [] };

type Rule = (req: Fields, mirror?: MirrorTargets) => Check[];

const str = (v: unknown): string => (typeof v === "string" ? v : "");
const list = (v: unknown): Fields[] => (Array.isArray(v) ? (v as Fields[]) : []);

const produce: Rule = (r) => [{ operation: "produce", resource: topic(str(r.topic)) }];
const consume: Rule = (r) => [{ operation: "consume", resource: topic(str(r.topic)) }];
const inGroup = (r: Fields): Check => ({ operation: "group", resource: group(str(r.groupId)) });
const clusterDescribe: Rule = () => [{ operation: "describe", resource: CLUSTER }];
const mirrorOn = (target: string | null): Check => ({ operation: "mirror", resource: target === null ? CLUSTER : topic(target) });
const MIRROR = "/tributary.mirror.v1.MirrorService";

export const GRPC_RULES: Readonly<Record<string, Rule>> = {
  "/tributary.v1.ProducerService/Produce": produce,
  "/tributary.v1.ProducerService/ProduceStream": produce,
  "/tributary.v1.ProducerService/InitProducerId": () => [],
  "/tributary.v1.ConsumerService/Fetch": consume,
  "/tributary.v1.ConsumerService/Subscribe": (r) => {
    const start = r.start as { case?: string; value?: unknown } | undefined;
    return start?.case === "groupId" ? [...consume(r), { operation: "group", resource: group(str(start.value)) }] : consume(r);
  },
  "/tributary.v1.AdminService/CreateTopic": (r) => [{ operation: "create", resource: topic(str(r.name)) }],
  "/tributary.v1.AdminService/ListTopics": clusterDescribe,
  "/tributary.v1.AdminService/DescribeTopic": (r) => [{ operation: "describe", resource: topic(str(r.name)) }],
  "/tributary.v1.AdminService/DeleteTopic": (r) => [{ operation: "delete", resource: topic(str(r.name)) }],
  "/tributary.v1.AdminService/DescribeCluster": clusterDescribe,
  "/tributary.v1.AdminService/DescribeMirror": clusterDescribe,
  "/tributary.v1.GroupsService/JoinGroup": (r) => [
    inGroup(r),
    ...(Array.isArray(r.topics) ? r.topics : []).map((t): Check => ({ operation: "consume", resource: topic(str(t)) })),
  ],
  "/tributary.v1.GroupsService/Heartbeat": (r) => [inGroup(r)],
  "/tributary.v1.GroupsService/LeaveGroup": (r) => [inGroup(r)],
  "/tributary.v1.GroupsService/CommitOffsets": (r) => [inGroup(r), ...list(r.offsets).map((o): Check => ({ operation: "consume", resource: topic(str(o.topic)) }))],
  "/tributary.v1.GroupsService/FetchOffsets": (r) => [inGroup(r)],
  "/tributary.v1.GroupsService/ListGroups": clusterDescribe,
  "/tributary.v1.GroupsService/DescribeGroup": (r) => [{ operation: "describe", resource: group(str(r.groupId)) }],
  "/tributary.v1.GroupsService/ResetOffsets": (r) => [inGroup(r), ...consume(r)],
  "/tributary.v1.GroupsService/DeleteGroup": (r) => [{ operation: "delete", resource: group(str(r.groupId)) }],
  [`${MIRROR}/Open`]: (r) => list(r.topics).map((b) => mirrorOn(str(b.target))),
  [`${MIRROR}/Send`]: (r, m = NO_TARGETS) => [mirrorOn(m.targetOf(str(r.cluster), str(r.sourceTopic)))],
  [`${MIRROR}/Positions`]: (r, m = NO_TARGETS) => {
    const named = Array.isArray(r.sourceTopics) && r.sourceTopics.length > 0 ? r.sourceTopics.map((t) => m.targetOf(str(r.cluster), str(t))) : m.targetsOf(str(r.cluster));
    return named.filter((t): t is string => t !== null).map(mirrorOn);
  },
  [`${MIRROR}/CommitGroupOffsets`]: (r, m = NO_TARGETS) => list(r.offsets).map((o) => mirrorOn(m.targetOf(str(r.cluster), str(o.sourceTopic)))),
};

/** What the bridge calls: authenticate a call, then admit each of its request messages. */
export interface CallGuard {
  /**
   * `certificateSubject`: the verified client certificate's subject under mutual TLS, else
   * undefined. `peer`: grpc-js's `call.getPeer()` ("address:port"), the connection the call came
   * on, counted for the principal against its maxConnections (UNAVAILABLE / OVERLOADED past it).
   */
  authenticate(method: string, authorization: string | undefined, certificateSubject?: object, peer?: string): Promise<Admit>;
}

/** Admits each request message; `quota` is who the bridge charges (quota.ts). */
export type Admit = ((request: object) => void) & { quota?: CallQuota };

/** `localPort`: the listener's port (known once bound), which with the peer names a connection. */
export function callGuard(guard: SecurityGuard, mirror: MirrorTargets = NO_TARGETS, localPort: () => number = () => 0): CallGuard {
  return {
    async authenticate(method, authorization, certificateSubject, peer) {
      const principal = await guard.authenticate("grpc", authorization, certificatePrincipal(certificateSubject as Record<string, unknown> | undefined));
      await guard.quotas.admitConnection("grpc", peer === undefined ? undefined : (connectionOfPeer(localPort(), peer) ?? undefined), principal);
      const rule = GRPC_RULES[method];
      const admit = (request: object): void => {
        if (!rule) {
          guard.countDenied("grpc");
          throw new TributaryError("PERMISSION_DENIED", `${method} has no ACL mapping; it is refused for every principal`);
        }
        guard.authorize("grpc", principal, rule(request as Fields, mirror));
      };
      return Object.assign(admit, { quota: { principal, quotas: guard.quotas } });
    },
  };
}
