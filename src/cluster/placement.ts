/**
 * Replica placement (pure): which peers hold each partition of a new topic, preferred leader
 * first. It is Kafka's rack-unaware assignment (`AdminUtils.assignReplicasToBrokers`):
 *
 * - partition p's leader is peer `(startAt + p) mod n`, so leaders go round the peers; the
 *   controller passes its cursor as `startAt` and moves it on by the partition count, so
 *   successive topics keep leadership even across all peers instead of all leading on the first;
 * - its followers are the peers `leader + 1 + ((shift + j) mod (n - 1))` for j = 0 .. RF-2: offsets
 *   in 1 .. n-1, all different, so no peer holds two replicas of one partition; `shift` grows by
 *   one after every n partitions, so followers of a big topic do not all sit next to their leader.
 *
 * @example
 *   assignReplicas(3, 2, [1, 2, 3], 0); // [[1, 2], [2, 3], [3, 1]]
 */
import { TributaryError, assert } from "../errors.ts";
import type { NodeId } from "./types.ts";

export function assignReplicas(partitions: number, replicationFactor: number, peers: readonly NodeId[], startAt: number): NodeId[][] {
  assert(new Set(peers).size === peers.length, `placement peers ${peers.join(",")} hold a duplicate`);
  assert(Number.isSafeInteger(startAt) && startAt >= 0, `placement cursor ${startAt} is a non-negative integer`);
  if (!Number.isSafeInteger(partitions) || partitions < 1) {
    throw new TributaryError("INVALID_PARTITIONS", `partitions must be a positive integer, got ${String(partitions)}`);
  }
  if (!Number.isSafeInteger(replicationFactor) || replicationFactor < 1) {
    throw new TributaryError("INVALID_PARTITIONS", `replication factor must be a positive integer, got ${String(replicationFactor)}`);
  }
  const n = peers.length;
  if (replicationFactor > n) {
    throw new TributaryError("INVALID_PARTITIONS", `replication factor ${replicationFactor} is larger than the ${n} peers of the cluster`);
  }
  const start = startAt % n;
  const out: NodeId[][] = [];
  for (let p = 0; p < partitions; p++) {
    // Kafka starts the follower shift at the same random index as the leaders; ours is the cursor.
    const shift = start + Math.floor(p / n);
    const first = (start + p) % n;
    const replicas = [peers[first]!];
    for (let j = 0; j < replicationFactor - 1; j++) replicas.push(peers[(first + 1 + ((shift + j) % (n - 1))) % n]!);
    out.push(replicas);
  }
  return out;
}

/**
 * The replicas of a partition once `removed` leaves it: `removed` replaced in place (so the
 * preferred leader's position is kept) by the peer holding the fewest replicas (`load`, lowest id
 * on a tie) among those holding none of this partition; with no such spare, the partition shrinks
 * to the rest. Refuses to leave a partition with no replica.
 * @example replaceReplica([3, 1, 2], 3, [1, 2, 3, 4], new Map()); // [4, 1, 2]
 */
export function replaceReplica(replicas: readonly NodeId[], removed: NodeId, peers: readonly NodeId[], load: ReadonlyMap<NodeId, number>): NodeId[] {
  assert(replicas.includes(removed), `peer ${removed} holds no replica among ${replicas.join(",")}`);
  const spare = peers
    .filter((id) => id !== removed && !replicas.includes(id))
    .sort((a, b) => (load.get(a) ?? 0) - (load.get(b) ?? 0) || a - b)[0];
  if (spare !== undefined) return replicas.map((id) => (id === removed ? spare : id));
  const rest = replicas.filter((id) => id !== removed);
  if (rest.length === 0) throw new TributaryError("INVALID_REQUEST", `peer ${removed} holds the only replica of a partition and no other peer can take it`);
  return rest;
}
