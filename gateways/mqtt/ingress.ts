/**
 * One MQTT connection of the bridge: subscribes, maps each message by the rules, hands records to
 * the batcher, and acknowledges a message only once its record is durable.
 *
 * How acknowledgements are held back (checked against mqtt.js 5.16 and pinned by
 * test/mqtt-bridge.test.ts): mqtt.js parses packets into a queue and handles them strictly one at
 * a time; a QoS 1 PUBLISH goes through `handleMessage(packet, callback)`, and only that callback
 * sends the PUBACK *and* lets the next packet be handled. Delaying the callback until the record
 * is durable would therefore serialize the stream to one message per disk sync. mqtt.js also
 * queues an acknowledgement sent while disconnected and writes it on the *next* connection, where
 * the packet id may by then name another message. So the bridge hooks the client's one write
 * path for acknowledgements (`_sendPacket`): a PUBACK (QoS 1) or PUBREC (QoS 2) for a message
 * still being made durable is held, and the handling of the next packet goes on at once; the held
 * acknowledgement is written when the record is durable, and only on the connection the message
 * came in on — otherwise it is dropped and the MQTT broker redelivers. The window: while
 * `receiveMaximum` messages are unacknowledged the bridge does not let mqtt.js handle the next
 * packet, so the socket stops being read and TCP pushes back to the MQTT broker (which, on
 * MQTT 5, already respects the Receive Maximum we advertise).
 *
 * Duplicates (see the README's delivery table): QoS 2 messages are exactly-once while the bridge
 * process lives — a PUBLISH repeated before its PUBREL is recognised by packet id. QoS 1 messages
 * whose acknowledgement was lost with a connection are recognised when the broker redelivers
 * them (DUP flag, same packet id, same topic and payload, session resumed). After a crash of the
 * bridge, both are at-least-once.
 */
import type { ProduceThrottle, TopicAdmitter } from "./auth.ts";
import mqtt, { type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient, type Packet } from "mqtt";
import { readFileSync } from "node:fs";
import type { ProduceRecord } from "../../src/broker.ts";
import type { Logger } from "../../src/logger.ts";
import { Rejected, type Batcher } from "./batcher.ts";
import type { ConnectionConfig } from "./config.ts";
import type { BridgeMetrics } from "./metrics.ts";
import { mapMessage, type CompiledIngressRule } from "./rules.ts";

type Callback = (err?: Error) => void;
type SendPacket = (packet: Packet, cb?: Callback, cbStorePut?: Callback, noStore?: boolean) => void;
/** The one private member of mqtt.js the bridge touches; see the file comment. */
interface AckHook {
  _sendPacket: SendPacket;
}

interface Pending {
  epoch: number;
  durable: boolean;
  /** The PUBACK/PUBREC mqtt.js wanted to send, held until `durable`. */
  ack: { packet: Packet; cb: Callback | undefined } | null;
  topic: string;
  payload: Uint8Array;
  result: Promise<boolean>;
}

export class IngressConnection {
  private client: MqttClient | null = null;
  private epoch = 0;
  /** Messages of the current connection awaiting durability, by packet id. */
  private pending = new Map<number, Pending>();
  /** Unacknowledged messages of closed connections: the broker will redeliver them with DUP set. */
  private carried = new Map<number, Pending>();
  /** QoS 2 packet ids whose PUBREC went out and whose PUBREL has not arrived. */
  private readonly qos2Received = new Set<number>();
  /** Messages taken and not settled, over all epochs: the window. */
  private unsettled = 0;
  private stalled: Callback[] = [];
  private stopping = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private unmappedLogged = 0;

  constructor(
    private readonly conn: ConnectionConfig,
    private readonly rules: CompiledIngressRule[],
    private readonly batcher: Batcher,
    private readonly metrics: BridgeMetrics,
    private readonly logger: Logger,
    /** With authentication on: may the bridge's principal produce to this log topic (auth.ts)? */
    private readonly admit?: TopicAdmitter,
    /** With authentication on: the principal's produce quota, waited for before each record (auth.ts). */
    private readonly throttle?: ProduceThrottle,
  ) {}

  get mqttClient(): MqttClient | null {
    return this.client;
  }

  start(): MqttClient {
    const c = this.conn;
    const options: IClientOptions = {
      clientId: c.clientId,
      protocolVersion: c.protocolVersion,
      clean: false,
      keepalive: c.keepaliveSec,
      connectTimeout: c.connectTimeoutMs,
      // Reconnects are ours, with backoff and jitter (mqtt.js retries at a fixed period).
      reconnectPeriod: 0,
      resubscribe: false,
      queueQoSZero: false,
    };
    if (c.protocolVersion === 5) options.properties = { sessionExpiryInterval: c.sessionExpirySec, receiveMaximum: c.receiveMaximum };
    if (c.username !== null) options.username = c.username;
    if (c.password !== null) options.password = c.password;
    if (c.tls) {
      if (c.tls.ca) options.ca = readFileSync(c.tls.ca);
      if (c.tls.cert) options.cert = readFileSync(c.tls.cert);
      if (c.tls.key) options.key = readFileSync(c.tls.key);
      options.rejectUnauthorized = c.tls.rejectUnauthorized;
    }
    const client = mqtt.connect(c.url, options);
    this.client = client;
    this.hook(client);
    client.on("packetreceive", (p) => this.onPacket(p));
    client.on("connect", (connack) => this.onConnect(client, connack));
    client.on("close", () => this.onClose(client));
    client.on("error", (e) => this.logger.warn("MQTT bridge: connection error", { connection: c.name, error: e }));
    return client;
  }

  private hook(client: MqttClient): void {
    const h = client as unknown as AckHook;
    if (typeof h._sendPacket !== "function") throw new Error("invariant broken: mqtt.js has no _sendPacket; the bridge's acknowledgement hook needs updating");
    const original = h._sendPacket.bind(client);
    h._sendPacket = (packet, cb, cbStorePut, noStore) => {
      if ((packet.cmd === "puback" || packet.cmd === "pubrec") && packet.messageId !== undefined) {
        const entry = this.pending.get(packet.messageId);
        if (entry && !entry.durable) {
          entry.ack = { packet, cb: undefined };
          // Let mqtt.js handle the next packet now, unless the window is full.
          if (cb) this.proceed(cb);
          return;
        }
        if (packet.cmd === "pubrec") this.qos2Received.add(packet.messageId);
        this.pending.delete(packet.messageId);
      }
      original(packet, cb, cbStorePut, noStore);
    };
    // QoS 0 messages never reach an acknowledgement: hold their continuation here instead.
    client.handleMessage = (packet, callback) => {
      if (packet.qos === 0) this.proceed(callback);
      else callback();
    };
    this.send = original;
  }

  private send: SendPacket = () => {};

  private proceed(cb: Callback): void {
    if (this.unsettled <= this.conn.receiveMaximum) cb();
    else {
      this.metrics.stalls.inc({ connection: this.conn.name });
      this.stalled.push(cb);
    }
  }

  private settle(): void {
    this.unsettled--;
    this.metrics.unacked.set({ connection: this.conn.name }, this.unsettled);
    while (this.stalled.length > 0 && this.unsettled <= this.conn.receiveMaximum) this.stalled.shift()!();
  }

  private onPacket(p: Packet): void {
    if (p.cmd === "pubrel" && p.messageId !== undefined) {
      this.qos2Received.delete(p.messageId);
      return;
    }
    if (p.cmd !== "publish") return;
    const packet = p as IPublishPacket;
    this.metrics.received.inc({ connection: this.conn.name, qos: String(packet.qos) });
    const raw = packet.payload;
    const payload = typeof raw === "string" ? new TextEncoder().encode(raw) : new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    const mid = packet.qos > 0 ? packet.messageId : undefined;
    if (mid !== undefined && packet.qos === 2 && this.qos2Received.has(mid)) {
      // A repeated PUBLISH before PUBREL: already durable, PUBREC again (mqtt.js does).
      this.metrics.duplicates.inc({ connection: this.conn.name });
      return;
    }
    let result: Promise<boolean>;
    const carried = mid !== undefined ? this.carried.get(mid) : undefined;
    if (carried) this.carried.delete(mid!);
    if (carried && packet.dup && carried.topic === packet.topic && sameBytes(carried.payload, payload)) {
      // The redelivery of a message whose acknowledgement died with the last connection.
      this.metrics.duplicates.inc({ connection: this.conn.name });
      result = carried.result.then((ok) => ok || this.ingest(packet, payload));
    } else {
      result = this.ingest(packet, payload);
    }
    if (mid === undefined) {
      this.unsettled++;
      void result.finally(() => this.settle());
      return;
    }
    const entry: Pending = { epoch: this.epoch, durable: false, ack: null, topic: packet.topic, payload, result };
    this.pending.set(mid, entry);
    this.unsettled++;
    this.metrics.unacked.set({ connection: this.conn.name }, this.unsettled);
    void result.then((ok) => {
      this.settle();
      if (!ok) return; // not durable (bridge stopping): leave it unacknowledged
      entry.durable = true;
      if (this.pending.get(mid) !== entry) return;
      if (entry.epoch !== this.epoch || !this.client?.connected) return;
      const ack = entry.ack;
      if (ack) {
        this.pending.delete(mid);
        if (ack.packet.cmd === "pubrec") this.qos2Received.add(mid);
        this.send(ack.packet, ack.cb);
      }
      // Without a held ack, mqtt.js has not asked to send it yet: the hook sends it through.
    });
  }

  /** Map and produce; true once durable or deliberately dropped (then it may be acknowledged). */
  private async ingest(packet: IPublishPacket, payload: Uint8Array): Promise<boolean> {
    const props = packet.properties;
    const mapped = mapMessage(this.rules, {
      topic: packet.topic,
      payload,
      userProperties: props?.userProperties as Record<string, string | string[]> | undefined,
      contentType: props?.contentType,
    });
    if (mapped.kind === "unmapped") {
      this.metrics.unmapped.inc({ connection: this.conn.name });
      if (this.unmappedLogged++ < 10 || this.unmappedLogged % 1000 === 0) {
        this.logger.warn("MQTT bridge: no ingress rule matches the topic; message dropped", { connection: this.conn.name, mqttTopic: packet.topic, count: this.unmappedLogged });
      }
      return true;
    }
    if (mapped.kind === "invalid") {
      this.metrics.invalid.inc({ rule: String(mapped.rule) });
      this.logger.warn("MQTT bridge: payload failed validation; message dropped", { connection: this.conn.name, mqttTopic: packet.topic, rule: mapped.rule, reason: mapped.reason });
      return true;
    }
    const denied = this.admit?.(mapped.topic) ?? null;
    if (denied !== null) {
      // Refused for good, like a record the broker refuses: acknowledged, counted and dropped.
      this.metrics.rejected.inc({ code: "PERMISSION_DENIED" });
      this.logger.warn("MQTT bridge: the bridge's principal may not produce to the topic; message dropped", { connection: this.conn.name, mqttTopic: packet.topic, topic: mapped.topic, reason: denied });
      return true;
    }
    const record: ProduceRecord = { key: mapped.record.key, value: mapped.record.value, headers: mapped.record.headers };
    if (mapped.record.partition !== undefined) record.partition = mapped.record.partition;
    try {
      // Unacknowledged while it waits: a full window stops the reading (backpressure, no loss).
      if (this.throttle) await this.throttle.wait(record);
      await this.batcher.add(mapped.topic, record);
      return true;
    } catch (e) {
      if (e instanceof Rejected) {
        this.metrics.rejected.inc({ code: e.code });
        this.logger.warn("MQTT bridge: the broker refused a record; message dropped", { connection: this.conn.name, mqttTopic: packet.topic, topic: mapped.topic, code: e.code, error: e });
        return true;
      }
      return false;
    }
  }

  private onConnect(client: MqttClient, connack: IConnackPacket): void {
    this.attempt = 0;
    const sessionPresent = connack.sessionPresent === true;
    this.metrics.connects.inc({ connection: this.conn.name, session_present: String(sessionPresent) });
    this.logger.info("MQTT bridge: connected", { connection: this.conn.name, url: this.conn.url, sessionPresent });
    if (!sessionPresent) {
      if (this.carried.size > 0) {
        this.logger.warn("MQTT bridge: the MQTT broker had no session for the bridge; it will not redeliver what was unacknowledged", { connection: this.conn.name, unacknowledged: this.carried.size });
      }
      this.carried.clear();
      this.qos2Received.clear();
    }
    if (this.conn.subscriptions.length === 0) return;
    const map: Record<string, { qos: 0 | 1 | 2; rh?: number }> = {};
    for (const s of this.conn.subscriptions) map[s.filter] = this.conn.protocolVersion === 5 ? { qos: s.qos, rh: 1 } : { qos: s.qos };
    client.subscribe(map, (err, granted) => {
      if (err) {
        this.logger.error("MQTT bridge: subscribe failed", { connection: this.conn.name, error: err });
        return;
      }
      for (const g of granted ?? []) {
        if (g.qos === 128 || g.qos > 2) this.logger.error("MQTT bridge: the MQTT broker refused a subscription", { connection: this.conn.name, filter: g.topic, code: g.qos });
      }
    });
  }

  private onClose(client: MqttClient): void {
    if (client !== this.client) return;
    this.epoch++;
    // Acknowledgements of this connection can no longer be sent: remember the messages so their
    // redelivery is recognised, and let go of held continuations (mqtt.js drops that pump).
    for (const [mid, entry] of this.pending) {
      this.carried.delete(mid);
      this.carried.set(mid, entry);
    }
    this.pending = new Map();
    // Bounded: a packet id the broker never redelivers must not stay forever (oldest go first).
    for (const mid of this.carried.keys()) {
      if (this.carried.size <= 2 * this.conn.receiveMaximum) break;
      this.carried.delete(mid);
    }
    for (const cb of this.stalled.splice(0)) cb();
    if (this.stopping) return;
    this.metrics.disconnects.inc({ connection: this.conn.name });
    const delay = Math.min(this.conn.reconnectMaxMs, this.conn.reconnectMinMs * 2 ** Math.min(this.attempt, 20)) * (0.5 + Math.random() / 2);
    this.attempt++;
    this.logger.warn("MQTT bridge: disconnected; reconnecting", { connection: this.conn.name, inMs: Math.round(delay), attempt: this.attempt });
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.stopping) client.reconnect();
    }, delay);
  }

  /** Stop reading: messages not yet durable stay unacknowledged with the MQTT broker. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => client.end(true, {}, () => resolve()), 2_000);
      client.end(false, {}, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Wait (bounded) for the acknowledgements of records already durable to go out. */
  async drain(timeoutMs: number): Promise<void> {
    const all = [...this.pending.values()].map((p) => p.result);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.allSettled(all), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
