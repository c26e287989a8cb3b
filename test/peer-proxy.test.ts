/**
 * Peer links through an HTTP CONNECT proxy (`grpc_proxy`): the client side of the peer wire
 * (gateways/peer/h2-client.ts) tunnels, then speaks HTTP/2 on the tunnel. An HTTP/2 server sends
 * its SETTINGS as soon as it accepts, so a proxy may hand the client its 200 reply and those
 * SETTINGS in one read. Bun's HTTP/2 client never saw bytes pushed back onto the socket, and the
 * connect timed out after 5 s; under load, peers of a test cluster behind proxies took 5 to 15 s
 * to connect at start. Both tests failed on Bun before the fix (the plain proxy too: on loopback
 * the server's SETTINGS follow the 200 closely enough to share its read). The dial runs in-process (Node) and as a script under Bun and Deno
 * (support/peer-dial-probe.ts), through a real proxy process-side (support/connect-proxy.ts) to a
 * real HTTP/2 server on loopback that echoes what it is sent.
 */
import { execFile } from "node:child_process";
import * as http2 from "node:http2";
import { once } from "node:events";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./support/broker-process.ts";
import { startConnectProxy, type ConnectProxy } from "./support/connect-proxy.ts";
import { probePeerDial, type DialReport } from "./support/peer-dial-probe.ts";

const run = promisify(execFile);
/** More than one HTTP/2 window and several socket reads: the echo crosses the tunnel's flow control both ways. */
const BYTES = 1 << 20;

let server: http2.Http2Server;
let address = "";
const proxies: ConnectProxy[] = [];

beforeAll(async () => {
  server = http2.createServer();
  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    stream.respond({ ":status": 200 });
    stream.pipe(stream);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  address = `127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  for (const p of proxies) await p.close();
  server.close();
});

async function proxyUrl(replyWithFirstBytes: boolean): Promise<string> {
  const p = await startConnectProxy({ route: (host, port) => `${host}:${port}`, replyWithFirstBytes });
  proxies.push(p);
  return `http://127.0.0.1:${p.port}`;
}

async function dialUnder(runtime: "node" | "bun" | "deno", grpcProxy: string): Promise<DialReport> {
  if (runtime === "node") {
    const saved = process.env.grpc_proxy;
    process.env.grpc_proxy = grpcProxy;
    try {
      return await probePeerDial(address, BYTES);
    } finally {
      if (saved === undefined) delete process.env.grpc_proxy;
      else process.env.grpc_proxy = saved;
    }
  }
  const script = "test/support/peer-dial-probe.ts";
  const args = runtime === "bun" ? [script, address, String(BYTES)] : ["run", "-A", script, address, String(BYTES)];
  const env = { ...process.env, grpc_proxy: grpcProxy, no_grpc_proxy: "", DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };
  const { stdout } = await run(`${REPO_ROOT}/node_modules/.bin/${runtime}`, args, { cwd: REPO_ROOT, timeout: 30_000, env });
  return JSON.parse(stdout) as DialReport;
}

const whole: DialReport = { session: "up", echoed: BYTES, same: true };

describe.each(["node", "bun", "deno"] as const)("a peer session through a CONNECT proxy, on %s", (runtime) => {
  it("comes up and carries a 1 MiB echo when the proxy's 200 and the server's SETTINGS arrive in one read", async () => {
    expect(await dialUnder(runtime, await proxyUrl(true))).toEqual(whole);
  }, 30_000);

  it("comes up and carries a 1 MiB echo through a proxy that replies, then pipes (on loopback the SETTINGS often share the 200's read too)", async () => {
    expect(await dialUnder(runtime, await proxyUrl(false))).toEqual(whole);
  }, 30_000);
});
