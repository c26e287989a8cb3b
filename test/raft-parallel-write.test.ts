/**
 * The leader writes its log in parallel with replicating it (Raft thesis §10.2.1): its appends
 * and heartbeats may leave before its own persist (`sendableBeforePersist`), votes and responses
 * may not, and its own copy of an entry counts toward the commit only after `advance` says it is
 * persisted, so a follower's acknowledgement alone never commits in a 3-node group. The driver
 * under the whole-cluster simulations (src/cluster/group.ts) and the Raft simulation's
 * (test/support/raft-sim.ts) send early; their safety checkers run over that.
 */
import { describe, expect, it } from "vitest";
import { MemoryStorage, MessageType, RaftNode, type Message, type Ready } from "../src/raft/index.ts";

const enc = new TextEncoder();

function persist(storage: MemoryStorage, rd: Ready): void {
  storage.append(rd.entries);
  if (rd.hardState) storage.setHardState(rd.hardState);
}

function reply(type: MessageType, from: number, term: number, over: Partial<Message> = {}): Message {
  return { type, from, to: 1, term, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, ...over };
}

/** Node 1 of [1, 2, 3] elected leader, its no-op persisted and acknowledged by nodes 2 and 3. */
function leader(): { node: RaftNode; storage: MemoryStorage } {
  const storage = new MemoryStorage();
  const node = new RaftNode({ id: 1, peers: [1, 2, 3], electionTicks: 10, heartbeatTicks: 1, preVote: true, checkQuorum: true, maxInflightMsgs: 16, maxSizePerMsg: 1 << 20, random: () => 0.5 }, storage);
  const drain = () => {
    while (node.hasReady()) {
      const rd = node.ready();
      persist(storage, rd);
      node.advance(rd);
    }
  };
  node.campaign();
  drain();
  node.step(reply(MessageType.PreVoteResp, 2, node.term + 1));
  drain();
  node.step(reply(MessageType.VoteResp, 2, node.term));
  drain();
  expect(node.role).toBe("leader");
  for (const peer of [2, 3]) node.step(reply(MessageType.AppResp, peer, node.term, { index: storage.lastIndex() }));
  drain();
  return { node, storage };
}

describe("leader writes in parallel with replicating", () => {
  it("sends its appends before its persist, and counts its own entry only once persisted", () => {
    const { node, storage } = leader();
    const committedBefore = node.hardState().commit;
    const r = node.propose(enc.encode("x"));
    expect(r.ok).toBe(true);
    const index = r.ok ? r.index : 0;
    const rd = node.ready();
    const apps = rd.messages.filter((m) => m.type === MessageType.App && m.entries.some((e) => e.index === index));
    expect(apps.length).toBe(2);
    expect(apps.every((m) => node.sendableBeforePersist(m))).toBe(true);
    // Node 2 acknowledges while the leader's own write is still running: 1 durable copy of 3.
    node.step(reply(MessageType.AppResp, 2, node.term, { index }));
    expect(node.hardState().commit).toBe(committedBefore);
    persist(storage, rd);
    node.advance(rd);
    // Now the leader's copy is durable too: two of three.
    expect(node.hardState().commit).toBe(index);
  });

  it("holds back votes and acknowledgements until the persist", () => {
    const { node } = leader();
    // A vote request of a higher term: the leader steps down, and its answer binds the new term.
    node.step({ ...reply(MessageType.Vote, 3, node.term + 1, { index: 100, logTerm: node.term + 1 }), transfer: true });
    const rd = node.ready();
    const vote = rd.messages.find((m) => m.type === MessageType.VoteResp);
    expect(vote).toBeDefined();
    expect(node.sendableBeforePersist(vote!)).toBe(false);
  });
});
