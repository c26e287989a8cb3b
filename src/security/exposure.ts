/**
 * Secure by default: which listening addresses the settings allow. Pure, so the rule is tested as
 * a table: without authentication the broker listens on loopback only; anything wider needs
 * `auth.tokens.file` or mutual TLS (`tls.ca.file`: every connection needs a client certificate
 * from that CA), or `insecure=true`, which start-up then logs loudly.
 *
 * @example
 *   const v = exposureVerdict({ httpHost: "0.0.0.0", grpcHost: "127.0.0.1", authOn: false, insecure: false });
 *   v.error; // "http.host 0.0.0.0 is not loopback and no authentication is configured ..."
 */
export interface Exposure {
  httpHost: string;
  grpcHost: string;
  /** A token file or mutual TLS. */
  authOn: boolean;
  /** Client certificates are required (tls.ca.file). */
  mutualTls?: boolean;
  insecure: boolean;
}

export interface ExposureVerdict {
  /** Refuse to start with this message (INVALID_CONFIG). */
  error?: string;
  /** Say this at start, at warn level. */
  warning?: string;
  /** Say this at start, at info level. */
  note?: string;
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export function exposureVerdict(e: Exposure): ExposureVerdict {
  const wide = [
    ["http.host", e.httpHost],
    ["grpc.host", e.grpcHost],
  ].filter(([, h]) => !isLoopback(h!));
  if (e.mutualTls) return { note: "mutual TLS is on: every connection needs a client certificate from tls.ca.file; a request without a bearer token runs as the certificate's CN" };
  if (e.authOn) return { note: "authentication is on: every request needs a bearer token (see auth.tokens.file)" };
  if (wide.length === 0) return { note: "no authentication configured: listening on loopback only (set auth.tokens.file to listen wider)" };
  const what = wide.map(([k, h]) => `${k} ${h}`).join(" and ");
  if (e.insecure) return { warning: `INSECURE: ${what} beyond loopback with NO authentication (insecure=true): anyone who can reach it can read, write and delete every topic` };
  return { error: `${what} is not loopback and no authentication is configured: set auth.tokens.file (and auth.acl.file) or tls.ca.file (mutual TLS), or pass --insecure to accept an open broker` };
}
