/**
 * Dials TLS listeners through the clients we ship (`connect` from gateways/grpc/client.ts and
 * `GrpcMirrorSink`, both on gateways/grpc/channel.ts `dial`) and reports for each whether the
 * handshake was taken or refused, so a test can run the same probe in-process (Node) and as a
 * script under Bun, where TLS to an IP address used to fail on every handshake.
 *
 * Each listener is an empty grpc-js server (no services) with one leaf certificate: a call that
 * gets through the handshake is answered UNIMPLEMENTED (the sink makes that INVALID_CONFIG); a
 * refused handshake is UNAVAILABLE (the sink: PEER_UNAVAILABLE) with the TLS error in its message.
 *
 * usage: bun test/support/tls-dial-probe.ts <dir> <case.json>  (prints the outcomes as JSON)
 * `dir` holds ca.pem and each case's `<leaf>.pem`, `<leaf>.key` (pki.ts).
 */
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "../../gateways/grpc/client.ts";
import { GrpcMirrorSink } from "../../gateways/grpc/mirror-sink.ts";

export interface DialCase {
  /** Leaf certificate the listener serves. */
  leaf: string;
  /** Host the listener binds and the clients dial (`127.0.0.1`, `::1`, `localhost`). */
  host: string;
}

/** "connected", or "refused: <why>". */
export type DialOutcome = string;

export interface DialResult {
  client: DialOutcome;
  sink: DialOutcome;
}

const RAW = (b: Buffer): Buffer => b;

function listen(dir: string, c: DialCase): Promise<{ server: grpc.Server; address: string }> {
  const pem = (n: string) => readFileSync(join(dir, n));
  const server = new grpc.Server();
  // Root certificates although no client certificate is asked for: without them Deno's grpc-js
  // server answers the handshake with plain text ("wrong version number").
  const creds = grpc.ServerCredentials.createSsl(pem("ca.pem"), [{ cert_chain: pem(`${c.leaf}.pem`), private_key: pem(`${c.leaf}.key`) }], false);
  const host = c.host.includes(":") ? `[${c.host}]` : c.host;
  return new Promise((resolve, reject) =>
    server.bindAsync(`${host}:0`, creds, (err, port) => (err ? reject(err) : resolve({ server, address: `${host}:${port}` }))),
  );
}

function viaClient(address: string, ca: Buffer): Promise<DialOutcome> {
  const client = connect(address, {}, { ca });
  return new Promise((resolve) => {
    client.makeUnaryRequest("/probe.v1.Probe/Ping", RAW, RAW, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err) => {
      client.close();
      if (err?.code === grpc.status.UNIMPLEMENTED) resolve("connected");
      else resolve(`refused: ${err ? `${grpc.status[err.code]} ${err.details}` : "answered"}`);
    });
  });
}

async function viaSink(address: string, ca: Buffer): Promise<DialOutcome> {
  const sink = new GrpcMirrorSink({ address, tls: { ca: ca.toString() }, deadlineMs: 5_000 });
  try {
    await sink.positions("probe");
    return "refused: answered";
  } catch (e) {
    const code = (e as { code?: string }).code;
    return code === "INVALID_CONFIG" ? "connected" : `refused: ${code} ${(e as Error).message}`;
  } finally {
    await sink.close();
  }
}

export async function probeDial(dir: string, cases: Record<string, DialCase>): Promise<Record<string, DialResult>> {
  const ca = readFileSync(join(dir, "ca.pem"));
  const out: Record<string, DialResult> = {};
  for (const [name, c] of Object.entries(cases)) {
    const { server, address } = await listen(dir, c);
    try {
      out[name] = { client: await viaClient(address, ca), sink: await viaSink(address, ca) };
    } finally {
      server.forceShutdown();
    }
  }
  return out;
}

if ((import.meta as { main?: boolean }).main) {
  const [dir, casesJson] = process.argv.slice(2);
  if (!dir || !casesJson) throw new Error("usage: tls-dial-probe.ts <dir> <cases as JSON>");
  console.log(JSON.stringify(await probeDial(dir, JSON.parse(casesJson) as Record<string, DialCase>)));
  process.exit(0);
}
