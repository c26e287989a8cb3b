/**
 * Opens a peer session (gateways/peer/h2-client.ts `PeerConnection`) to `address` through the HTTP
 * CONNECT proxy in `grpc_proxy`, POSTs `bytes` bytes on it and reports whether the session came up
 * and the echo came back whole, so a test can run the same dial in-process (Node) and as a script
 * under Bun and Deno, whose HTTP/2 clients read a tunnelled socket differently.
 *
 * The target is any HTTP/2 server that echoes a request's body.
 *
 * usage: bun test/support/peer-dial-probe.ts <host:port> <bytes>  (prints a DialReport as JSON)
 */
import { createHash } from "node:crypto";
import { PeerConnection } from "../../gateways/peer/h2-client.ts";
import { systemClock } from "../../src/runtime/clock.ts";

export interface DialReport {
  /** "up", or the error the connect failed with. */
  session: string;
  /** The echo's length and whether its digest is the body's. */
  echoed: number;
  same: boolean;
}

export async function probePeerDial(address: string, bytes: number): Promise<DialReport> {
  const conn = new PeerConnection(address, { credentials: null, clock: systemClock, random: Math.random, maxSessionBytes: 16 << 20 });
  try {
    const session = await conn.session();
    const body = new Uint8Array(bytes).map((_, i) => (i * 31 + 7) & 0xff);
    const req = session.request({ ":method": "POST", ":path": "/echo" });
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    const ended = new Promise<void>((resolve, reject) => {
      req.once("end", resolve);
      req.once("error", reject);
    });
    req.end(body);
    await ended;
    const echo = Buffer.concat(chunks);
    const digest = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
    return { session: "up", echoed: echo.length, same: digest(echo) === digest(body) };
  } catch (e) {
    return { session: (e as Error).message, echoed: 0, same: false };
  } finally {
    conn.close();
  }
}

if ((import.meta as { main?: boolean }).main) {
  const [address, bytes] = process.argv.slice(2);
  console.log(JSON.stringify(await probePeerDial(address!, Number(bytes))));
  process.exit(0);
}
