/** The controller's state machine: commands, events, refusals, replay, codecs and snapshots. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ClusterMetadata, decodeCommand, encodeCommand, type MetaCommand } from "../src/cluster/metadata.ts";
import { EntryType } from "../src/raft/index.ts";
import type { TopicRecord } from "../src/topic-metadata.ts";
import { codeOf } from "./support/errors.ts";

const enc = new TextEncoder();

function record(name: string, partitions = 3, id = `id${name.replace(/[^a-z0-9]/gi, "")}`): TopicRecord {
  return { name, id, partitions, config: {}, createdAtMs: 1000 };
}

function withPeers(...ids: number[]): ClusterMetadata {
  const md = new ClusterMetadata();
  ids.forEach((id, i) => md.apply(i + 1, { type: "add-peer", peer: { id, address: `10.0.0.${id}:9093` } }));
  return md;
}

describe("ClusterMetadata commands", () => {
  it("creates a topic with placement computed at apply and says what changed", () => {
    const md = withPeers(1, 2, 3);
    const r = md.apply(4, { type: "create-topic", record: record("telemetry"), replicationFactor: 3 });
    expect(r).toEqual({
      ok: true,
      event: { type: "topic-created", topic: { record: record("telemetry"), replicas: [[1, 2, 3], [2, 3, 1], [3, 1, 2]] } },
    });
    expect(md.replicasOf("telemetry", 1)).toEqual([2, 3, 1]);
    expect(md.replicasOf("telemetry", 3)).toBeUndefined();
    expect(md.topic("telemetry")?.record.partitions).toBe(3);
    expect(md.appliedIndex).toBe(4);
  });

  it("moves the placement cursor so successive topics do not all lead on the first peer", () => {
    const md = withPeers(1, 2, 3);
    const leaders: number[] = [];
    for (let i = 0; i < 6; i++) {
      md.apply(10 + i, { type: "create-topic", record: record(`t${i}`, 1), replicationFactor: 2 });
      leaders.push(md.replicasOf(`t${i}`, 0)![0]!);
    }
    expect(leaders).toEqual([1, 2, 3, 1, 2, 3]);
  });

  it("refuses invalid commands without changing anything but the applied index", async () => {
    const md = withPeers(1, 2);
    md.apply(3, { type: "create-topic", record: record("a"), replicationFactor: 2 });
    const before = md.snapshot();
    const refusals: [MetaCommand, string][] = [
      [{ type: "create-topic", record: record("a", 1, "other"), replicationFactor: 1 }, "TOPIC_EXISTS"],
      [{ type: "create-topic", record: record("b"), replicationFactor: 3 }, "INVALID_PARTITIONS"],
      [{ type: "create-topic", record: record("c", 0), replicationFactor: 1 }, "INVALID_PARTITIONS"],
      [{ type: "create-topic", record: record("bad name"), replicationFactor: 1 }, "INVALID_TOPIC_NAME"],
      [{ type: "create-topic", record: record("d", 1, "ida"), replicationFactor: 1 }, "INVALID_REQUEST"],
      [{ type: "delete-topic", name: "missing" }, "TOPIC_NOT_FOUND"],
      [{ type: "remove-peer", id: 9 }, "INVALID_REQUEST"],
      [{ type: "remove-peer", id: 1 }, "INVALID_REQUEST"], // still holds replicas of a
      [{ type: "add-peer", peer: { id: 3, address: "10.0.0.1:9093" } }, "INVALID_REQUEST"], // address taken
      [{ type: "add-peer", peer: { id: 0, address: "x:1" } }, "INVALID_REQUEST"],
    ];
    let index = 4;
    for (const [cmd, code] of refusals) {
      const r = md.apply(index++, cmd);
      expect(r.ok ? "ok" : r.error.code, JSON.stringify(cmd)).toBe(code);
    }
    const after = JSON.parse(new TextDecoder().decode(md.snapshot())) as { appliedIndex: number };
    expect(after.appliedIndex).toBe(index - 1);
    expect({ ...after, appliedIndex: 3 }).toEqual(JSON.parse(new TextDecoder().decode(before)));
    expect(await codeOf(() => decodeCommand(enc.encode("{")))).toBe("INVALID_REQUEST");
  });

  it("deletes a topic, handing back its record and replicas", () => {
    const md = withPeers(1, 2);
    md.apply(3, { type: "create-topic", record: record("a", 2), replicationFactor: 1 });
    const r = md.apply(4, { type: "delete-topic", name: "a" });
    expect(r).toEqual({ ok: true, event: { type: "topic-deleted", topic: { record: record("a", 2), replicas: [[1], [2]] } } });
    expect(md.topics()).toEqual([]);
  });

  it("keeps peers sorted, changes an address on a second add, and removes a peer holding nothing", () => {
    const md = withPeers(3, 1);
    const r = md.apply(3, { type: "add-peer", peer: { id: 3, address: "moved:9093" } });
    expect(r).toEqual({ ok: true, event: { type: "peers-changed", peers: [{ id: 1, address: "10.0.0.1:9093" }, { id: 3, address: "moved:9093" }] } });
    expect(md.apply(4, { type: "remove-peer", id: 1 })).toEqual({ ok: true, event: { type: "peers-changed", peers: [{ id: 3, address: "moved:9093" }] } });
  });

  it("ignores an index it already applied (a replay after restart)", () => {
    const md = withPeers(1);
    const cmd: MetaCommand = { type: "create-topic", record: record("a", 1), replicationFactor: 1 };
    expect(md.apply(2, cmd).ok).toBe(true);
    expect(md.apply(2, cmd)).toEqual({ ok: true, event: null });
    expect(md.apply(1, { type: "delete-topic", name: "a" })).toEqual({ ok: true, event: null });
    expect(md.topic("a")).toBeDefined();
  });

  it("applies Raft entries: no-ops and conf changes move the index, bad bytes are refused alike everywhere", () => {
    const md = withPeers(1);
    expect(md.applyEntry({ term: 1, index: 2, type: EntryType.Normal, data: new Uint8Array(0) })).toEqual({ ok: true, event: null });
    expect(md.applyEntry({ term: 1, index: 3, type: EntryType.ConfChange, data: new Uint8Array(7) })).toEqual({ ok: true, event: null });
    const bad = md.applyEntry({ term: 1, index: 4, type: EntryType.Normal, data: enc.encode('{"v":1,"type":"rename-topic"}') });
    expect(bad.ok ? "ok" : bad.error.code).toBe("INVALID_REQUEST");
    const cmd = encodeCommand({ type: "delete-topic", name: "x" });
    const r = md.applyEntry({ term: 1, index: 5, type: EntryType.Normal, data: cmd });
    expect(r.ok ? "ok" : r.error.code).toBe("TOPIC_NOT_FOUND");
    expect(md.appliedIndex).toBe(5);
  });
});

// ---- codecs ----

const nameArb = fc.stringMatching(/^[a-z][a-z0-9._-]{0,20}$/);
const recordArb = fc.record({
  name: nameArb,
  id: fc.stringMatching(/^[0-9a-f]{16}$/),
  partitions: fc.integer({ min: 1, max: 20 }),
  config: fc.dictionary(fc.constantFrom("retention.ms", "cleanup.policy", "segment.bytes"), fc.string({ maxLength: 10 })),
  createdAtMs: fc.nat(),
});
const peerArb = fc.record({ id: fc.integer({ min: 1, max: 9 }), address: fc.stringMatching(/^[a-z]{1,8}:[0-9]{2,5}$/) });
const commandArb: fc.Arbitrary<MetaCommand> = fc.oneof(
  fc.record({ type: fc.constant("create-topic" as const), record: recordArb, replicationFactor: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ type: fc.constant("delete-topic" as const), name: nameArb }),
  fc.record({ type: fc.constant("add-peer" as const), peer: peerArb }),
  fc.record({ type: fc.constant("remove-peer" as const), id: fc.integer({ min: 1, max: 9 }) }),
);

describe("ClusterMetadata codecs", () => {
  it("decodes what it encodes", () => {
    fc.assert(
      fc.property(commandArb, (cmd) => {
        expect(decodeCommand(encodeCommand(cmd))).toEqual(cmd);
      }),
    );
  });

  it("restores from a snapshot the state it was taken of, at any point of any command sequence", () => {
    fc.assert(
      fc.property(fc.array(commandArb, { maxLength: 40 }), fc.nat(), (cmds, cut) => {
        const md = new ClusterMetadata();
        const at = cmds.length === 0 ? 0 : cut % (cmds.length + 1);
        cmds.slice(0, at).forEach((c, i) => md.apply(i + 1, c));
        const copy = ClusterMetadata.restore(md.snapshot());
        expect(copy.snapshot()).toEqual(md.snapshot());
        expect(copy.topics()).toEqual(md.topics());
        expect(copy.peers()).toEqual(md.peers());
        expect(copy.appliedIndex).toBe(md.appliedIndex);
        expect(copy.nextPlacement).toBe(md.nextPlacement);
        // The copy goes on exactly as the original does.
        cmds.slice(at).forEach((c, i) => expect(copy.apply(at + i + 1, c)).toEqual(md.apply(at + i + 1, c)));
        expect(copy.snapshot()).toEqual(md.snapshot());
      }),
    );
  });

  it("refuses a damaged snapshot as CORRUPT_RECORD", async () => {
    expect(await codeOf(() => ClusterMetadata.restore(enc.encode('{"v":1,"peers":[]}')))).toBe("CORRUPT_RECORD");
    expect(await codeOf(() => ClusterMetadata.restore(new Uint8Array([0xff])))).toBe("CORRUPT_RECORD");
  });
});

// ---- reassignment ----

describe("ClusterMetadata reassignment", () => {
  const move = (type: "reassign-partition" | "complete-reassignment", replicas: number[], partition = 0, name = "a"): MetaCommand => ({ type, name, topicId: `id${name}`, partition, replicas });

  it("records a move's target, then on completion makes it the replicas", () => {
    const md = withPeers(1, 2, 3, 4);
    md.apply(5, { type: "create-topic", record: record("a", 2), replicationFactor: 3 });
    const before = md.topic("a")!.replicas;
    const r = md.apply(6, move("reassign-partition", [1, 2, 4]));
    expect(r.ok && r.event?.type).toBe("replicas-changed");
    expect(md.topic("a")!.targets).toEqual([[1, 2, 4], null]);
    expect(md.topic("a")!.replicas).toEqual(before);
    // The same move again is no change; another one while it runs is refused.
    expect(md.apply(7, move("reassign-partition", [1, 2, 4])).ok).toBe(true);
    expect(md.apply(8, move("reassign-partition", [2, 3, 4]))).toMatchObject({ ok: false, error: { code: "INVALID_REQUEST" } });
    // Peer 4 is to hold a replica, peer 3 still does: neither may leave.
    expect(md.apply(9, { type: "remove-peer", id: 4 })).toMatchObject({ ok: false });
    expect(md.apply(10, move("complete-reassignment", [2, 3, 4]))).toMatchObject({ ok: false, error: { code: "INVALID_REQUEST" } });
    expect(md.apply(11, move("complete-reassignment", [1, 2, 4])).ok).toBe(true);
    expect(md.topic("a")!.replicas).toEqual([[1, 2, 4], before[1]]);
    expect(md.topic("a")!.targets).toBeUndefined();
    // A retried completion finds it done.
    expect(md.apply(12, move("complete-reassignment", [1, 2, 4])).ok).toBe(true);
    const copy = ClusterMetadata.restore(md.snapshot());
    expect(copy.topics()).toEqual(md.topics());
  });

  it("refuses a move to no peers, to a peer twice, to a non-member, of another topic id or a missing partition", () => {
    const md = withPeers(1, 2, 3);
    md.apply(4, { type: "create-topic", record: record("a", 1), replicationFactor: 3 });
    const refusals: [MetaCommand, string][] = [
      [move("reassign-partition", []), "INVALID_REQUEST"],
      [move("reassign-partition", [1, 1, 2]), "INVALID_REQUEST"],
      [move("reassign-partition", [1, 2, 9]), "INVALID_REQUEST"],
      [{ ...move("reassign-partition", [1, 2]), topicId: "other" } as MetaCommand, "TOPIC_NOT_FOUND"],
      [move("reassign-partition", [1, 2], 1), "INVALID_PARTITIONS"],
    ];
    const before = md.snapshot();
    refusals.forEach(([cmd, code], i) => {
      const r = md.apply(10 + i, cmd);
      expect(r.ok ? "ok" : r.error.code).toBe(code);
    });
    expect(ClusterMetadata.restore(md.snapshot()).topics()).toEqual(ClusterMetadata.restore(before).topics());
  });

  it("restores moves under way from a snapshot, and goes on as the original, for any sequence of moves", () => {
    const moveArb: fc.Arbitrary<MetaCommand> = fc.record({
      type: fc.constantFrom("reassign-partition" as const, "complete-reassignment" as const),
      name: fc.constantFrom("a", "b"),
      topicId: fc.constantFrom("ida", "idb"),
      partition: fc.integer({ min: 0, max: 2 }),
      replicas: fc.uniqueArray(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }),
    });
    fc.assert(
      fc.property(fc.array(moveArb, { maxLength: 30 }), fc.nat(), (cmds, cut) => {
        const md = withPeers(1, 2, 3, 4);
        md.apply(5, { type: "create-topic", record: record("a", 2), replicationFactor: 3 });
        md.apply(6, { type: "create-topic", record: record("b", 3), replicationFactor: 2 });
        const at = cut % (cmds.length + 1);
        cmds.slice(0, at).forEach((c, i) => md.apply(10 + i, c));
        expect(decodeCommand(encodeCommand(cmds[0] ?? move("reassign-partition", [1])))).toEqual(cmds[0] ?? move("reassign-partition", [1]));
        const copy = ClusterMetadata.restore(md.snapshot());
        expect(copy.topics()).toEqual(md.topics());
        cmds.slice(at).forEach((c, i) => expect(copy.apply(10 + at + i, c)).toEqual(md.apply(10 + at + i, c)));
        expect(copy.snapshot()).toEqual(md.snapshot());
        // No two replicas of a partition on one peer, in replicas and in targets.
        for (const t of md.topics()) for (const rs of [...t.replicas, ...(t.targets ?? [])]) if (rs) expect(new Set(rs).size).toBe(rs.length);
      }),
    );
  });
});
