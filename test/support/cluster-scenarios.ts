/**
 * What the cluster process tests share (test/cluster-process*.test.ts): they all work on one
 * partition, `t/0`, of a cluster from cluster-process.ts; the helpers here wait for what a peer
 * says of it, hold the final logs to a Ledger (cluster-client.ts) with vitest's `expect`, and run
 * the SIGKILL-under-load scenario that the Bun and the Deno runs both go through.
 *
 * @example
 *   const c = await startClusterProcess({ runtime: "deno" });
 *   await createTopic(c, c.nodes[0]!, TOPIC);
 *   const { recoveredMs } = await killLeaderUnderLoad(c);
 */
import { expect } from "vitest";
import type { BrokerProcess } from "./broker-process.ts";
import type { ClusterProcess } from "./cluster-process.ts";
import {
  currentLeader,
  indexesExcept,
  isUp,
  Ledger,
  peerView,
  probeUntilAck,
  ProduceLoad,
  readAll,
  waitForConvergence,
  waitForLeader,
  type LedgerReport,
  type LogRecord,
} from "./cluster-client.ts";
import { waitFor } from "./wait.ts";

export const TOPIC = "t";

/** Every peer's last stderr lines, for a failure message. */
export function tails(c: ClusterProcess, lines = 15): string {
  return c.nodes.map((n, i) => `--- peer ${i + 1}\n${n.stderrLines().slice(-lines).join("\n")}`).join("\n");
}

/** The leader as the peers that are up see it; while they elect, peer `fallback`. */
export async function leaderNode(c: ClusterProcess, fallback: number): Promise<BrokerProcess> {
  const up = c.nodes.map((n, i) => (isUp(n) ? i : -1)).filter((i) => i >= 0);
  return c.nodes[(await currentLeader(c, TOPIC, 0, up)) ?? fallback]!;
}

/** Peer `i` names peer `leader` as the leader (it stepped down and follows, or follows again). */
export function follows(c: ClusterProcess, i: number, leader: number): Promise<unknown> {
  return waitFor(`peer ${i + 1} to follow peer ${leader + 1}`, async () => (await peerView(c.nodes[i], TOPIC, 0))?.leader === leader + 1, 15_000);
}

/**
 * Every other peer follows `leader`: the whole cluster is up. A fault test waits for it before the
 * fault, since a peer still connecting at start leaves a quorum of two that one fault stops.
 */
export function allFollow(c: ClusterProcess, leader: number): Promise<unknown> {
  return Promise.all(c.nodes.map((_, i) => i).filter((i) => i !== leader).map((i) => follows(c, i, leader)));
}

/** Peer `i` no longer calls itself leader (check-quorum: it heard from no quorum for an election timeout). */
export function steppedDown(c: ClusterProcess, i: number): Promise<unknown> {
  return waitFor(`peer ${i + 1} to step down`, async () => (await peerView(c.nodes[i], TOPIC, 0))?.leader !== i + 1, 15_000);
}

/** Wait until the peers of `among` agree on the high watermark, read the partition from each: the logs are equal. */
export async function equalLogs(c: ClusterProcess, among = c.nodes.map((_, i) => i)): Promise<LogRecord[]> {
  await waitForConvergence(c, TOPIC, 0, among);
  const logs = await Promise.all(among.map((i) => readAll(c.nodes[i]!, TOPIC, 0)));
  for (const log of logs.slice(1)) expect(log).toEqual(logs[0]);
  return logs[0]!;
}

/** The final log (equal on `among`) holds every acknowledgement of `ledger` (Ledger.check). */
export async function expectLedgerHolds(c: ClusterProcess, ledger: Ledger, among?: number[]): Promise<{ log: LogRecord[]; report: LedgerReport }> {
  const log = await equalLogs(c, among);
  const report = ledger.check(log);
  expect(report.violations, tails(c)).toEqual([]);
  return { log, report };
}

/**
 * SIGKILL the leader of `t/0` under an acks=all load (a producer through a follower, which
 * forwards, and one following the leader), probe until a produce is acknowledged again, restart
 * the killed peer on its data dir, let it catch up under the load, and hold every peer's log to
 * the ledger. Returns how long after the kill the first produce was acknowledged.
 */
export async function killLeaderUnderLoad(c: ClusterProcess): Promise<{ recoveredMs: number; newLeader: number; report: LedgerReport }> {
  const leader = await waitForLeader(c, TOPIC, 0);
  await allFollow(c, leader);
  const follower = indexesExcept(c, leader)[0]!;
  const ledger = new Ledger(TOPIC);
  const viaFollower = new ProduceLoad(ledger, "via-follower", () => c.nodes[follower]!).start();
  const toLeader = new ProduceLoad(ledger, "to-leader", () => leaderNode(c, leader)).start();
  const more = (n: number) => Promise.all([viaFollower.acksFromNow(n), toLeader.acksFromNow(n)]);
  await more(30);

  const killedAt = Date.now();
  await c.kill(leader, "SIGKILL");
  // Probes only, no polling of the peers' views meanwhile: on 2 cores the test's own load shows.
  const firstAck = await probeUntilAck(ledger, indexesExcept(c, leader).map((i) => c.nodes[i]!));
  const newLeader = await waitForLeader(c, TOPIC, 0, { among: indexesExcept(c, leader), not: leader, timeoutMs: 10_000 });
  await more(30);

  await c.start(leader);
  await more(30); // the restarted peer catches up while the load goes on
  await Promise.all([viaFollower.stop(), toLeader.stop()]);
  const { report } = await expectLedgerHolds(c, ledger);
  expect(report.acked).toBeGreaterThanOrEqual(180);
  return { recoveredMs: firstAck - killedAt, newLeader, report };
}
