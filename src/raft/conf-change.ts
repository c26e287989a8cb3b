/**
 * Single-server membership changes (Raft thesis §4.1): add or remove one voter at a time, so
 * any two consecutive configurations share a majority and no joint consensus is needed. A change
 * is an entry like any other and takes effect on each node when that node applies it; the leader
 * refuses a second change until the first is applied, and a new leader first applies its own
 * no-op entry (which fixes the single-server bug Ongaro described in 2015).
 */
import { assert } from "../errors.ts";
import type { NodeId } from "./messages.ts";

export type ConfChangeType = "add-voter" | "remove-voter";

export interface ConfChange {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
}

/**
 * A change as it sits in the log: the change and the voters it results in. Carrying the whole
 * resulting set makes each entry self-contained, so a node that joins with an empty log (it was
 * not in the bootstrap configuration, which lives in config rather than in the log) learns the
 * configuration by applying the entry that added it.
 *
 * Layout: 1 byte type (0 add, 1 remove), u32 node id, u16 voter count, then each voter as u32
 * (big-endian throughout).
 */
export interface ConfChangeEntry extends ConfChange {
  readonly voters: readonly NodeId[];
}

export function encodeConfChange(cc: ConfChangeEntry): Uint8Array {
  const out = new Uint8Array(7 + 4 * cc.voters.length);
  const view = new DataView(out.buffer);
  out[0] = cc.type === "add-voter" ? 0 : 1;
  view.setUint32(1, cc.nodeId);
  view.setUint16(5, cc.voters.length);
  cc.voters.forEach((id, i) => view.setUint32(7 + 4 * i, id));
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChangeEntry {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  assert(data.byteLength >= 7 && (data[0] === 0 || data[0] === 1), "a conf change entry starts with type, id and count");
  const count = view.getUint16(5);
  assert(data.byteLength === 7 + 4 * count, "a conf change entry holds exactly its voters");
  const voters = Array.from({ length: count }, (_, i) => view.getUint32(7 + 4 * i));
  return { type: data[0] === 0 ? "add-voter" : "remove-voter", nodeId: view.getUint32(1), voters };
}
