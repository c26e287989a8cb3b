/**
 * Partition assignors: pure functions from (members with subscriptions and what they held,
 * partition counts per topic) to a target assignment. Deterministic: the same input gives the
 * same output whatever the order of members or topics in it.
 *
 * - range (Kafka's RangeAssignor): per topic, the subscribed members sorted by id each take a
 *   contiguous range; the first (partitions % members) take one more.
 * - roundrobin (Kafka's RoundRobinAssignor): all topic-partitions sorted, dealt to the members
 *   sorted by id in turn, skipping those not subscribed to the partition's topic.
 * - cooperative-sticky: a member keeps what it held while it still subscribes to it; the
 *   partitions nobody keeps go, one by one in sorted order, to the subscribed member with the
 *   fewest; then, while some member has two more than a member that could take one of its
 *   partitions, its last partition moves there. So counts differ by at most one when
 *   subscriptions are equal, and only the partitions that must move for that do.
 *
 * Moving is done in two steps by the coordinator (planReconciliation below): a partition leaves
 * its old holder before its new one gets it.
 *
 * @example
 *   assign("range", [{ memberId: "a", topics: ["t"], owned: [] }, { memberId: "b", topics: ["t"], owned: [] }], { t: 3 })
 *   // Map { "a" => [t-0, t-1], "b" => [t-2] }
 */
import type { AssignorName, TopicPartition } from "./types.ts";

export interface AssignorMember {
  memberId: string;
  topics: readonly string[];
  /** What the member held before (only cooperative-sticky looks at it). */
  owned: readonly TopicPartition[];
}

/** Partition counts of the topics that exist; subscribed topics absent here get nothing. */
export type PartitionCounts = Readonly<Record<string, number>>;

export type Assignment = Map<string, TopicPartition[]>;

export function assign(name: AssignorName, members: readonly AssignorMember[], counts: PartitionCounts): Assignment {
  const sorted = [...members].sort((a, b) => cmp(a.memberId, b.memberId));
  const out: Assignment = new Map(sorted.map((m) => [m.memberId, []]));
  if (name === "range") rangeAssign(sorted, counts, out);
  else if (name === "roundrobin") roundRobinAssign(sorted, counts, out);
  else stickyAssign(sorted, counts, out);
  for (const list of out.values()) list.sort(compareTopicPartitions);
  return out;
}

function rangeAssign(members: readonly AssignorMember[], counts: PartitionCounts, out: Assignment): void {
  for (const topic of Object.keys(counts).sort(cmp)) {
    const subs = members.filter((m) => m.topics.includes(topic));
    const n = counts[topic]!;
    if (subs.length === 0) continue;
    const base = Math.floor(n / subs.length);
    const extra = n % subs.length;
    let next = 0;
    subs.forEach((m, i) => {
      const take = base + (i < extra ? 1 : 0);
      for (let k = 0; k < take; k++) out.get(m.memberId)!.push({ topic, partition: next++ });
    });
  }
}

function roundRobinAssign(members: readonly AssignorMember[], counts: PartitionCounts, out: Assignment): void {
  if (members.length === 0) return;
  let turn = 0;
  for (const tp of allPartitions(counts)) {
    for (let tried = 0; tried < members.length; tried++) {
      const m = members[(turn + tried) % members.length]!;
      if (m.topics.includes(tp.topic)) {
        out.get(m.memberId)!.push(tp);
        turn = (turn + tried + 1) % members.length;
        break;
      }
    }
  }
}

function stickyAssign(members: readonly AssignorMember[], counts: PartitionCounts, out: Assignment): void {
  const taken = new Set<string>();
  const subscribed = (m: AssignorMember, tp: TopicPartition) => m.topics.includes(tp.topic);
  const exists = (tp: TopicPartition) => counts[tp.topic] !== undefined && tp.partition >= 0 && tp.partition < counts[tp.topic]!;
  // Keep: members in id order, so a partition two members claim stays with the first.
  for (const m of members) {
    for (const tp of [...m.owned].sort(compareTopicPartitions)) {
      const k = tpKey(tp);
      if (!taken.has(k) && exists(tp) && subscribed(m, tp)) {
        taken.add(k);
        out.get(m.memberId)!.push({ topic: tp.topic, partition: tp.partition });
      }
    }
  }
  const fewest = (tp: TopicPartition): AssignorMember | undefined => {
    let best: AssignorMember | undefined;
    for (const m of members) {
      if (subscribed(m, tp) && (!best || out.get(m.memberId)!.length < out.get(best.memberId)!.length)) best = m;
    }
    return best;
  };
  for (const tp of allPartitions(counts)) {
    if (taken.has(tpKey(tp))) continue;
    const m = fewest(tp);
    if (m) out.get(m.memberId)!.push(tp);
  }
  // Balance: move from the most loaded to a member with at least two fewer that can take it.
  // Each move lowers the sum of squared counts, so this ends.
  for (;;) {
    let moved = false;
    const byLoad = [...members].sort((a, b) => out.get(b.memberId)!.length - out.get(a.memberId)!.length || cmp(a.memberId, b.memberId));
    for (const from of byLoad) {
      const list = out.get(from.memberId)!.sort(compareTopicPartitions);
      for (let i = list.length - 1; i >= 0 && !moved; i--) {
        const tp = list[i]!;
        const to = fewest(tp);
        if (to && out.get(to.memberId)!.length + 1 < list.length) {
          list.splice(i, 1);
          out.get(to.memberId)!.push(tp);
          moved = true;
        }
      }
      if (moved) break;
    }
    if (!moved) return;
  }
}

/** What each member may hold now, given who holds what: a partition moves only once released. */
export interface Reconciliation {
  /** Partitions of the member's target that no other member holds: consume them. */
  assigned: TopicPartition[];
  /** Partitions of the member's target still held by another member: wait. */
  pending: TopicPartition[];
  /** Partitions the member holds outside its target: give them up. */
  revoke: TopicPartition[];
}

/**
 * Revoke before reassign, as a pure function of the target and what each member holds now.
 * @example planReconciliation(target, new Map([["a", [t0]], ["b", []]])) // b: pending [t0] while a holds it
 */
export function planReconciliation(target: Assignment, held: ReadonlyMap<string, readonly TopicPartition[]>): Map<string, Reconciliation> {
  const holder = new Map<string, string>();
  for (const [memberId, list] of held) for (const tp of list) holder.set(tpKey(tp), memberId);
  const out = new Map<string, Reconciliation>();
  for (const [memberId, list] of target) {
    const mine = new Set(list.map(tpKey));
    const assigned: TopicPartition[] = [];
    const pending: TopicPartition[] = [];
    for (const tp of list) {
      const h = holder.get(tpKey(tp));
      if (h === undefined || h === memberId) assigned.push(tp);
      else pending.push(tp);
    }
    const revoke = (held.get(memberId) ?? []).filter((tp) => !mine.has(tpKey(tp)));
    out.set(memberId, { assigned, pending, revoke });
  }
  return out;
}

export function allPartitions(counts: PartitionCounts): TopicPartition[] {
  const out: TopicPartition[] = [];
  for (const topic of Object.keys(counts).sort(cmp)) {
    for (let p = 0; p < counts[topic]!; p++) out.push({ topic, partition: p });
  }
  return out;
}

export function tpKey(tp: TopicPartition): string {
  return `${tp.topic}\u0000${tp.partition}`;
}

export function compareTopicPartitions(a: TopicPartition, b: TopicPartition): number {
  return cmp(a.topic, b.topic) || a.partition - b.partition;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
