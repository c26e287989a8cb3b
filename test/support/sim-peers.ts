/**
 * Whole brokers of a cluster in one process, for tests: each peer on its own in-memory disk
 * (`MemFileSystem`, which a test may power-cut), all on one simulated network
 * (src/cluster/mem-transport.ts) with a fast tick, each with a seeded random source.
 *
 * @example
 *   const network = simNetwork();
 *   const peers = simPeers(3);
 *   await Promise.all(peers.map((p) => openSimPeer(p, network, { "mirror.central": "true" })));
 */
import { Broker } from "../../src/broker.ts";
import { MemNetwork } from "../../src/cluster/mem-transport.ts";
import type { Transport } from "../../src/cluster/types.ts";
import { defaultConfig } from "../../src/config.ts";
import { createLogger, type Logger } from "../../src/logger.ts";
import { systemClock } from "../../src/runtime/clock.ts";
import { MemFileSystem } from "../../src/runtime/mem-fs.ts";
import { rng } from "./random.ts";

export interface SimPeer {
  readonly id: number;
  fs: MemFileSystem;
  broker: Broker | null;
}

/** `cluster.peers` of peers 1 to n on the simulated network. */
export const simPeersSetting = (n = 3): string => Array.from({ length: n }, (_, i) => `${i + 1}@sim:${i + 1}`).join(",");

export function simNetwork(seed = 7): MemNetwork {
  return new MemNetwork({ clock: systemClock, random: rng(seed), minDelayMs: 0, maxDelayMs: 1 });
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
