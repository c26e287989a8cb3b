/**
 * The MQTT bridge under authentication: it runs as one principal (`mqtt.principal`), and its
 * mapping rules are held to that principal's ACL rules.
 *
 * At start-up: an ingress rule whose log topic is literal (no placeholders) and that the principal
 * may not produce to, or an egress rule whose log topic it may not consume, stops start-up with
 * INVALID_CONFIG. At run time: a templated topic (`telemetry-{site}`) is checked for each record,
 * and a record the principal may not produce is acknowledged, dropped and counted like any record
 * the broker refuses for good (`tributary_mqtt_rejected_total{code="PERMISSION_DENIED"}`, and
 * `tributary_auth_refusals_total{listener="mqtt",reason="denied"}`). The ACL file is re-read on
 * change, so the run-time check follows it.
 *
 * Quotas: each admitted record's bytes (as the batcher counts them, recordBytes) are charged to the principal's `produceBytesPerSec`
 * (`bridgeThrottle`), and the record waits its delay before it goes to the batcher. Backpressure,
 * not loss: the message stays unacknowledged meanwhile, so once a connection's window
 * (receiveMaximum) is full the bridge stops reading and the MQTT broker holds the rest. The waits
 * run one after another per bridge (a chain), so the next record is charged only when the one
 * before may go: the debt never runs ahead by more than one record, the rate holds however large
 * the window, and records keep their order. Throttled time is counted in
 * `tributary_quota_throttle_seconds_total{listener="mqtt",kind="produce"}`. `requestsPerSec`,
 * `maxStreams` and `maxConnections` do not apply: MQTT messages are not requests, and the bridge
 * holds no streams and accepts no connections.
 */
import { TributaryError } from "../../src/errors.ts";
import { topic, type SecurityGuard } from "../../src/security/guard.ts";
import type { ProduceRecord } from "../../src/broker.ts";
import { recordBytes } from "./batcher.ts";
import type { BridgeConfig } from "./config.ts";

/** Null when the bridge may produce to `logTopic`, else the reason. */
export type TopicAdmitter = (logTopic: string) => string | null;

export function bridgeAdmitter(guard: SecurityGuard, principal: string): TopicAdmitter {
  return (t) => {
    const d = guard.decide(principal, "produce", topic(t));
    if (d.allowed) return null;
    guard.countDenied("mqtt");
    return d.reason;
  };
}

/** INVALID_CONFIG naming every rule the principal's ACL rules already refuse. */
export function checkBridgeRules(config: BridgeConfig, guard: SecurityGuard, principal: string): void {
  const problems: string[] = [];
  for (const [conn, rules] of config.ingress) {
    for (const rule of rules) {
      if (!rule.topic.every((part) => "text" in part)) continue;
      const name = rule.topic.map((part) => ("text" in part ? part.text : "")).join("");
      const d = guard.decide(principal, "produce", topic(name));
      if (!d.allowed) problems.push(`ingress rule ${rule.index} of connection ${conn}: ${d.reason}`);
    }
  }
  for (const e of config.egress) {
    const d = guard.decide(principal, "consume", topic(e.topic));
    if (!d.allowed) problems.push(`egress rule for topic ${e.topic}: ${d.reason}`);
  }
  if (problems.length > 0) throw new TributaryError("INVALID_CONFIG", `MQTT bridge (principal ${principal}): ${problems.join("; ")}`);
}

/** Waits until the bridge's principal may produce `record` (its produce quota); `stop` ends every wait. */
export interface ProduceThrottle {
  wait(record: ProduceRecord): Promise<void>;
  stop(): void;
}

export function bridgeThrottle(guard: SecurityGuard, principal: string): ProduceThrottle {
  const stopped = new AbortController();
  let chain: Promise<unknown> = Promise.resolve();
  return {
    wait(record) {
      // Unlimited (no rule, or none for produce): no wait, and no chain to hold records in line.
      if (stopped.signal.aborted || guard.quotas.ruleFor(principal)?.produceBytesPerSec === undefined) return Promise.resolve();
      const mine = chain.then(() => guard.quotas.throttle("mqtt", principal, [["produce", recordBytes(record)]], stopped.signal));
      chain = mine;
      return mine.then(() => {});
    },
    stop: () => stopped.abort(),
  };
}
