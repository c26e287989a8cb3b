/**
 * MirrorService (proto/tributary/mirror/v1/mirror.proto) on the gRPC gateway: the central's end of
 * the edges' mirror links, over the broker's mirror methods (src/mirror/central.ts).
 *
 *   Open                 broker.mirrorOpen: bind the link's topics, answer positions (-1: none)
 *   Send                 one SendResponse per SendRequest, same sequence, once committed (acks=all);
 *                        flow-controlled as ProduceStream (acked-stream.ts, grpc.stream.max.inflight);
 *                        a refused send is a response with error_code/error_message (position -1),
 *                        and the stream goes on; acks of one source partition go out in order
 *   Positions            broker.mirrorPositions
 *   CommitGroupOffsets   broker.mirrorCommitGroupOffsets
 *
 * Served only by a broker in the central role (`mirror.central=true`); otherwise every call ends
 * with UNIMPLEMENTED and a message saying so (`mirrorServiceDisabled`). The ACL operation is
 * `mirror` on each target topic (auth.ts).
 */
import { Metadata, status, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { TributaryError } from "../../src/errors.ts";
import type { CentralSend } from "../../src/mirror/central.ts";
import type { GapReason as MirrorGapReason } from "../../src/mirror/types.ts";
import { serveAckedStream } from "./acked-stream.ts";
import { serverImplementation, type BidiCall, type CallContext, type ServiceHandlers } from "./bridge.ts";
import type { GrpcDeps } from "./deps.ts";
import { gatewayError } from "./errors.ts";
import {
  Compression,
  GapReason,
  MirrorService,
  type SendRequest,
  type SendRequestSchema,
  type SendResponseSchema,
} from "./gen/tributary/mirror/v1/mirror_pb.ts";

type Methods = typeof MirrorService extends { method: infer M } ? M : never;
type Ack = MessageInitShape<typeof SendResponseSchema>;

const UNREAD_SLACK_BYTES = 1024 * 1024;

export const GAP_REASONS: Readonly<Record<MirrorGapReason, GapReason>> = {
  "disk-budget": GapReason.DISK_BUDGET,
  retention: GapReason.RETENTION,
  "central-lost": GapReason.CENTRAL_LOST,
};

export const MIRROR_DISABLED_MESSAGE = "this broker is not a mirror central: MirrorService is served only with mirror.central=true";

export function mirrorHandlers(deps: GrpcDeps): ServiceHandlers<Methods> {
  const { broker } = deps;
  const streams = broker.metrics.gauge("tributary_grpc_mirror_streams_active", "Open MirrorService.Send streams");
  return {
    async open(req) {
      const welcome = await broker.mirrorOpen({
        link: req.link,
        cluster: req.cluster,
        topics: req.topics.map((b) => ({ sourceTopic: b.sourceTopic, sourceTopicId: b.sourceTopicId, target: b.target, partitions: b.partitions, config: { ...b.config } })),
      });
      return {
        topics: welcome.map((w) =>
          w.ok ? { sourceTopic: w.sourceTopic, targetTopicId: w.targetTopicId, positions: w.positions.map(toWire) } : { sourceTopic: w.sourceTopic, errorCode: w.code, message: w.message },
        ),
      };
    },
    send(stream, ctx) {
      streams.inc(undefined, 1);
      return sendStream(deps, stream, ctx).finally(() => streams.inc(undefined, -1));
    },
    async positions(req) {
      const topics = await broker.mirrorPositions(req.cluster, req.sourceTopics);
      return { topics: topics.map((t) => ({ ...t, positions: t.positions.map(toWire) })) };
    },
    async commitGroupOffsets(req) {
      const commits = req.offsets.map((o) => ({ group: o.group, sourceTopic: o.sourceTopic, partition: o.partition, sourceOffset: fromWire(o.sourceOffset, "source_offset"), metadata: o.metadata }));
      const results = await broker.mirrorCommitGroupOffsets(req.cluster, commits);
      return {
        results: results.map((r) => ({
          group: r.commit.group,
          sourceTopic: r.commit.sourceTopic,
          partition: r.commit.partition,
          targetOffset: r.ok ? BigInt(r.targetOffset) : -1n,
          pending: !r.ok && r.pending,
          errorCode: !r.ok && !r.pending ? r.code : "",
          errorMessage: !r.ok && !r.pending ? r.message : "",
        })),
      };
    },
  };
}

function sendStream(deps: GrpcDeps, stream: BidiCall<typeof SendRequestSchema, typeof SendResponseSchema>, ctx: CallContext): Promise<void> {
  // Acks of one source partition go out in the order of its sends, whatever order they finish in.
  const order = new Map<string, Promise<Ack>>();
  return serveAckedStream(stream, ctx, {
    maxInflight: deps.limits.streamMaxInflight,
    maxUnreadBytes: deps.limits.maxMessageBytes + UNREAD_SLACK_BYTES,
    logger: deps.logger,
    what: "MirrorService.Send",
    onPause: () => deps.metrics.streamPauses.inc(),
    answer(req) {
      const key = `${req.sourceTopic}/${req.partition}`;
      const result = appendOne(deps, req);
      const ordered = (order.get(key) ?? Promise.resolve(null)).then(() => result);
      order.set(key, ordered);
      void ordered.then(() => {
        if (order.get(key) === ordered) order.delete(key);
      });
      return ordered;
    },
  });
}

async function appendOne(deps: GrpcDeps, req: SendRequest): Promise<Ack> {
  try {
    const position = await deps.broker.mirrorAppend(toCentralSend(req));
    return { sequence: req.sequence, position: toWire(position) };
  } catch (e) {
    const err = gatewayError(e);
    if (err.code === "INTERNAL") deps.logger.error("mirror send failed", { topic: req.sourceTopic, partition: req.partition, error: e });
    deps.metrics.calls.inc({ method: "MirrorService.Send/send", code: err.code });
    return { sequence: req.sequence, position: -1n, errorCode: err.code, errorMessage: err.message };
  }
}

function toCentralSend(req: SendRequest): CentralSend {
  let compression: CentralSend["compression"];
  if (req.compression === Compression.GZIP) compression = "gzip";
  else if (req.compression === Compression.UNSPECIFIED) compression = "none";
  else throw new TributaryError("INVALID_REQUEST", `unknown compression ${String(req.compression)}`);
  const reasons = Object.entries(GAP_REASONS) as [MirrorGapReason, GapReason][];
  const gaps = req.gaps.map((g) => {
    const reason = reasons.find(([, wire]) => wire === g.reason)?.[0];
    if (!reason) throw new TributaryError("INVALID_REQUEST", `a gap needs a reason, got ${String(g.reason)}`);
    return { from: fromWire(g.from, "gap from"), to: fromWire(g.to, "gap to"), reason };
  });
  return {
    source: { cluster: req.cluster, topic: req.sourceTopic, partition: req.partition },
    fromOffset: fromWire(req.fromOffset, "from_offset"),
    payload: req.batches,
    compression,
    gaps,
  };
}

function toWire(position: number | null): bigint {
  return BigInt(position ?? -1);
}

function fromWire(v: bigint, field: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new TributaryError("INVALID_REQUEST", `${field} must be a non-negative offset, got ${v}`);
  return n;
}

/** MirrorService on a broker that is not a central: every call is UNIMPLEMENTED, saying why. */
export function mirrorServiceDisabled(): [ServiceDefinition, UntypedServiceImplementation] {
  const never = () => Promise.reject(new Error("invariant broken: a disabled service ran"));
  const [definition] = serverImplementation(MirrorService, { open: never, send: never, positions: never, commitGroupOffsets: never }, () => {});
  const error = () => ({ code: status.UNIMPLEMENTED, details: MIRROR_DISABLED_MESSAGE, metadata: new Metadata() });
  const impl: UntypedServiceImplementation = {};
  for (const key of Object.keys(definition)) {
    impl[key] = (call: { emit(event: "error", e: unknown): void }, callback?: (e: unknown) => void) => (callback ? callback(error()) : call.emit("error", error()));
  }
  return [definition, impl];
}
