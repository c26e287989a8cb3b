/**
 * Whole brokers of a cluster in one process, for tests (and the edge's mirror on each, into an
 * in-memory central): each peer on its own in-memory disk
 * (`MemFileSystem`, which a test may power-cut), all on one simulated network
 * (src/cluster/mem-transport.ts) with a fast tick, each with a seeded random source.
 *
 * @example
 *   const network = simNetwork();
 *   const peers = simPeers(3);
 *   await Promise.all(peers.map((p) => openSimPeer(p, network, { "mirror.central": "true" })));
 */
import { Broker } from "../../src/broker.ts";
import { MemNetwork, type NetEvent } from "../../src/cluster/mem-transport.ts";
import type { Transport } from "../../src/cluster/types.ts";
import { defaultConfig } from "../../src/config.ts";
import { createLogger, silentLogger, type Logger } from "../../src/logger.ts";
import { systemClock } from "../../src/runtime/clock.ts";
import { MemFileSystem } from "../../src/runtime/mem-fs.ts";
import { brokerMirrorHost } from "../../src/mirror/broker-host.ts";
import { parseMirrorConfig } from "../../src/mirror/config.ts";
import { MirrorEdge } from "../../src/mirror/edge.ts";
import type { MemCentral } from "../../src/mirror/mem-sink.ts";
import { rng } from "./random.ts";
import { waitFor } from "./wait.ts";

export interface SimPeer {
  readonly id: number;
  fs: MemFileSystem;
  broker: Broker | null;
}

/** `cluster.peers` of peers 1 to n on the simulated network. */
export const simPeersSetting = (n = 3): string => Array.from({ length: n }, (_, i) => `${i + 1}@sim:${i + 1}`).join(",");

/** `trace` sees every delivery as it happens: a test may cut a link at an exact moment from it. */
export function simNetwork(seed = 7, trace?: (event: NetEvent) => void): MemNetwork {
  return new MemNetwork({ clock: systemClock, random: rng(seed), minDelayMs: 0, maxDelayMs: 1, ...(trace ? { trace } : {}) });
}

export function simPeers(n = 3): SimPeer[] {
  return Array.from({ length: n }, (_, i) => ({ id: i + 1, fs: new MemFileSystem(), broker: null }));
}

/** Open (or reopen, after a crash) peer `p`'s broker on its disk; `settings` win over the test defaults. */
export async function openSimPeer(
  p: SimPeer,
  network: MemNetwork,
  settings: Record<string, string> = {},
  options: { peers?: number; logger?: Logger; transport?: Transport } = {},
): Promise<Broker> {
  const config = defaultConfig({
    "cluster.node.id": String(p.id),
    "cluster.peers": simPeersSetting(options.peers ?? 3),
    "cluster.tick.ms": "10",
    "data.dir": "/data",
    "cluster.request.timeout.ms": "5000",
    ...settings,
  });
  p.broker = await Broker.open(config, {
    fs: p.fs,
    logger: options.logger ?? createLogger("error"),
    cluster: { transport: options.transport ?? network.transport(p.id), random: rng(p.id * 31) },
  });
  return p.broker;
}

/** Create a topic through `via`, retrying while the cluster cannot yet (no controller leader); done once it exists. */
export async function createTopicWhenReady(via: Broker, name: string, partitions: number): Promise<void> {
  await waitFor(`the topic ${name} created`, async () => {
    try {
      await via.createTopic(name, partitions);
      return true;
    } catch {
      return via.listTopics().some((t) => t.name === name);
    }
  });
}

/** One link `to-dc` carrying `telemetry` from edge cluster `site7` into `central`. */
export const SIM_MIRROR_CONFIG = { links: [{ name: "to-dc", central: { address: "dc:8481" }, topics: { include: ["telemetry"] }, uplink: { bytesPerSecond: 10_000_000 } }] };

/** The edge's mirror on `broker` (started, not awaited: it runs where this peer leads __mirror_checkpoints). */
export function startSimEdge(broker: Broker, central: MemCentral, seed: number): MirrorEdge {
  const edge = new MirrorEdge({
    clusterId: "site7",
    config: parseMirrorConfig(SIM_MIRROR_CONFIG, "site7"),
    host: brokerMirrorHost(broker),
    sinkFor: () => central.connect(),
    clock: systemClock,
    random: rng(seed),
    logger: silentLogger,
    checkpointIntervalMs: 20,
  });
  void edge.start();
  return edge;
}
