/**
 * The TCP fault proxy (test/support/fault-proxy.ts) against real sockets on loopback: an echo
 * server, and a sink that counts and hashes what it receives and can send to its clients. Every
 * wait is for a condition; where a test must show that something does NOT happen (bytes while
 * stalled), it waits for the proxy to report holding them, or for a control transfer of the
 * same size through an unfaulted proxy to finish.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createHash, type Hash } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";
import { once } from "node:events";
import { faultGroup, startFaultProxy, type FaultProxy, type FaultProxyOptions } from "./support/fault-proxy.ts";
import { freePort } from "./support/ports.ts";
import { rng } from "./support/random.ts";
import { waitFor } from "./support/wait.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** What one socket received, and how it ended. */
class Recorder {
  bytes = 0;
  private readonly hash: Hash = createHash("sha256");
  private readonly chunks: Buffer[] = [];
  firstAtMs = -1;
  firstBytes = 0;
  lastAtMs = -1;
  error: NodeJS.ErrnoException | null = null;
  ended = false;
  closed = false;

  constructor(
    readonly socket: Socket,
    private readonly keepBytes: boolean,
  ) {
    socket.on("data", (b: Buffer) => {
      const now = performance.now();
      if (this.firstAtMs < 0) {
        this.firstAtMs = now;
        this.firstBytes = b.length;
      }
      this.lastAtMs = now;
      this.bytes += b.length;
      this.hash.update(b);
      if (keepBytes) this.chunks.push(b);
    });
    socket.on("end", () => (this.ended = true));
    socket.on("error", (e: NodeJS.ErrnoException) => (this.error = e));
    socket.on("close", () => (this.closed = true));
  }

  digest(): string {
    return this.hash.digest("hex");
  }

  text(): string {
    if (!this.keepBytes) throw new Error("this recorder keeps no bytes");
    return Buffer.concat(this.chunks).toString("utf8");
  }

  /** Bytes per second from the first data event to the last, not counting the first event's bytes. */
  rate(): number {
    return ((this.bytes - this.firstBytes) * 1000) / (this.lastAtMs - this.firstAtMs);
  }
}

const servers: Server[] = [];
const proxies: FaultProxy[] = [];
/** Client sockets and the servers' sides of connections, destroyed after each test. */
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

async function listen(server: Server): Promise<number> {
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const addr = server.address();
  return typeof addr === "object" && addr ? addr.port : 0;
}

/** Echoes every byte; ends its side when the client ends. */
async function startEcho(): Promise<{ port: number; open: () => number }> {
  const open = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    open.add(s);
    s.on("error", () => {});
    s.on("close", () => open.delete(s));
    s.pipe(s);
  });
  return { port: await listen(server), open: () => open.size };
}

/** Records what each connection receives; `conns[i].socket` sends to that client. */
async function startSink(): Promise<{ port: number; conns: Recorder[] }> {
  const conns: Recorder[] = [];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    s.setNoDelay(true);
    conns.push(new Recorder(s, false));
  });
  return { port: await listen(server), conns };
}

async function proxyTo(port: number, options: Partial<FaultProxyOptions> = {}): Promise<FaultProxy> {
  const proxy = await startFaultProxy({ target: `127.0.0.1:${port}`, ...options });
  proxies.push(proxy);
  return proxy;
}

/** A client socket, recorded from its first event on (an immediate reset included). */
function open(port: number, keepBytes = true): Recorder {
  const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  socket.setNoDelay(true);
  sockets.push(socket);
  return new Recorder(socket, keepBytes);
}

async function dial(port: number, keepBytes = true): Promise<Recorder> {
  const r = open(port, keepBytes);
  await once(r.socket, "connect");
  return r;
}

function payload(seed: number, bytes: number): Buffer {
  const next = rng(seed);
  const words = new Uint32Array(bytes / 4);
  for (let i = 0; i < words.length; i++) words[i] = Math.floor(next() * 2 ** 32);
  return Buffer.from(words.buffer);
}

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** A client whose echo of `text` came back: the path through the proxy works. */
async function echoes(port: number, text: string): Promise<Recorder> {
  const c = await dial(port);
  c.socket.write(text);
  await waitFor(`the echo of ${JSON.stringify(text)}`, () => c.bytes >= text.length || c.closed, 5000);
  expect(c.text()).toBe(text);
  return c;
}

/** A client the proxy refuses: accepted by the kernel, then reset before any byte comes back. */
async function refused(port: number): Promise<Recorder> {
  const c = open(port);
  c.socket.write("x");
  await waitFor("the refused connection to close", () => c.closed, 5000);
  expect(c.bytes).toBe(0);
  return c;
}

describe("fault proxy", () => {
  it("is a byte-exact pipe both ways, and forwards the half-close", async () => {
    const echo = await startEcho();
    const proxy = await proxyTo(echo.port);
    const data = payload(1, 8 * MiB);
    const c = await dial(proxy.port);
    c.socket.end(data);
    await waitFor("the whole echo and its FIN", () => c.ended, 15_000);
    expect(c.error).toBeNull();
    expect(c.bytes).toBe(data.length);
    expect(c.digest()).toBe(sha256(data));
    expect(proxy.stats()).toMatchObject({ connections: 1, bytesAtoB: data.length, bytesBtoA: data.length, dropped: 0 });
    await waitFor("the connection to close on both sides", () => proxy.stats().open === 0 && echo.open() === 0);
  });

  it("cut: resets open connections at both ends and refuses new ones until heal", async () => {
    const echo = await startEcho();
    const proxy = await proxyTo(echo.port);
    const c = await echoes(proxy.port, "ping");
    expect(echo.open()).toBe(1);
    proxy.cut();
    await waitFor("the client to see the cut", () => c.closed);
    expect(c.error?.code).toBe("ECONNRESET");
    await waitFor("the target's side to be reset too", () => echo.open() === 0 && proxy.stats().open === 0);
    await refused(proxy.port);
    await refused(proxy.port);
    expect(proxy.stats()).toMatchObject({ connections: 1, refused: 2 });
    proxy.heal();
    await echoes(proxy.port, "after heal");
  });

  it("stall: holds bytes both ways while stalled, and delivers all of them after heal", async () => {
    const sink = await startSink();
    const proxy = await proxyTo(sink.port);
    const c = await dial(proxy.port);
    await waitFor("the connection to reach the sink", () => sink.conns.length === 1);
    const server = sink.conns[0]!;
    proxy.stall();
    const up = payload(2, 50 * KiB);
    const down = payload(3, 100 * KiB);
    c.socket.write(up);
    server.socket.write(down);
    await waitFor("the proxy to hold both directions", () => proxy.stats().queuedBytes === up.length + down.length);
    expect(server.bytes).toBe(0);
    expect(c.bytes).toBe(0);
    proxy.heal();
    await waitFor("every held byte", () => server.bytes === up.length && c.bytes === down.length);
    expect(server.digest()).toBe(sha256(up));
    expect(c.digest()).toBe(sha256(down));
    expect(proxy.stats()).toMatchObject({ queuedBytes: 0, dropped: 0 });
  });

  it("stall one way: holds that direction only while the other flows, and delivers what it held after heal", async () => {
    const sink = await startSink();
    const proxy = await proxyTo(sink.port);
    const c = await dial(proxy.port);
    await waitFor("the connection to reach the sink", () => sink.conns.length === 1);
    const server = sink.conns[0]!;
    proxy.stall("b->a");
    const up = payload(7, 40 * KiB);
    const down = payload(8, 60 * KiB);
    server.socket.write(down);
    c.socket.write(up);
    await waitFor("the client's bytes at the target", () => server.bytes === up.length);
    await waitFor("the proxy to hold the target's bytes", () => proxy.stats().queuedBytes === down.length);
    expect(c.bytes).toBe(0);
    proxy.heal();
    await waitFor("every held byte at the client", () => c.bytes === down.length);
    expect(c.digest()).toBe(sha256(down));
    expect(server.digest()).toBe(sha256(up));
    expect(proxy.stats()).toMatchObject({ queuedBytes: 0, dropped: 0 });
  });

  it("stall: holds at most its bound and backs the sender up, while the same transfer through a healthy proxy completes", async () => {
    const boundBytes = 64 * KiB;
    // Larger than loopback's send and receive buffers together (tcp_wmem + tcp_rmem maxima, 36 MiB
    // here), so a bounded proxy can never let the whole write through while it stalls.
    const data = payload(4, 64 * MiB);
    const dataSha = sha256(data);
    const sink = await startSink();
    const stalled = await proxyTo(sink.port, { maxQueuedBytes: boundBytes });
    const healthy = await proxyTo(sink.port, { maxQueuedBytes: boundBytes });
    const c = await dial(stalled.port, false);
    await waitFor("the connection to reach the sink", () => sink.conns.length === 1);
    const stalledAtSink = sink.conns[0]!;
    stalled.stall();
    let flushed = false;
    c.socket.write(data, () => (flushed = true));
    await waitFor("the stalled proxy to fill its bound", () => stalled.stats().queuedBytes >= boundBytes);

    // The control: the same bytes through a healthy proxy. Until they are all at the sink, an
    // unbounded proxy would have had every chance to read the stalled sender's bytes as well.
    const control = await dial(healthy.port, false);
    control.socket.end(data);
    await waitFor("the control transfer", () => sink.conns[1]?.ended === true, 15_000);
    expect(sink.conns[1]!.digest()).toBe(dataSha);

    expect(stalledAtSink.bytes).toBe(0);
    expect(flushed).toBe(false);
    expect(c.socket.writableLength).toBeGreaterThan(0);
    // One socket read (64 KiB at most) can land after the bound is reached, before the pause.
    expect(stalled.stats().queuedBytesPeak).toBeLessThanOrEqual(boundBytes + 64 * KiB);

    stalled.heal();
    c.socket.end();
    await waitFor("every stalled byte after heal", () => stalledAtSink.ended, 15_000);
    expect(flushed).toBe(true);
    expect(stalledAtSink.bytes).toBe(data.length);
    expect(stalledAtSink.digest()).toBe(dataSha);
    expect(stalled.stats().queuedBytesPeak).toBeLessThanOrEqual(boundBytes + 64 * KiB);
  });

  it("blackhole: drops one direction only, and counts what it dropped", async () => {
    const sink = await startSink();
    const proxy = await proxyTo(sink.port);
    const c = await dial(proxy.port);
    await waitFor("the connection to reach the sink", () => sink.conns.length === 1);
    const server = sink.conns[0]!;

    proxy.blackhole("a->b");
    c.socket.write(payload(5, 100 * KiB));
    await waitFor("the client's bytes to be dropped", () => proxy.stats().dropped === 100 * KiB);
    const down = payload(6, 30 * KiB);
    server.socket.write(down);
    await waitFor("the target's bytes at the client", () => c.bytes === down.length);
    expect(c.digest()).toBe(sha256(down));
    expect(server.bytes).toBe(0);

    proxy.heal();
    proxy.blackhole("b->a");
    server.socket.write(payload(7, 40 * KiB));
    await waitFor("the target's bytes to be dropped", () => proxy.stats().dropped === 140 * KiB);
    const up = payload(8, 10 * KiB);
    c.socket.write(up);
    await waitFor("the client's bytes at the target", () => server.bytes === up.length);
    expect(server.digest()).toBe(sha256(up));
    expect(c.bytes).toBe(down.length);
    expect(proxy.stats()).toMatchObject({ bytesAtoB: up.length, bytesBtoA: down.length, open: 1 });
  });

  it("throttle: holds 200 KiB/s in each direction at once (never 10 % over; not far under), and 0 removes it", async () => {
    const rateBytesPerSec = 200 * KiB;
    const sink = await startSink();
    const proxy = await proxyTo(sink.port);
    const c = await dial(proxy.port, false);
    await waitFor("the connection to reach the sink", () => sink.conns.length === 1);
    const server = sink.conns[0]!;
    proxy.throttle(rateBytesPerSec);
    const bytes = 440 * KiB; // about 2.2 s at the rate
    c.socket.write(payload(9, bytes));
    server.socket.write(payload(10, bytes));
    await waitFor("both throttled transfers", () => server.bytes === bytes && c.bytes === bytes, 10_000);
    for (const r of [server, c]) {
      expect(r.lastAtMs - r.firstAtMs).toBeGreaterThan(1800);
      // The cap is the point: never more than 10 % over. Under it, a busy 2-core machine (the suite
      // runs two files at once) can starve the reader, so the floor only shows the link still flows.
      expect(r.rate()).toBeGreaterThan(rateBytesPerSec * 0.7);
      expect(r.rate()).toBeLessThan(rateBytesPerSec * 1.1);
    }

    proxy.throttle(0);
    c.socket.write(payload(11, 4 * MiB));
    // At the old rate this would take 20 s.
    await waitFor("an unthrottled transfer", () => server.bytes === bytes + 4 * MiB, 4000);
  });

  it("delay: adds latency per chunk each way and keeps the order", async () => {
    const delayMs = 100;
    const echo = await startEcho();
    const proxy = await proxyTo(echo.port);
    const c = await dial(proxy.port);
    proxy.delay(delayMs);
    const sentAtMs = performance.now();
    const lines = Array.from({ length: 200 }, (_, i) => `${i}\n`);
    for (const line of lines) c.socket.write(line);
    const total = lines.join("").length;
    await waitFor("every delayed echo", () => c.bytes === total, 5000);
    expect(c.firstAtMs - sentAtMs).toBeGreaterThanOrEqual(2 * delayMs - 1);
    expect(c.text()).toBe(lines.join(""));

    proxy.heal();
    await echoes(proxy.port, "no delay");
  });

  it("reset: the client sees ECONNRESET, and new connections are accepted at once", async () => {
    const echo = await startEcho();
    const proxy = await proxyTo(echo.port);
    const c = await echoes(proxy.port, "before");
    proxy.reset();
    await waitFor("the client to see the reset", () => c.closed);
    expect(c.error?.code).toBe("ECONNRESET");
    await echoes(proxy.port, "after");
    await waitFor("the old connection to be gone at the target", () => echo.open() === 1);
    expect(proxy.stats()).toMatchObject({ connections: 2, open: 1, refused: 0 });
  });

  it("bounds its connections: past maxConnections a client is reset at accept", async () => {
    const echo = await startEcho();
    const proxy = await proxyTo(echo.port, { maxConnections: 2 });
    const first = await echoes(proxy.port, "one");
    await echoes(proxy.port, "two");
    await refused(proxy.port);
    first.socket.end();
    await waitFor("a connection slot to free", () => proxy.stats().open === 1);
    await echoes(proxy.port, "three");
    expect(proxy.stats()).toMatchObject({ connections: 3, refused: 1, open: 2 });
  });

  it("resets the client when the target refuses the connection", async () => {
    const proxy = await proxyTo(await freePort());
    const c = await dial(proxy.port);
    await waitFor("the client to be reset", () => c.closed, 5000);
    expect(c.error?.code).toBe("ECONNRESET");
    expect(proxy.stats().open).toBe(0);
  });

  it("close: resets open connections and stops listening", async () => {
    const echo = await startEcho();
    const proxy = await startFaultProxy({ target: `127.0.0.1:${echo.port}` });
    const c = await echoes(proxy.port, "hello");
    await proxy.close();
    await waitFor("the client to see the close", () => c.closed, 5000);
    expect(c.error?.code).toBe("ECONNRESET");
    const late = connect({ host: "127.0.0.1", port: proxy.port });
    const [err] = (await once(late, "error")) as [NodeJS.ErrnoException];
    expect(err.code).toBe("ECONNREFUSED");
  });

  it("faultGroup drives several proxies as one and sums their stats", async () => {
    const echo = await startEcho();
    const proxies = [await proxyTo(echo.port), await proxyTo(echo.port)];
    const group = faultGroup(proxies);
    for (const p of proxies) await echoes(p.port, "abc");
    expect(group.stats()).toMatchObject({ connections: 2, bytesAtoB: 6, bytesBtoA: 6 });
    group.cut();
    await waitFor("every connection of the group to be cut", () => group.stats().open === 0);
    for (const p of proxies) await refused(p.port);
    expect(group.stats()).toMatchObject({ refused: 2 });
    group.heal();
    for (const p of proxies) await echoes(p.port, "healed");
  });
});
