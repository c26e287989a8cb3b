/**
 * Which TCP connections are open on a local port, from the operating system (Linux:
 * /proc/net/tcp and /proc/net/tcp6), for the connection limits (src/security/connections.ts):
 * neither Bun.serve, Deno.serve nor grpc-js tells a handler when a connection closes, the kernel
 * does. Only ESTABLISHED sockets count: a connection the client has closed (CLOSE_WAIT and after)
 * is gone.
 *
 * Format of a /proc/net/tcp line (after the header): `sl local rem st ...`, where local and rem
 * are `ADDR:PORT` in hex: PORT is the port as a number; ADDR is the address as the kernel's
 * 32-bit words (one for IPv4, four for IPv6) each printed in host byte order, so on a
 * little-endian host each word's bytes are reversed. `st` 01 is ESTABLISHED.
 *
 * Elsewhere (no /proc) the probe answers null, and the limiter falls back on idle time.
 *
 * @example
 *   const open = await procNetTcpProbe(8480); // Set { "8480|127.0.0.1|50412", ... } or null
 */
import { readFile } from "node:fs/promises";
import { endianness } from "node:os";
import { connectionKey, type ConnectionProbe } from "../security/connections.ts";

const ESTABLISHED = "01";

/** One kernel hex address as text (IPv4 dotted, IPv6 colon-separated hex). */
export function kernelAddress(hex: string, littleEndian: boolean): string {
  const bytes: number[] = [];
  for (let w = 0; w < hex.length; w += 8) {
    const word = [0, 2, 4, 6].map((i) => parseInt(hex.slice(w + i, w + i + 2), 16));
    bytes.push(...(littleEndian ? word.reverse() : word));
  }
  if (bytes.length === 4) return bytes.join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(":");
}

/** The established connections on `localPort` in a /proc/net/tcp{,6} text, as connection keys. */
export function parseProcNetTcp(text: string, localPort: number, littleEndian = endianness() === "LE"): Set<string> {
  const open = new Set<string>();
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== ESTABLISHED) continue;
    const [localHex, localPortHex] = f[1]!.split(":");
    const [remHex, remPortHex] = f[2]!.split(":");
    if (!localHex || !remHex || parseInt(localPortHex ?? "", 16) !== localPort) continue;
    open.add(connectionKey(localPort, kernelAddress(remHex, littleEndian), parseInt(remPortHex ?? "", 16)));
  }
  return open;
}

export const procNetTcpProbe: ConnectionProbe = async (localPort) => {
  const texts = await Promise.all(["/proc/net/tcp", "/proc/net/tcp6"].map((f) => readFile(f, "utf8").catch(() => null)));
  if (texts.every((t) => t === null)) return null;
  const open = new Set<string>();
  for (const t of texts) if (t !== null) for (const k of parseProcNetTcp(t, localPort)) open.add(k);
  return open;
};
