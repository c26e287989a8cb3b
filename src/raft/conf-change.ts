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

/** Layout: 1 byte type (0 add, 1 remove), then the node id as an unsigned 32-bit big-endian integer. */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  const out = new Uint8Array(5);
  out[0] = cc.type === "add-voter" ? 0 : 1;
  new DataView(out.buffer).setUint32(1, cc.nodeId);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  assert(data.byteLength === 5 && (data[0] === 0 || data[0] === 1), "a conf change entry is 5 bytes of type and id");
  const nodeId = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(1);
  return { type: data[0] === 0 ? "add-voter" : "remove-voter", nodeId };
}
