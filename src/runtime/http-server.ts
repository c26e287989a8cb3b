/**
 * Start an HTTP server for a fetch-style handler on whichever runtime we are in. The runtime's own
 * server lives in one small file each (http-bun.ts, http-deno.ts), loaded by dynamic import so
 * neither runtime ever parses the other's file. Node is not a serving runtime here: tests on Node
 * call the Hono app in process (`app.request(...)`).
 *
 * @example
 *   const server = await startHttpServer(app.fetch, { hostname: "127.0.0.1", port: 0, maxRequestBodyBytes: 8 << 20 });
 *   console.log(server.port);
 *   await server.stop();
 */
import type { Connection } from "../security/connections.ts";
import type { TlsMaterial } from "../security/tls.ts";

/** What the runtime knows of the connection a request came on; the Hono app reads it as `c.env`. */
export interface RequestEnv {
  /** Absent where the runtime cannot name it. */
  connection?: Connection;
  /** Under mutual TLS: the verified client certificate's subject CN (null: it has none). */
  certificatePrincipal?: string | null;
}

export type FetchHandler = (req: Request, env: RequestEnv) => Response | Promise<Response>;

export interface HttpServerOptions {
  hostname: string;
  /** 0 picks a free port; the chosen one is returned. */
  port: number;
  /**
   * The gateway enforces this limit itself (with a typed 413); the runtime gets a looser backstop
   * so that the runtime's own, untyped refusal only ever meets requests far beyond it.
   */
  maxRequestBodyBytes: number;
  /** Serve HTTPS with this material (src/security/tls.ts); absent: plain HTTP. */
  tls?: TlsMaterial;
}

export interface HttpServer {
  port: number;
  /** Stop accepting, let in-flight requests finish for a short grace, then close what is left. */
  stop(): Promise<void>;
  /**
   * New connections get this TLS material; connections already open keep theirs. Rejects (and
   * the old material stays) where the runtime cannot change it without dropping connections.
   */
  reloadTls(material: TlsMaterial): Promise<void>;
}

/** How long stop() lets in-flight requests (long polls, streams) finish before cutting them. */
export const STOP_GRACE_MS = 2000;

export async function startHttpServer(fetch: FetchHandler, opts: HttpServerOptions): Promise<HttpServer> {
  const g = globalThis as { Bun?: unknown; Deno?: unknown };
  if (g.Bun !== undefined) {
    const { startBunServer } = await import("./http-bun.ts");
    return startBunServer(fetch, opts);
  }
  if (g.Deno !== undefined) {
    const { startDenoServer } = await import("./http-deno.ts");
    return startDenoServer(fetch, opts);
  }
  throw new Error(
    "startHttpServer: no supported runtime found. Tributary serves HTTP on Bun (`bun cli/main.ts serve`) " +
      "or Deno (`deno run -A cli/main.ts serve`); on Node, call the Hono app in process with app.request().",
  );
}

/** Resolves after `ms`, never keeping the process alive by itself. */
export function graceTimer(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    (t as { unref?: () => void }).unref?.();
  });
}
