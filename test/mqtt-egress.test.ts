/**
 * MQTT egress keeps its position in a consumer group (gateways/mqtt/egress.ts): a broker process
 * killed mid-way through a run of commands resumes from the group's committed offset (every
 * command reaches the device, and only the round in flight at the kill comes again, at most
 * `batchRecords`), the group shows the position with lag 0, and an old position file
 * (`data.dir/mqtt-egress/<topic>-<hash>/<p>.json`) is moved into the group on upgrade. Real
 * Mosquitto, real Bun broker processes; no fixed sleeps.
 */
import { describe, expect, it } from "vitest";
import mqtt from "mqtt";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { egressGroupId } from "../gateways/mqtt/egress.ts";
import { startBrokerProcess } from "./support/broker-process.ts";
import { readPartition, startMosquitto, waitFor, writeBridgeConfig, mqttTestResources } from "./support/mosquitto.ts";

const { brokers, mosquittos, clients, dirs } = mqttTestResources();


const RULE = { connection: "local", topic: "commands", mqttTopicText: "devices/{key}/commands" };
const GROUP = egressGroupId(RULE);

interface GroupView {
  groupId: string;
  members: unknown[];
  partitions: { topic: string; partition: number; committedOffset: number | null; highWatermark: number; lag: number | null }[];
  totalLag: number;
}

async function describeGroup(url: string): Promise<GroupView | undefined> {
  const res = await fetch(`${url}/v1/groups/${GROUP}`);
  if (res.status === 404) return undefined;
  expect(res.status).toBe(200);
  return (await res.json()) as GroupView;
}

async function committed(url: string, partition = 0): Promise<number | null | undefined> {
  return (await describeGroup(url))?.partitions.find((p) => p.partition === partition)?.committedOffset;
}

async function produce(url: string, records: { key: string; value: unknown; partition?: number }[]): Promise<void> {
  const res = await fetch(`${url}/v1/topics/commands/records`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ records }) });
  expect(res.status).toBe(200);
}

async function createTopic(url: string, partitions: number): Promise<void> {
  const res = await fetch(`${url}/v1/topics`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "commands", partitions }) });
  expect(res.status).toBe(201);
}

/** A device subscribed to every command topic, recording the `seq` of each command it gets. */
async function commandDevice(url: string, onSeq: (seq: number) => void = () => {}): Promise<{ seqs: number[] }> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: `device-${Math.random().toString(36).slice(2)}` });
  clients.push(c);
  const seqs: number[] = [];
  c.on("message", (_topic, payload) => {
    const seq = (JSON.parse(payload.toString()) as { seq: number }).seq;
    seqs.push(seq);
    onSeq(seq);
  });
  await c.subscribeAsync("devices/+/commands", { qos: 1 });
  return { seqs };
}

async function setup(batchRecords: number, startFrom: "latest" | "earliest") {
  const mq = await startMosquitto({ maxQueuedMessages: 100_000 });
  mosquittos.push(mq);
  const dir = await mkdtemp(join(tmpdir(), "tributary-mqtt-egress-"));
  dirs.push(dir);
  const configPath = await writeBridgeConfig(dir, {
    connections: [{ name: RULE.connection, url: mq.url, clientId: "bridge-egress" }],
    egress: [{ topic: RULE.topic, mqttTopic: RULE.mqttTopicText, qos: 1, batchRecords, startFrom }],
  });
  const dataDir = join(dir, "data");
  const start = async (withBridge = true) => {
    const b = await startBrokerProcess({ runtime: "bun", dataDir, args: withBridge ? ["--mqtt-config", configPath] : [] });
    brokers.push(b);
    return b;
  };
  return { mq, dataDir, start };
}

describe("MQTT egress position in a consumer group", () => {
  it("names the group after the connection, the log topic and a hash of the MQTT topic template, as a valid group id", () => {
    expect(GROUP).toMatch(/^mqtt-egress\.local\.commands\.[0-9a-f]{8}$/);
    expect(egressGroupId({ ...RULE, mqttTopicText: "devices/{key}/other" })).not.toBe(GROUP);
    expect(egressGroupId({ ...RULE, connection: "site a/β" })).toMatch(/^mqtt-egress\.site_a__\.commands\.[0-9a-f]{8}$/);
    const long = egressGroupId({ ...RULE, topic: "t".repeat(249) });
    expect(long).toMatch(/^[a-zA-Z0-9._-]{1,249}$/);
  });

  it("a broker killed mid-way through a run of commands resumes from the committed offset: all delivered, only the round in flight again", async () => {
    const N = 2000;
    const B = 10;
    const { mq, start } = await setup(B, "latest");
    let broker = await start();
    await createTopic(broker.url, 1);
    await waitFor("the egress start position to be committed", async () => ((await committed(broker.url)) === 0 ? true : undefined));

    // The kill happens inside the device's message handler, synchronously, at the 300th command:
    // the bridge is then certainly mid-way through the 2000.
    let maxAtKill = -1;
    let receivedAtKill = -1;
    const first = broker;
    const dev = await commandDevice(mq.url, () => {
      if (receivedAtKill < 0 && dev.seqs.length >= 300) {
        first.child.kill("SIGKILL");
        receivedAtKill = dev.seqs.length;
        maxAtKill = Math.max(...dev.seqs);
      }
    });
    await produce(broker.url, Array.from({ length: N }, (_, seq) => ({ key: `d${seq % 5}`, value: { seq } })));
    await waitFor("the kill", () => (receivedAtKill >= 0 ? true : undefined));
    await first.kill("SIGKILL");
    expect(receivedAtKill).toBeLessThan(N);

    broker = await start();
    const seen = await waitFor("every command at the device", () => (new Set(dev.seqs).size === N ? new Set(dev.seqs) : undefined), 60_000);
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));

    // A round is published only after the previous one was committed, so when the device had seen
    // command maxAtKill the committed offset was at least maxAtKill + 1 - B: anything sent twice
    // lies at or past it, and it is at most one round.
    const counts = new Map<number, number>();
    for (const s of dev.seqs) counts.set(s, (counts.get(s) ?? 0) + 1);
    const repeated = [...counts].filter(([, n]) => n > 1).map(([s]) => s);
    expect(repeated.length).toBeLessThanOrEqual(B);
    for (const s of repeated) expect(s).toBeGreaterThanOrEqual(maxAtKill + 1 - B);
    expect([...counts.values()].every((n) => n <= 2)).toBe(true);

    const d = await waitFor("the group at the end of the log", async () => {
      const g = await describeGroup(broker.url);
      return g?.partitions[0]?.committedOffset === N ? g : undefined;
    });
    expect(d).toMatchObject({ groupId: GROUP, members: [], totalLag: 0, partitions: [{ topic: "commands", partition: 0, committedOffset: N, highWatermark: N, lag: 0 }] });

    // The commit says who made it (__consumer_offsets value: {"offset", "metadata", ...}).
    const commits = (await readPartition(broker.url, "__consumer_offsets", 0)).filter((r) => r.key?.includes(GROUP));
    expect(commits.length).toBeGreaterThan(0);
    const last = JSON.parse(commits[commits.length - 1]!.value) as { offset: number; metadata: string };
    expect(last.offset).toBe(N);
    expect(JSON.parse(last.metadata)).toEqual({ by: "tributary-mqtt-bridge", connection: "local", mqttTopic: RULE.mqttTopicText });
  }, 120_000);

  it("moves an old position file into the group on upgrade: neither republishes nor skips, then removes the file", async () => {
    const { mq, dataDir, start } = await setup(100, "latest");
    // The log as the old bridge left it: partition 0 sent up to offset 3 of 5, partition 1 all 5.
    let broker = await start(false);
    await createTopic(broker.url, 2);
    await produce(broker.url, [0, 1].flatMap((partition) => Array.from({ length: 5 }, (_, i) => ({ key: "d1", partition, value: { seq: partition * 100 + i } }))));
    await broker.stop();
    const legacyDir = join(dataDir, "mqtt-egress", `commands-${GROUP.slice(GROUP.lastIndexOf(".") + 1)}`);
    await mkdir(legacyDir, { recursive: true });
    await writeFile(join(legacyDir, "0.json"), JSON.stringify({ nextOffset: 3 }));
    await writeFile(join(legacyDir, "1.json"), JSON.stringify({ nextOffset: 5 }));

    const dev = await commandDevice(mq.url);
    broker = await start();
    await waitFor("both positions in the group", async () => ((await committed(broker.url, 0)) === 5 && (await committed(broker.url, 1)) === 5 ? true : undefined));
    expect(existsSync(join(dataDir, "mqtt-egress"))).toBe(false);
    // Delivery is in order per partition: once these arrive, nothing older can still be coming.
    await produce(broker.url, [{ key: "d1", partition: 0, value: { seq: 5 } }, { key: "d1", partition: 1, value: { seq: 105 } }]);
    await waitFor("the two new commands", () => (dev.seqs.includes(5) && dev.seqs.includes(105) ? true : undefined));
    expect([...dev.seqs].sort((a, b) => a - b)).toEqual([3, 4, 5, 105]);

    const commits = (await readPartition(broker.url, "__consumer_offsets", 0)).filter((r) => r.key?.includes(GROUP));
    const migrated = commits.map((r) => JSON.parse(r.value) as { offset: number; metadata: string }).filter((v) => v.metadata.includes("migratedFrom"));
    expect(migrated.map((v) => v.offset).sort()).toEqual([3, 5]);

    // A restart now goes by the group alone.
    await broker.stop();
    broker = await start();
    await waitFor("the group after the restart", async () => ((await describeGroup(broker.url))?.totalLag === 0 ? true : undefined));
    await produce(broker.url, [{ key: "d1", partition: 0, value: { seq: 6 } }]);
    await waitFor("the command after the restart", () => (dev.seqs.includes(6) ? true : undefined));
    expect([...dev.seqs].sort((a, b) => a - b)).toEqual([3, 4, 5, 6, 105]);
  }, 120_000);
});
