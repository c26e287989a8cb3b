/** Elections, pre-vote and check-quorum as scripts (test/support/raft-sim.ts lists the commands). */
import { describe, it } from "vitest";
import { runScript } from "./support/raft-sim.ts";

const cases: Record<string, string> = {
  "a campaign in a healthy cluster wins term 1 (pre-vote does not move terms)": `
    nodes 3
    campaign 1
    stabilize
    expect role 1 leader
    expect term 1 1
    expect lead 2 1
    expect lead 3 1
    expect commit 3 1        # the new leader's no-op
  `,
  "an election timeout starts a campaign": `
    nodes 3
    tick 2 20
    stabilize
    expect role 2 leader
  `,
  "without pre-vote a candidate bumps the term at once": `
    nodes 3 no-prevote
    isolate 1
    campaign 1
    expect role 1 candidate
    expect term 1 1
    expect vote 1 1
  `,
  "with pre-vote an isolated node stays at its term and does not disrupt on rejoin": `
    nodes 3
    campaign 1
    stabilize
    isolate 3
    tick 3 100
    expect role 3 precandidate
    expect term 3 1
    heal
    stabilize
    expect role 1 leader
    expect term 1 1
  `,
  "without pre-vote an isolated node's rejoin forces a new election": `
    nodes 3 no-prevote no-checkquorum
    campaign 1
    stabilize
    isolate 3
    campaign 3
    campaign 3
    expect term 3 3
    heal
    tick 1 1                # the heartbeat to 3 is answered with term 3: the leader steps down
    stabilize
    expect term 1 3
    expect role 1 follower
  `,
  "a vote needs a log at least as up to date": `
    nodes 3 no-prevote
    log 1 1,1 term=1
    log 2 1,1,1 term=1
    log 3 1,1,1 term=1
    campaign 1
    stabilize
    expect role 1 follower
    campaign 2
    stabilize
    expect role 2 leader
    expect terms 1 1,1,1,3
  `,
  "a later last term beats a longer log": `
    nodes 3 no-prevote
    log 1 1,1,1,1 term=2
    log 2 1,2 term=2
    log 3 1,2 term=2
    campaign 1
    stabilize
    expect role 1 follower
    campaign 2
    stabilize
    expect role 2 leader
    expect terms 1 1,2,4        # 1's uncommitted suffix was cut
  `,
  "a node votes once per term": `
    nodes 3 no-prevote no-checkquorum
    isolate 1
    isolate 2
    campaign 1
    campaign 2
    heal
    cut 1>2
    cut 2>1
    stabilize
    expect term 3 1
    expect role 3 follower
  `,
  "check-quorum: a leader cut off from the majority steps down": `
    nodes 3
    campaign 1
    stabilize
    isolate 1
    tick 1 10
    expect role 1 leader
    tick 1 10
    expect role 1 follower
  `,
  "without check-quorum a cut-off leader stays leader": `
    nodes 3 no-checkquorum
    campaign 1
    stabilize
    isolate 1
    tick 1 50
    expect role 1 leader
  `,
  "check-quorum lease: followers ignore a vote while they hear a leader": `
    nodes 3 no-prevote
    campaign 1
    stabilize
    campaign 3
    stabilize               # 3's vote requests for term 2 reach followers that heard 1 lately: ignored
    expect role 1 leader
    expect term 2 1
    expect lead 2 1
    expect role 3 candidate
  `,
  "a partitioned leader's stale term is answered so it steps down": `
    nodes 5 no-checkquorum
    campaign 1
    stabilize
    isolate 1
    tick 2 30
    stabilize
    expect role 2 leader
    expect term 2 2
    heal
    tick 1 1                # 1's heartbeats are answered with term 2
    stabilize
    expect role 1 follower
    tick 2 1
    stabilize
    expect lead 1 2
  `,
  "one-way cut: a leader that cannot hear answers steps down, and the others elect": `
    nodes 3
    campaign 1
    stabilize
    cut 2>1
    cut 3>1
    tick all 1
    tick 1 21
    stabilize
    expect role 1 follower
    tick 2 30               # 2 asks first: 3 still heard 1 lately (lease), and 2>1 is cut
    stabilize
    expect role 2 precandidate
    tick 3 30               # 3 asks next: 2 grants
    stabilize
    expect role 3 leader
    expect lead 2 3
  `,
  "a five-node cluster elects with two nodes down": `
    nodes 5
    crash 4
    crash 5
    campaign 3
    stabilize
    expect role 3 leader
    propose 3 x => ok
    stabilize
    expect values 1 x
  `,
  "a single-node group elects itself and commits alone": `
    nodes 1
    campaign 1
    expect role 1 leader
    propose 1 solo => ok
    stabilize
    expect values 1 solo
    expect commit 1 2
  `,
  "no election without a majority": `
    nodes 5
    crash 3
    crash 4
    crash 5
    campaign 1
    stabilize
    expect role 1 precandidate
    expect term 1 0
  `,
};

describe("raft elections", () => {
  for (const [name, script] of Object.entries(cases)) it(name, () => void runScript(script));
});
