/**
 * The safety checks of the cluster simulation (test/support/cluster-sim.ts), run after every
 * step over every live broker: Raft's properties over each broker's groups, and state machine
 * safety over the partitions' records as `broker.fetch` serves them. See cluster-sim.ts.
 */
import type { Broker } from "../../src/broker.ts";
import type { RaftGroup } from "../../src/cluster/group.ts";
import type { NodeId } from "../../src/cluster/types.ts";
import { crc32c } from "../../src/storage/crc32c.ts";

const dec = new TextDecoder();

/** What the checker needs of one broker life (one run of a broker process, from open to crash). */
export interface CheckedLife {
  readonly id: NodeId;
  readonly number: number;
  readonly broker: Broker | null;
  /**
   * Commit index per group seen so far in this life (monotonic), by the group object: a replica
   * moved off this peer and back is a new group that starts again from its empty log.
   */
  readonly commits: WeakMap<RaftGroup, number>;
  /** Per partition: offsets below this were checked against the run's record map in this life. */
  readonly checkedTo: Map<number, number>;
}

/**
 * Raft's safety properties over every live broker's groups, and state machine safety over the
 * partitions' records, checked after every step. Remembers what it saw over the whole run.
 */
export class ClusterChecker {
  /** group -> term -> leader. */
  private readonly leaders = new Map<string, Map<number, NodeId>>();
  /** group -> index -> committed entry: its term, the lowest term of a node that saw it committed, its CRC where seen. */
  private readonly committed = new Map<string, { term: number; seenAt: number; crc: number | null }[]>();
  /** partition -> offset -> record ("key|value") seen below a high watermark. */
  readonly records = new Map<number, Map<number, string>>();
  recordsChecked = 0;
  leaderTerms = 0;

  constructor(private readonly fail: (message: string) => never) {}

  /**
   * Raft properties across the live lives. A node's committed prefix is compared with the run's
   * committed entries when it commits them (`recordCommitted`), so log matching and leader
   * completeness need only look above the commit indexes each step; `full` (every few steps, and
   * at the end) rescans whole logs, which would catch a committed prefix that changed later.
   */
  checkGroups(lives: readonly CheckedLife[], full: boolean): void {
    const byGroup = new Map<string, { life: CheckedLife; g: RaftGroup }[]>();
    for (const life of lives) {
      for (const g of life.broker!.cluster!.host.allGroups()) {
        // Disks never fail under a live broker here: a stopped group is a bug (a broken invariant in its store).
        if (g.isStopped) this.fail(`broker ${life.id} (life ${life.number}) stopped the Raft group ${g.id}: its store failed`);
        let list = byGroup.get(g.id);
        if (!list) byGroup.set(g.id, (list = []));
        list.push({ life, g });
        this.checkNode(life, g);
      }
    }
    for (const [group, list] of byGroup) {
      for (const { life, g } of list) if (g.node.role === "leader") this.leaderComplete(group, life, g, full);
      for (let a = 0; a < list.length; a++) for (let b = a + 1; b < list.length; b++) this.logMatching(group, list[a]!, list[b]!, full);
    }
  }

  private checkNode(life: CheckedLife, g: RaftGroup): void {
    const n = g.node;
    if (n.role === "leader") {
      let terms = this.leaders.get(g.id);
      if (!terms) this.leaders.set(g.id, (terms = new Map()));
      const prior = terms.get(n.term);
      if (prior !== undefined && prior !== life.id) this.fail(`election safety: ${prior} and ${life.id} both lead ${g.id} in term ${n.term}`);
      if (prior === undefined) this.leaderTerms++;
      terms.set(n.term, life.id);
    }
    const c = n.log.committed;
    const was = life.commits.get(g) ?? 0;
    if (c < was) this.fail(`monotonic commit: broker ${life.id} (life ${life.number}) ${g.id} commit went back from ${was} to ${c}`);
    life.commits.set(g, c);
    if (n.log.applied > c) this.fail(`broker ${life.id} ${g.id} applied ${n.log.applied} beyond commit ${c}`);
    if (c > n.log.lastIndex()) this.fail(`broker ${life.id} ${g.id} commit ${c} beyond its last index ${n.log.lastIndex()}`);
    this.recordCommitted(life, g, Math.max(n.log.firstIndex(), was + 1), c);
  }

  /** Entries newly committed on a node: the same everywhere (term, and bytes where at hand). */
  private recordCommitted(life: CheckedLife, g: RaftGroup, lo: number, hi: number): void {
    if (lo > hi) return;
    let list = this.committed.get(g.id);
    if (!list) this.committed.set(g.id, (list = []));
    const n = g.node;
    const ents = n.log.slice(lo, hi + 1, Number.MAX_SAFE_INTEGER) ?? null;
    for (let i = lo; i <= hi; i++) {
      const term = n.log.term(i);
      if (term === undefined) this.fail(`broker ${life.id} ${g.id} committed ${hi} but has no term at ${i}`);
      const e = ents?.[i - lo];
      const crc = e ? crc32c(e.data) : null;
      const prior = list[i];
      if (!prior) {
        list[i] = { term, seenAt: n.term, crc };
        continue;
      }
      if (prior.term !== term) this.fail(`committed entries differ: ${g.id} index ${i} is term ${term} on broker ${life.id}, term ${prior.term} elsewhere`);
      if (crc !== null && prior.crc !== null && crc !== prior.crc) this.fail(`committed entries differ: ${g.id} index ${i}@${term} has other bytes on broker ${life.id}`);
      if (prior.crc === null) prior.crc = crc;
      prior.seenAt = Math.min(prior.seenAt, n.term);
    }
  }

  /** A leader of term T holds every entry seen committed at a term below T. */
  private leaderComplete(group: string, life: CheckedLife, g: RaftGroup, full: boolean): void {
    const list = this.committed.get(group) ?? [];
    const n = g.node;
    const lo = full ? n.log.firstIndex() : Math.max(n.log.firstIndex(), n.log.committed + 1);
    for (let i = list.length - 1; i >= lo; i--) {
      const c = list[i];
      if (!c || c.seenAt >= n.term) continue;
      const t = n.log.term(i);
      if (t !== c.term) this.fail(`leader completeness: broker ${life.id} leads ${group} in term ${n.term} without committed entry ${i}@${c.term} (it has ${t})`);
    }
  }

  /** Log matching: from the highest index where the two logs agree on the term, they agree all the way down. */
  private logMatching(group: string, a: { life: CheckedLife; g: RaftGroup }, b: { life: CheckedLife; g: RaftGroup }, full: boolean): void {
    const la = a.g.node.log;
    const lb = b.g.node.log;
    const lo = Math.max(la.firstIndex(), lb.firstIndex(), full ? 0 : Math.min(la.committed, lb.committed));
    let i = Math.min(la.lastIndex(), lb.lastIndex());
    while (i >= lo && la.term(i) !== lb.term(i)) i--;
    for (; i >= lo; i--) {
      if (la.term(i) !== lb.term(i)) this.fail(`log matching: brokers ${a.life.id} and ${b.life.id} differ on ${group} at ${i} below a common entry`);
    }
  }

  /** State machine safety: what each replica serves below its high watermark, read through the broker. */
  async checkRecords(life: CheckedLife, topic: string, partitions: number, drive: <T>(p: Promise<T>) => Promise<T>): Promise<void> {
    const broker = life.broker!;
    let desc;
    try {
      desc = broker.describeTopic(topic);
    } catch {
      return; // not reconciled yet on this life
    }
    for (let p = 0; p < partitions; p++) {
      const hw = desc.partitions[p]?.highWatermark ?? -1;
      if (hw < 0) continue; // no replica here
      let offset = Math.max(life.checkedTo.get(p) ?? 0, desc.partitions[p]!.logStartOffset);
      while (offset < hw) {
        const r = await drive(broker.fetch(topic, p, offset, { maxRecords: 10_000, maxBytes: 16 << 20 }));
        for (const rec of r.records) {
          if (rec.offset >= hw) break;
          this.sawRecord(life.id, p, rec.offset, recordId(rec.key, rec.value));
        }
        if (r.nextOffset <= offset) this.fail(`broker ${life.id} partition ${p}: fetch at ${offset} made no progress below high watermark ${hw}`);
        offset = Math.min(r.nextOffset, hw);
      }
      life.checkedTo.set(p, hw);
    }
  }

  sawRecord(broker: NodeId, partition: number, offset: number, id: string): void {
    let m = this.records.get(partition);
    if (!m) this.records.set(partition, (m = new Map()));
    const prior = m.get(offset);
    this.recordsChecked++;
    if (prior === undefined) m.set(offset, id);
    else if (prior !== id) this.fail(`state machine safety: partition ${partition} offset ${offset} is ${JSON.stringify(id)} on broker ${broker}, ${JSON.stringify(prior)} before`);
  }
}

/** A log line without its wall-clock timestamp, so traces of one seed are equal. */

/** A record as the checker compares it: "key|value" (the sim's records are text). */
export function recordId(key: Uint8Array | null, value: Uint8Array | null): string {
  return `${key ? dec.decode(key) : ""}|${value ? dec.decode(value) : ""}`;
}
