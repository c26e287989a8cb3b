/**
 * The bridge's metrics, registered on the broker's registry (`broker.metrics`), so they appear on
 * the HTTP gateway's GET /metrics next to the broker's own.
 */
import type { Broker } from "../../src/broker.ts";

export function bridgeMetrics(broker: Broker) {
  const m = broker.metrics;
  return {
    received: m.counter("tributary_mqtt_messages_received_total", "MQTT messages received by the bridge", ["connection", "qos"]),
    produced: m.counter("tributary_mqtt_records_produced_total", "MQTT messages made durable in the log and then acknowledged", ["topic"]),
    unmapped: m.counter("tributary_mqtt_unmapped_total", "MQTT messages no ingress rule matched (acknowledged and dropped)", ["connection"]),
    invalid: m.counter("tributary_mqtt_invalid_payload_total", "MQTT messages whose payload failed the rule's JSON/CBOR validation (acknowledged and dropped)", ["rule"]),
    rejected: m.counter("tributary_mqtt_rejected_total", "MQTT messages the broker refused for good (acknowledged and dropped)", ["code"]),
    duplicates: m.counter("tributary_mqtt_duplicates_dropped_total", "MQTT redeliveries recognised as already in the log", ["connection"]),
    produceRetries: m.counter("tributary_mqtt_produce_retries_total", "Produce calls retried after a retriable refusal", ["topic", "code"]),
    connects: m.counter("tributary_mqtt_connects_total", "Successful MQTT connections", ["connection", "session_present"]),
    disconnects: m.counter("tributary_mqtt_disconnects_total", "MQTT connections lost or failed", ["connection"]),
    unacked: m.gauge("tributary_mqtt_unacked_messages", "MQTT messages taken but not yet acknowledged", ["connection"]),
    stalls: m.counter("tributary_mqtt_window_stalls_total", "Times the bridge stopped reading a connection because its unacknowledged window was full", ["connection"]),
    egressPublished: m.counter("tributary_mqtt_egress_published_total", "Log records published to MQTT and acknowledged", ["topic"]),
    egressUnroutable: m.counter("tributary_mqtt_egress_unroutable_total", "Log records skipped: no key (or a key unfit for a topic level) for the MQTT topic template", ["topic"]),
  };
}

export type BridgeMetrics = ReturnType<typeof bridgeMetrics>;
