/**
 * # The cluster: Raft replication of partitions and of the cluster metadata
 *
 * A broker started with `cluster.peers` is one peer of a cluster of 3 or 5; without peers it is a
 * cluster of one (as before, no Raft on the produce path). Every partition is its own Raft group
 * (multi-Raft) and one more group, the controller (`META_GROUP`), holds the cluster metadata in the
 * manner of Kafka's KRaft. The pure core is `src/raft/`; this folder is its driver and what it
 * drives.
 *
 * ## The parts
 *
 * | file | concern |
 * |---|---|
 * | `types.ts` | group ids, peers, the `Transport` seam (frames of Raft messages, forwarded calls) |
 * | `mem-transport.ts` | `Transport`'s in-memory twin: a seeded simulated network (loss, delay, reorder, duplication, one-way partitions) |
| `unreachable.ts` | the once-per-100-ms limit on `unreachable` notices, shared by both transports |
 * | `replica-log.ts` | a partition's Raft log **is** its partition log: the `Storage` view over a `PartitionLog`, persisting entries as RecordBatch v2 |
 * | `meta-store.ts` | the controller's file-backed Raft log with snapshots |
 * | `metadata.ts` | the controller's state machine (pure): topics, replica placement; commands and snapshot codec |
 * | `placement.ts` | replica placement (pure): no two replicas of a partition on one peer; the spare that replaces a removed peer |
 * | `reassign.ts` | moving a partition's replicas: the leader changes its group one voter at a time toward the metadata's target |
 * | `group.ts` | `RaftGroup`: one RaftNode and its storage, driven in the order persist → send → apply → advance |
 * | `host.ts` | `RaftHost`: all the groups of one peer: one tick timer, heartbeats and messages coalesced into one frame per peer |
 *
 * The gRPC implementation of `Transport` is a front end (`gateways/peer/`), injected by the
 * composition root (`cli/serve.ts`), so nothing here imports a gateway.
 *
 * ## A partition's log is its Raft log
 *
 * One Raft entry is one RecordBatch v2 in the partition log; the entry's term is written into the
 * batch's `partitionLeaderEpoch` (outside the CRC, as Kafka and Redpanda do), so records are
 * written once and followers store the leader's bytes. The Raft index of a batch is its ordinal
 * in the log (1 for the first batch the group ever wrote); `ReplicaLog` keeps, per stored batch,
 * (term, baseOffset, lastOffset) in typed arrays and persists only an anchor (the index, term and
 * offset just before the first stored batch) with the hard state in `raft.json`. The empty entry
 * a new leader appends, and membership changes, are control batches (attributes bit 5) of one
 * record, so they take one offset each, as Kafka's transaction markers do; readers skip them.
 *
 * Offsets: the leader's log stamps a batch's baseOffset when it persists it, in place, so the
 * bytes it then sends carry their offsets; a follower's log assigns the same offsets (its log
 * matches the leader's up to there, which `ReplicaLog` asserts).
 *
 * The high watermark of a replicated partition is the commit index: `ReplicaLog.commitTo` moves
 * the log's high watermark to the last offset of the committed entry, and readers never see past
 * it. A follower knows the commit from its leader, so it serves committed reads itself.
 *
 * ## Produce
 *
 * | acks | the reply waits for |
 * |---|---|
 * | 0 | the proposal was accepted by the leader's Raft node |
 * | 1 | the leader's own durable write (its fsync, shared with other batches: group commit) |
 * | all | the commit: a quorum's durable write |
 *
 * A peer that is not the partition's leader forwards the produce call to the leader over the
 * transport; during an election the call is retried until its deadline and then fails with
 * `NOT_LEADER` (retriable).
 */
export * from "./types.ts";
