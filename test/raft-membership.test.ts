/** Leadership transfer and single-server membership changes as scripts. */
import { describe, it } from "vitest";
import { runScript } from "./support/raft-sim.ts";

const transfer: Record<string, string> = {
  "transfer to an up-to-date follower: TimeoutNow, and voters grant inside their lease": `
    nodes 3
    campaign 1
    stabilize
    transfer 1 2
    stabilize
    expect role 2 leader
    expect term 2 2
    expect lead 1 2
    expect lead 3 2
  `,
  "transfer to a lagging follower first catches it up; proposals are refused meanwhile": `
    nodes 3
    campaign 1
    stabilize
    cut 1>3
    propose 1 a
    stabilize
    heal
    transfer 1 3
    propose 1 b => transferring
    stabilize
    expect role 3 leader
    expect values 3 a
    propose 3 b => ok
    stabilize
    expect values 1 a,b
  `,
  "a transfer to a dead node is abandoned after an election timeout": `
    nodes 3
    campaign 1
    stabilize
    crash 3
    transfer 1 3
    propose 1 x => transferring
    tick 1 10
    propose 1 x => ok
    expect role 1 leader
  `,
  "transfer to self or to a non-member does nothing": `
    nodes 3
    campaign 1
    stabilize
    transfer 1 1
    transfer 1 9
    propose 1 x => ok
  `,
};

const membership: Record<string, string> = {
  "add a voter: it catches up from the log and votes in the new configuration": `
    nodes 3
    campaign 1
    stabilize
    propose 1 a
    add 1 4 => ok
    stabilize
    expect voters 1 1,2,3,4
    expect voters 4 1,2,3,4
    expect values 4 a,conf:add-voter:4
    propose 1 b
    stabilize
    expect values 4 a,conf:add-voter:4,b
  `,
  "one change at a time: a second is refused until the first is applied": `
    nodes 3
    campaign 1
    stabilize
    add 1 4 => ok
    add 1 5 => conf-change-pending
    stabilize
    add 1 5 => ok
    stabilize
    expect voters 3 1,2,3,4,5
  `,
  "after adding to four, two nodes down block commits (majority is 3)": `
    nodes 3
    campaign 1
    stabilize
    add 1 4 => ok
    stabilize
    crash 3
    crash 4
    propose 1 x
    stabilize
    expect commit 1 2
    restart 3
    tick 1 1
    stabilize
    expect commit 1 3
  `,
  "a new voter behind a compacted log gets a snapshot carrying the configuration": `
    nodes 3
    campaign 1
    stabilize
    propose 1 a
    propose 1 b
    stabilize
    add 1 4 => ok
    isolate 4
    stabilize
    compact 1 0
    heal
    tick 1 1
    stabilize
    expect voters 4 1,2,3,4
    expect values 4 a,b,conf:add-voter:4
  `,
  "remove a follower: the rest commit without it": `
    nodes 3
    campaign 1
    stabilize
    remove 1 3 => ok
    stabilize
    expect voters 1 1,2
    crash 3
    propose 1 x
    stabilize
    expect values 2 conf:remove-voter:3,x
  `,
  "a removed node never campaigns": `
    nodes 3
    campaign 1
    stabilize
    remove 1 3 => ok
    stabilize
    isolate 3
    tick 3 100
    expect role 3 follower
    expect term 3 1
  `,
  "the leader removes itself, steps down, and the others elect": `
    nodes 3
    campaign 1
    stabilize
    remove 1 1 => ok
    stabilize
    expect role 1 follower
    expect voters 2 2,3
    tick 2 30
    stabilize
    tick 3 30
    stabilize
    expect role 3 leader
    propose 3 y => ok
    stabilize
    expect values 2 conf:remove-voter:1,y
  `,
  "invalid changes are refused": `
    nodes 3
    campaign 1
    stabilize
    add 1 2 => invalid
    remove 1 7 => invalid
    add 2 5 => not-leader
  `,
};

describe("raft leadership transfer", () => {
  for (const [name, script] of Object.entries(transfer)) it(name, () => void runScript(script));
});
describe("raft membership changes", () => {
  for (const [name, script] of Object.entries(membership)) it(name, () => void runScript(script));
});
