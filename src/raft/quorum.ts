/** Majority arithmetic over a set of voters (single configurations only: no joint consensus). */
import type { NodeId } from "./messages.ts";

export type VoteResult = "won" | "lost" | "pending";

/** The largest index a majority of voters has: sort matches descending and take the majority-th. */
export function committedIndex(voters: readonly NodeId[], match: (id: NodeId) => number): number {
  if (voters.length === 0) return 0;
  const sorted = voters.map(match).sort((a, b) => b - a);
  return sorted[Math.floor(voters.length / 2)]!;
}

export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const majority = Math.floor(voters.length / 2) + 1;
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  if (granted >= majority) return "won";
  if (voters.length - rejected < majority) return "lost";
  return "pending";
}

export function isQuorum(voters: readonly NodeId[], count: number): boolean {
  return count >= Math.floor(voters.length / 2) + 1;
}
