/**
 * # The Raft core
 *
 * A pure Raft state machine in the shape of etcd-io/raft: no timers, no I/O, no randomness of
 * its own (the election-timeout jitter comes from `config.random`). Time is ticks. A driver (in
 * `src/cluster/`, later) owns the clock, the disk and the network and feeds this value.
 *
 * ## The parts
 *
 * | file | concern |
 * |---|---|
 * | `messages.ts` | entries, messages, hard/soft state, snapshots, `Ready` |
 * | `storage.ts` | `Storage`, the read-only view of what the driver persisted; `MemoryStorage`, its in-memory twin |
 * | `log.ts` | `RaftLog`: storage + unstable entries/snapshot; append with conflict truncation, commit, apply cursor |
 * | `progress.ts` | the leader's view of each follower: probe / replicate (pipelined, `Inflights` window) / snapshot |
 * | `quorum.ts` | majority arithmetic: commit index, vote tallies |
 * | `conf-change.ts` | single-server membership changes and their entry encoding |
 * | `raft.ts` | `RaftNode`: elections (pre-vote, check-quorum lease), replication, snapshots, transfer, membership |
 *
 * ## How they work together
 *
 * `tick()` advances logical time: a follower campaigns after a randomized election timeout (with
 * pre-vote it first asks whether it could win, moving no one's term); a leader sends heartbeats
 * and, with check-quorum, steps down if a majority was silent for an election timeout. Followers
 * that heard from a leader within the timeout ignore vote requests (the lease), unless the request
 * comes from a leadership transfer (`TimeoutNow`).
 *
 * `propose(data)` appends an entry at the leader and returns its (index, term), or a refusal
 * (`not-leader` with the known leader, `transferring`, `overloaded`, `conf-change-pending`). The
 * leader replicates through each follower's `Progress`: probing one message at a time until the
 * follower's position is found (a rejection carries a hint so a whole conflicting term is skipped
 * per round trip), then pipelining up to `maxInflightMsgs` messages of at most `maxSizePerMsg`
 * bytes each. A follower whose next entries were compacted gets the snapshot instead. An entry is
 * committed once a majority holds it and it belongs to the leader's current term (Raft §5.4.2); a
 * new leader appends an empty entry to get there.
 *
 * Membership changes add or remove one voter at a time; each node switches configuration when it
 * applies the change (in `advance`), and a leader allows one unapplied change at a time.
 *
 * ## The driver contract
 *
 * ```
 * loop:
 *   on timer:     node.tick()
 *   on message:   node.step(m)
 *   on request:   node.propose(data)
 *   while node.hasReady():
 *     rd = node.ready()
 *     1. persist rd.snapshot, then rd.entries (truncating any stored suffix from rd.entries[0].index),
 *        then rd.hardState; fsync
 *     2. send rd.messages (a Snap message carries the snapshot's data); those for which
 *        node.sendableBeforePersist(m) holds (a leader's appends, heartbeats and snapshots) may
 *        go before or during step 1 instead (Raft thesis §10.2.1)
 *     3. apply rd.snapshot, then rd.committedEntries, to the state machine
 *     4. node.advance(rd)
 * ```
 *
 * Persisting before sending is what makes a vote or an acknowledgement binding: a node never
 * tells a peer about state it could lose in a crash. A leader's appends are the exception: a
 * leader counts its own copy of an entry toward the commit only once `advance` says it is
 * persisted, so a copy a crash loses never makes up a quorum. `advance` may apply conf changes, so the
 * driver's snapshot of the configuration (`node.confState()`) is current after it. To compact,
 * the driver snapshots its state at `applied` with `confState()` and drops older entries from
 * its store; `Storage.snapshot()` is then what lagging followers receive.
 *
 * @example
 *   const node = new RaftNode({ id: 1, peers: [1, 2, 3], electionTicks: 10, heartbeatTicks: 1,
 *     preVote: true, checkQuorum: true, maxInflightMsgs: 64, maxSizePerMsg: 1 << 20, random }, storage);
 */
export { RaftNode, type RaftConfig, type ProposeResult } from "./raft.ts";
export { RaftLog } from "./log.ts";
export { MemoryStorage, EMPTY_SNAPSHOT, type Storage } from "./storage.ts";
export { Progress, Inflights, type ProgressState } from "./progress.ts";
export { committedIndex, voteResult, type VoteResult } from "./quorum.ts";
export { encodeConfChange, decodeConfChange, type ConfChange, type ConfChangeEntry, type ConfChangeType } from "./conf-change.ts";
export * from "./messages.ts";
