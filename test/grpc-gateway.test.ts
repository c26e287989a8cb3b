/**
 * The gRPC gateway in process on Node, through the typed client of gateways/grpc/client.ts (the
 * one devices and the benchmark use), and the pure pieces: offset runs, the error table.
 */
import { create } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Broker } from "../src/broker.ts";
import { defaultConfig } from "../src/config.ts";
import { ERROR_CODES } from "../src/errors.ts";
import { silentLogger } from "../src/logger.ts";
import { bidi, connect, serverStream, unary } from "../gateways/grpc/client.ts";
import { GRPC_STATUS } from "../gateways/grpc/errors.ts";
import { startGrpcGateway, type RunningGateway } from "../gateways/grpc/index.ts";
import { toOffsetRuns } from "../gateways/grpc/records.ts";
import { AdminService } from "../gateways/grpc/gen/tributary/v1/admin_pb.ts";
import { ConsumerService, type SubscribeResponse } from "../gateways/grpc/gen/tributary/v1/consumer_pb.ts";
import { ProducerService, ProduceStreamRequestSchema, type ProduceStreamResponse } from "../gateways/grpc/gen/tributary/v1/producer_pb.ts";

describe("offset runs", () => {
  it("fold consecutive offsets of one partition, in record order", () => {
    const runs = toOffsetRuns([
      { partition: 0, offset: 5 },
      { partition: 0, offset: 6 },
      { partition: 1, offset: 0 },
      { partition: 0, offset: 7 },
      { partition: 0, offset: 9 },
    ]);
    expect(runs).toEqual([
      { partition: 0, baseOffset: 5n, count: 2 },
      { partition: 1, baseOffset: 0n, count: 1 },
      { partition: 0, baseOffset: 7n, count: 1 },
      { partition: 0, baseOffset: 9n, count: 1 },
    ]);
    expect(toOffsetRuns([{ partition: 2, offset: -1 }, { partition: 2, offset: -1 }])).toEqual([{ partition: 2, baseOffset: -1n, count: 2 }]);
  });

  it("every error code has a gRPC status other than OK", () => {
    for (const code of ERROR_CODES) expect(GRPC_STATUS[code]).toBeGreaterThan(status.OK);
  });
});

describe("gRPC gateway in process, typed client", () => {
  let dir = "";
  let broker: Broker;
  let gateway: RunningGateway;
  const enc = new TextEncoder();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tributary-grpc-inproc-"));
    broker = await Broker.open(defaultConfig({ "data.dir": dir }), { logger: silentLogger });
    gateway = await startGrpcGateway(broker, { host: "127.0.0.1", port: 0, maxMessageBytes: 1 << 20, streamMaxInflight: 8, logger: silentLogger });
  });
  afterAll(async () => {
    await broker?.close();
    await gateway?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("creates, produces over a stream, and tails with generated message types", async () => {
    const client = connect(`127.0.0.1:${gateway.port}`);
    const { topic } = await unary(client, AdminService.method.createTopic, { name: "dev", partitions: 1 });
    expect(topic?.name).toBe("dev");

    const tail = serverStream(client, ConsumerService.method.subscribe, { topic: "dev", partition: 0, start: { case: "offset", value: 0n } });
    const tailed = new Promise<bigint[]>((resolve) => {
      const offsets: bigint[] = [];
      tail.on("data", (m: SubscribeResponse) => {
        offsets.push(...m.records.map((r) => r.offset));
        if (offsets.length >= 30) {
          tail.cancel();
          resolve(offsets);
        }
      });
      tail.on("error", () => {});
    });

    const stream = bidi(client, ProducerService.method.produceStream);
    const acks: ProduceStreamResponse[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on("data", (ack: ProduceStreamResponse) => acks.push(ack));
      stream.on("end", () => resolve());
      stream.on("error", reject);
    });
    for (let i = 0; i < 3; i++) {
      stream.write(create(ProduceStreamRequestSchema, { sequence: BigInt(i), topic: "dev", records: Array.from({ length: 10 }, (_, j) => ({ value: enc.encode(`${i}.${j}`) })) }));
    }
    stream.end();
    await done;
    expect(acks.map((a) => [a.sequence, a.runs[0]?.baseOffset, a.runs[0]?.count])).toEqual([
      [0n, 0n, 10],
      [1n, 10n, 10],
      [2n, 20n, 10],
    ]);
    expect(await tailed).toEqual(Array.from({ length: 30 }, (_, i) => BigInt(i)));

    const missing = await unary(client, AdminService.method.describeTopic, { name: "nope" }).catch((e: { code: number; metadata: { get(k: string): unknown[] } }) => e);
    expect("code" in missing && missing.code).toBe(status.NOT_FOUND);
    client.close();
  });
});
