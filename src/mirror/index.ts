/**
 * # Mirroring: edge clusters into a central cluster, exactly once, through disconnection
 *
 * An edge cluster (one broker, or a Raft cluster of 3 or 5) runs *mirror links*: each copies
 * the edge topics it selects into a central cluster, asynchronously. The central is a Tributary
 * cluster started in the central role. Data gathered on site arrives there complete, in order
 * and once, even after the uplink was down for days or slow and expensive. This folder holds the
 * pure parts and both drivers, and this comment is the design they follow: the edge's (the link
 * runner, the checkpoint store, MirrorEdge, mirror-aware retention) and the central's
 * (MirrorCentral: bindings, admission, positions, group offsets). The Tributary sink and the
 * central's gRPC service live in gateways/grpc/ (mirror-sink.ts, mirror.ts).
 *
 * ## The parts
 *
 * | file | concern |
 * |---|---|
 * | `types.ts` | the seams: source partitions, sends, acks, gaps, and `MirrorSink`, the interface every sink implements |
 * | `topics.ts` | which topics a link carries (include/exclude, literal or `prefix*`) and their central names (`{cluster}.` prefix) |
 * | `stamp.ts` | the source stamp in a batch header, and the central's admission rule (what to write, what to drop) |
 * | `resume.ts` | where a link resumes each partition when it (re)opens, and which offsets to report as gaps |
 * | `uplink.ts` | the uplink scheduler: bytes-per-second cap, live and backlog lanes, per-topic priority, send sizes |
 * | `lag.ts` | per-partition lag (records, bytes, seconds), rates, drain estimate, stalled flag; the link summary |
 * | `retention-policy.ts` | mirror-aware retention at the edge, and the disk budget's two policies |
 * | `ranges.ts` | offset ranges: normalising, clipping, the bounded drop ledger |
 * | `source.ts` | what the edge's mirror takes from its broker (partition logs, checkpoint topic, leadership, group offsets) |
 * | `runner.ts` | the edge's driver of one link (`MirrorLink`): sessions, plans, the send loop, backoff, lag |
 * | `checkpoints.ts` | `__mirror_checkpoints` (positions, drop ledger) and the `MirrorRetentionSource` over it |
 * | `group-offsets.ts` | mirrored consumer groups' committed offsets, sent and re-sent while held back |
 * | `edge.ts` | `MirrorEdge`: the links of one broker, following the leader of `__mirror_checkpoints`; status, metrics |
 * | `broker-host.ts` | `source.ts`'s interfaces over the Broker |
 * | `config.ts` | the `mirror.config` links file, checked whole |
 * | `mem-sink.ts` | an in-memory central (tests, simulation) behind `MirrorSink` |
 * | `retention-driver.ts` | the broker's mirror-aware retention pass: plan, drop ledger first, then delete; the write refusal |
 * | `central.ts` | `MirrorCentral`: target bindings, positions rebuilt from the log, admission on the target's leader, the retention floor |
 * | `central-log.ts`, `central-checks.ts`, `central-groups.ts` | the central's log scans, input checks, and group-offset translation |
 *
 * ## The data path
 *
 * ```
 *  edge                                                                    central
 *  partition log ─► link runner ─► stamp · gzip ─► MirrorService.Send ─► admitSend ─► target partition
 *  (committed      (uplink.ts:      (stamp.ts)      (one gRPC stream       (stamp.ts,    (its Raft group,
 *   batches only)   who, when,                       per link)              on the        acks=all)
 *        ▲          how much)                                              leader)           │
 *        │                                                                                   │
 *  __mirror_checkpoints ◄──────────────── acks: the position, once committed ◄──────────────┘
 * ```
 *
 * The runner reads whole batches from the edge log, up to the high watermark only (committed in a
 * cluster, durable on one node), so what it sends exists on every edge replica with the same
 * offsets and bytes, and can never vanish in an edge failover. It skips batches without records
 * (control batches, batches compaction emptied), stamps the rest, gzips the send and sends it.
 * The central admits what lies at or above its position, appends it through the target
 * partition's Raft group, and acknowledges once that is committed. The runner writes the
 * acknowledged position to its checkpoint topic, and edge retention may then delete what lies
 * below it.
 *
 * ## How a record carries its source: the batch stamp
 *
 * Each central *target partition* has exactly one source: (edge cluster id, source topic and its
 * topic id, source partition p) lands in target partition p. The binding is kept in the target
 * topic's metadata (`mirror.source`, e.g. `site7/telemetry/<topicId>`). It is set when a link
 * first opens the topic and is refused for any other source, so two links cannot share a target
 * (topics.ts prefixes names with the cluster id for this reason). Source offsets then travel in
 * the batch header, the *stamp* (stamp.ts): the source base offset in `producerId`, epoch -2,
 * sequence -1. These fields are inside the CRC, so the edge checks the CRC, writes the stamp and
 * renews the CRC: corruption is never laundered, and the stamp is checked end to end like the
 * records. The records are not re-encoded. Record i's source offset is `stamp + offsetDelta_i`,
 * exactly: cluster, topic and partition come from the binding, the offset from the stamp.
 *
 * Rejected: per-record headers (the edge would re-encode every batch, and each record would
 * carry ~61 more bytes, stored forever at the central; gzip hides most of that on the wire, from
 * 35 to 40 B a record, see below); a position record appended to each batch (a re-encode, a record
 * consumers would see, shifted offsets); a separate positions topic (another Raft group, so not
 * atomic with the records without transactions).
 *
 * **Atomic by construction.** A batch and its stamp are one Raft entry. The central's *position*
 * for a source partition (the next source offset it expects) is a function of the target log
 * alone: the end of its newest stamped batch. Records and position are written together or not
 * at all. This is the idempotent producer of src/idempotence/ reduced to one number: one source
 * per partition, offsets only growing, so the producer table is the log's tail. After a restart
 * or a leader change the position is rebuilt from the batch headers of the newest segment,
 * scanned back to the newest stamped batch (`positionFromBatches`). Only a new leader's control
 * batches are unstamped in a target, so the scan stops almost at once. The central's retention
 * and compaction must not remove that batch: the central installs a retention floor at the
 * segment holding it. Otherwise a target emptied by retention would look reset, and the edge
 * would resend from its log start.
 *
 * **Admission** (`admitSend`): batches wholly below the position are dropped (a replay, acked
 * with the position); a send starting above the position must declare the gap (offsets the edge
 * lost, from resume.ts) or is refused with OUT_OF_ORDER_SEQUENCE (the edge then re-opens the link
 * and plans again); a batch straddling the position means the source changed (INVALID_REQUEST).
 * The leader runs check and append with no await between them (as idempotent produce does), so
 * concurrent sends of one source are admitted in log order.
 *
 * **Central leader failover.** What survives: every acknowledged send (acks wait for the Raft
 * commit), and the position, which lives in the log. A send in flight may or may not be in the
 * new leader's log; either way its position shows it, and the edge's resend is deduplicated. A
 * new leader answers `open` and acks only once an entry of its own term is committed (its empty
 * entry), so its whole log is committed and a position it reports cannot vanish. Lost: nothing
 * the edge does not resend anyway.
 *
 * **No fencing between edge leaders is needed.** Two edge peers sending at once (an old leader
 * that has not yet noticed) send the same committed bytes under the same offsets, and admission
 * drops the second copy. A topic deleted and created again at the edge has a new topic id, so its
 * binding is refused until an operator resets the link.
 *
 * ## Checkpoints at the edge
 *
 * `__mirror_checkpoints` is an internal topic: compacted, one partition, replicated like
 * `__consumer_offsets` and written with acks=all. JSON keys and values, as in
 * groups/offsets-store.ts:
 *
 *   key [1, link, topic, partition]  value {"position", "sourceTopicId", "targetTopicId", "updatedAtMs"}
 *                                    the central's last acknowledged position for that partition
 *   key [2, topic, partition]        value {"ranges": [[from, to, reason], ...], "droppedOffsets", "droppedBytes"}
 *                                    the drop ledger: what the edge deleted unmirrored (at most 64
 *                                    ranges, ranges.ts), per partition since a drop concerns every link
 *
 * A position is written after acks, at most once a second per partition (`mirror.checkpoint.interval.ms`),
 * and at shutdown. The ledger is written before retention deletes any file (by the broker's
 * mirror-aware retention pass, retention-driver.ts, before it calls the log's retention hook), so
 * a crash never deletes data without recording it. The link runs on the peer
 * that leads `__mirror_checkpoints` (one runner per edge cluster, the way the group coordinator
 * runs on the leader of `__consumer_offsets`). It reads every partition through the broker (local
 * replicas serve committed reads). A new leader replays the topic (one record per key, the last
 * one winning), opens the link, plans each partition with resume.ts and resumes. The other peers
 * tail their own replica of it every checkpoint interval, so each peer's mirror-aware retention
 * knows what the central holds. The checkpoint
 * is not what makes delivery exactly once: the central's position is the truth, and a stale or
 * lost checkpoint only makes the plan say so. It is what edge retention trusts while the central is
 * unreachable (`mirroredBelow` = the lowest, over the links carrying the topic, of the checkpoint
 * or the newer acknowledged position), it gives lag while disconnected, and it sorts out gaps
 * after a central lost data (`central-lost`).
 *
 * ## The sink and the central's receiving API
 *
 * `MirrorSink` (types.ts): `open(hello)` binds the link's topics and answers the central's
 * position per partition; `send(sends)` returns one ack (the new position) per send; replays are
 * harmless by contract. The Tributary sink speaks `tributary.mirror.v1.MirrorService` on the
 * central's gRPC listener (mutual TLS when TLS is on): `Open(LinkHello) returns (Welcome)` and
 * `Send(stream SendBatch) returns (stream SendAck)`, bidirectional and flow-controlled like
 * ProduceStream. Each message carries one partition's send, its payload gzip of the concatenated
 * batches (`compression` says so), at most `grpc.max.message.bytes`. Acks of one partition come
 * in order. Any central peer takes the stream and forwards each send to the target's leader, as
 * produce is forwarded. On the central broker: `mirrorOpen(hello)` (binds or creates targets,
 * refuses conflicting bindings per topic, answers positions), `mirrorAppend(source, fromOffset,
 * batches, gaps)` (admitSend, then append with acks=all; resolves with the position), and
 * `mirrorPositions`. Targets are read-only to clients, as internal topics are. A Kafka-protocol
 * sink can follow: it would write each batch with a transactional producer, together with a
 * position record in a compacted positions topic, and read that topic in `open`; the contract
 * (drop below the position, gaps declared) is the same.
 *
 * ## The uplink: scheduling, batching, compression
 *
 * The runner loops on `UplinkScheduler.next(now)`: a grant names a partition and a size. It reads
 * whole batches from its cursor up to the grant's maxBytes (at least one batch), reports the
 * partition's new pending bytes, stamps, compresses, sends, and settles with `sent(grant, bytes)`.
 * `wait` sets a timer (the link is *throttled*), and `idle` waits for data or an ack. The cap counts
 * bytes on the wire, after compression: the sink reports each send's compressed size in its ack
 * (`MirrorAck.wireBytes`), and the scheduler settles the grant with it. Live partitions (little unsent) go first; the backlog
 * drains in the background with `backlogShare` of the cap while the live lane wants the rest, and
 * with all of it otherwise. See uplink.ts.
 *
 * Compression is gzip from `node:zlib`. `gzipSync` is present and round-trips on Bun 1.4.5 and on
 * Deno 2.9.6 (`bun -e`, `deno eval`), as the record-batch codec already relies on. The sink gzips
 * each send's payload, not each batch: the central stores the batches as the edge had them (no
 * re-encoding on either side), and compressing a whole send is twice as good for the small
 * batches devices produce. A link can turn it off (`uplink.compression: "none"`, where CPU is
 * dearer than bytes: on loopback it drains a backlog about 3 times faster, bench/mirror.ts). Measured by `bench/mirror-bytes.ts` (CBOR telemetry of ~181 bytes via
 * cbor-x, keyed by device id), bytes per record:
 *
 * | records per batch | batch as stored | gzip per batch | gzip per 256 KiB send |
 * |---|---|---|---|
 * | 10 | 220.5 | 74.4 | 34.2 |
 * | 100 | 216.2 | 42.5 | 35.3 |
 * | 1000 | 216.3 | 35.2 | 35.2 |
 * | 100, with the MQTT bridge's two headers | 300.2 | 47.6 | 40.5 |
 *
 * gzip runs at 50 to 80 MB/s of input on one core of the 2-core test machine, far above any uplink.
 *
 * ## Store and forward
 *
 * While the central is unreachable the edge keeps accepting writes, and retention is
 * mirror-aware (retention-policy.ts): a segment holding unmirrored records is not deleted by
 * time or size, and when the data directory reaches `mirror.disk.budget.bytes` mirrored segments
 * go first. Then `mirror.disk.full.policy` decides: `refuse` (produce gets OVERLOADED, retriable,
 * until the mirror catches up) or `drop-oldest` (the oldest unmirrored segments go, their ranges
 * recorded in the ledger, counted in `tributary_mirror_dropped_offsets_total{topic,reason}`,
 * logged, and reported as gaps by the next resume plan). Reconnects back off exponentially from
 * 500 ms to 30 s with 50 to 100 % jitter, as the MQTT bridge does, with the random source injected.
 *
 * ## Resume
 *
 * Every open (reconnect, edge leader change, central leader change, restart) plans each partition
 * with resume.ts from the edge checkpoint, the central's position, the log bounds and the ledger:
 * resume at the central's position when the edge still has it (no gap, nothing twice); at the log
 * start when the edge deleted past it (the gap reported, with its reasons); wait when a new edge
 * leader's commit has not caught up with the central; stop (diverged) when the central holds
 * offsets this log never had.
 *
 * ## Lag
 *
 * lag.ts per partition, shown by `GET /v1/mirror` (HTTP), the admin gRPC service, `tributary mirror
 * status`, and `/metrics`: `tributary_mirror_lag_records`, `_lag_bytes`, `_lag_seconds`,
 * `_last_advance_timestamp_seconds`, `_drain_seconds` and `_stalled` `{link,topic,partition}`,
 * `tributary_mirror_link_state{link,state}`, `tributary_mirror_bytes_sent_total{link,lane}`.
 *
 * ## Consumer group offsets
 *
 * Committed offsets of chosen groups travel as (group, source topic, partition, source offset).
 * The central translates them exactly: it finds the target batch whose stamp covers the offset
 * (binary search over the target log: central offsets and stamps grow together). The central
 * offset is then that batch's base + (source offset - stamp); an offset between batches maps to
 * the next batch's start. The central commits that under the same group id, with the source
 * offset in the metadata, and holds back a commit beyond its position until the records arrive,
 * so a consumer that fails over from edge to central continues without a gap.
 */
export * from "./types.ts";
