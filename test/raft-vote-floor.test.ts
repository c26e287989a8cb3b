/** RaftConfig.voteFloor: a node that lost its log (a replica moved away and back) votes as its old log would have. */
import { describe, expect, it } from "vitest";
import { MemoryStorage, MessageType, RaftNode, type Message, type RaftConfig } from "../src/raft/index.ts";

function node(voteFloor?: RaftConfig["voteFloor"]): RaftNode {
  const config: RaftConfig = { id: 2, peers: [1, 2, 3], electionTicks: 10, heartbeatTicks: 1, preVote: true, checkQuorum: true, maxInflightMsgs: 16, maxSizePerMsg: 1 << 20, random: () => 0.5, ...(voteFloor ? { voteFloor } : {}) };
  return new RaftNode(config, new MemoryStorage());
}

function answer(n: RaftNode, type: typeof MessageType.Vote | typeof MessageType.PreVote, logTerm: number, index: number): boolean {
  const m: Message = { type, from: 1, to: 2, term: 5, logTerm, index, entries: [], commit: 0, reject: false, rejectHint: 0 };
  n.step(m);
  const rd = n.ready();
  n.advance(rd);
  const resp = rd.messages.find((x) => x.to === 1);
  expect(resp).toBeDefined();
  return !resp!.reject;
}

describe("vote floor", () => {
  it("an empty node without one grants any candidate's vote", () => {
    expect(answer(node(), MessageType.Vote, 1, 2)).toBe(true);
  });

  it("refuses (pre-)votes to candidates behind the log it lost, grants those at least as up to date", () => {
    const floor = { index: 16, term: 3 };
    expect(answer(node(floor), MessageType.PreVote, 2, 20)).toBe(false);
    expect(answer(node(floor), MessageType.Vote, 3, 15)).toBe(false);
    expect(answer(node(floor), MessageType.Vote, 3, 16)).toBe(true);
    expect(answer(node(floor), MessageType.PreVote, 4, 1)).toBe(true);
  });
});
