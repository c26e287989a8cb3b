/** Log replication as scripts: conflict resolution, commit rules, flow control, snapshot install. */
import { describe, expect, it } from "vitest";
import { EntryType, MemoryStorage, RaftLog } from "../src/raft/index.ts";
import { runScript } from "./support/raft-sim.ts";

const cases: Record<string, string> = {
  "Raft figure 7: a new leader brings every kind of divergent follower in line": `
    nodes 5 no-prevote
    log 1 1,1,1,4,4,5,5,6,6,6 term=7     # the leader-to-be
    log 2 1,1,1,4,4,4,4 term=7           # (e) an uncommitted term-4 suffix
    log 3 1,1,1,2,2,2,3,3,3,3,3 term=7   # (f) uncommitted terms 2 and 3
    log 4 1,1,1,4 term=7                 # (b) far behind
    log 5 1,1,1,4,4,5,5,6,6,6,7,7 term=7 # (d) an extra term-7 suffix: it refuses to vote for 1
    campaign 1
    stabilize
    expect role 1 leader
    expect term 1 8
    expect terms 2 1,1,1,4,4,5,5,6,6,6,8
    expect terms 3 1,1,1,4,4,5,5,6,6,6,8
    expect terms 4 1,1,1,4,4,5,5,6,6,6,8
    expect terms 5 1,1,1,4,4,5,5,6,6,6,8
    expect commit 5 11
  `,
  "a rejection hint skips a whole conflicting term per round trip": `
    nodes 3 no-prevote
    log 1 1,3,3,3,3,3,3,3,3,3 term=3
    log 2 1,3,3,3,3,3,3,3,3,3 term=3
    log 3 1,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2 term=3
    campaign 1
    stabilize
    expect terms 3 1,3,3,3,3,3,3,3,3,3,4
    expect apps 1>3 3           # probe at 10, the hint lands on 1, then everything after it
  `,
  "a new leader commits earlier terms' entries only through its own no-op": `
    nodes 3 no-prevote
    log 1 1,2 term=2
    log 2 1,2 term=2
    log 3 1 term=2
    campaign 1
    stabilize
    expect commit 1 3
    expect terms 3 1,2,3
  `,
  "a follower that was down catches up from the log": `
    nodes 3
    campaign 1
    stabilize
    crash 3
    propose 1 a
    propose 1 b
    stabilize
    expect commit 1 3
    restart 3
    tick 1 1
    stabilize
    expect values 3 a,b
    expect progress 1 3 replicate
  `,
  "an uncommitted entry on a deposed leader is cut and replaced": `
    nodes 3
    campaign 1
    stabilize
    isolate 1
    propose 1 lost
    tick 3 10                # 3 leaves its lease
    tick 2 30
    stabilize
    expect role 2 leader
    propose 2 kept
    stabilize
    heal
    tick 2 1
    stabilize
    expect values 1 kept
    expect terms 1 1,2,2
  `,
  "the inflight window bounds unacknowledged appends; the rest go as one batch": `
    nodes 3 inflight=2 size=1000
    campaign 1
    stabilize
    reset-counts
    cut 2>1
    propose 1 a
    propose 1 b
    propose 1 c
    propose 1 d
    propose 1 e
    stabilize
    expect apps 1>2 2
    expect inflight 1 2 2
    expect apps 1>3 5
    heal
    tick 1 1                 # the heartbeat answer frees a slot
    stabilize
    expect apps 1>2 4        # c,d,e in one batch, then the new commit index
    expect values 2 a,b,c,d,e
  `,
  "maxSizePerMsg splits a catch-up into several messages": `
    nodes 3 size=60
    campaign 1
    stabilize
    crash 3
    propose 1 a
    propose 1 b
    propose 1 c
    propose 1 d
    stabilize
    restart 3
    reset-counts
    tick 1 1
    stabilize
    expect apps 1>3 3        # a probe, then two 2-entry messages (an entry counts 24 bytes + data)
    expect values 3 a,b,c,d
  `,
  "proposals past maxUncommittedBytes are refused": `
    nodes 3 uncommitted=60
    campaign 1
    stabilize
    isolate 1
    propose 1 a => ok
    propose 1 b => ok
    propose 1 c => overloaded
    heal
    tick 1 1
    stabilize
    propose 1 c => ok
  `,
  "a follower whose entries were compacted away gets the snapshot": `
    nodes 3
    campaign 1
    stabilize
    crash 3
    propose 1 a
    propose 1 b
    propose 1 c
    stabilize
    compact 1 0
    expect first 1 5
    restart 3
    tick 1 1
    stabilize
    expect values 3 a,b,c
    expect first 3 5
    expect progress 1 3 replicate
    propose 1 d
    stabilize
    expect values 3 a,b,c,d
  `,
  "a snapshot restores a node that lost its state in a crash": `
    nodes 3 snapshot-every=3
    campaign 1
    stabilize
    propose 1 a
    propose 1 b
    propose 1 c
    propose 1 d
    stabilize
    crash 2
    restart 2
    expect values 2 a,b,c,d  # from its own snapshot, before any message
    propose 1 e
    stabilize
    expect values 2 a,b,c,d,e
  `,
  "proposals to followers are refused with the leader's id": `
    nodes 3
    campaign 1
    stabilize
    propose 2 x => not-leader
    propose 1 x => ok
  `,
};

describe("raft log replication", () => {
  for (const [name, script] of Object.entries(cases)) it(name, () => void runScript(script));
});

describe("raft commit rule (Raft §5.4.2): a leader commits by counting only its own term", () => {
  // log terms, then (index, term of the leader) => committed after maybeCommit.
  const table: [number[], number, number, number][] = [
    [[1, 1, 2], 3, 2, 3],
    [[1, 1, 2], 2, 2, 0], // entry 2 is of term 1: not committed by a term-2 leader counting replicas
    [[1, 1, 2], 3, 3, 0],
    [[1, 2, 2, 3], 3, 2, 3],
    [[1], 1, 1, 1],
  ];
  for (const [terms, index, term, want] of table) {
    it(`terms ${terms} maybeCommit(${index}, term ${term}) -> ${want}`, () => {
      const storage = new MemoryStorage();
      storage.append(terms.map((t, i) => ({ term: t, index: i + 1, type: EntryType.Normal, data: new Uint8Array(0) })));
      const log = new RaftLog(storage, 1 << 20);
      log.maybeCommit(index, term);
      expect(log.committed).toBe(want);
    });
  }
});
