/**
 * Free loopback ports for test servers and processes: the kernel picks them (listen on port 0),
 * then the listeners close and the caller binds the ports itself. `freePorts(n)` holds all n
 * listeners open until it has every port, so the n ports are distinct.
 *
 * @example
 *   const [p1, p2, p3] = await freePorts(3);
 */
import { createServer, type Server } from "node:net";

function listenOnFreePort(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const addr = server.address();
      resolve({ server, port: typeof addr === "object" && addr ? addr.port : 0 });
    });
  });
}

export async function freePorts(count: number): Promise<number[]> {
  const held: { server: Server; port: number }[] = [];
  try {
    for (let i = 0; i < count; i++) held.push(await listenOnFreePort());
    return held.map((h) => h.port);
  } finally {
    await Promise.all(held.map((h) => new Promise<void>((resolve) => h.server.close(() => resolve()))));
  }
}

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}
