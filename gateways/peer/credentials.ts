/**
 * The peer transport's TLS material, reloadable: one `PeerCredentials` holds the current PEM
 * material; the listener (h2-server.ts) takes its context options and hears of every update
 * (`node:tls` `setSecureContext`: new handshakes get the new material, open connections keep
 * theirs), and each new outgoing connection (h2-client.ts) reads `client(host)` at connect time.
 * Mutual TLS always: the listener requires a client certificate issued by `ca`, and a link
 * presents the same certificate and verifies the peer's against `ca`.
 *
 * A peer named by IP address: RFC 6066 forbids an IP literal as TLS server name (SNI), and the
 * `tls.connect` of Bun (1.4) and Deno (2.9) refuse one outright, so the link sends
 * `IP_TARGET_SERVERNAME` as SNI (our listeners ignore it) and checks the certificate against the
 * real IP with node:tls `checkServerIdentity(ip, cert)`: the certificate must carry the IP as an
 * IP SAN, exactly as a plain Node connection to that IP would require.
 *
 * The material is checked (a TLS context is built from it) before it is taken, so a bad update
 * throws INVALID_CONFIG and the previous material stays.
 *
 * @example
 *   const creds = new PeerCredentials(tls);
 *   const server = http2.createSecureServer({ ...creds.server() }); creds.onUpdate((o) => server.setSecureContext(o));
 *   tls.connect({ socket, ...creds.client("10.0.0.2") });
 *   creds.update(await readTlsMaterial(files)); // on SIGHUP
 */
import { isIP } from "node:net";
import { checkServerIdentity, type ConnectionOptions, type SecureContextOptions } from "node:tls";
import { checkTlsContext } from "../../src/security/tls.ts";
import { IP_TARGET_SERVERNAME } from "../grpc/channel.ts";

/** PEM contents, not file names. */
export interface PeerTls {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

export class PeerCredentials {
  private tls: PeerTls;
  private readonly listeners = new Set<(options: SecureContextOptions) => void>();

  constructor(tls: PeerTls) {
    checkTlsContext(tls, "peer TLS material");
    this.tls = tls;
  }

  /** The listener's options: its certificate, and a client certificate from `ca` required. */
  server(): SecureContextOptions & { requestCert: true; rejectUnauthorized: true } {
    return { ...this.context(), requestCert: true, rejectUnauthorized: true };
  }

  /** Options for `tls.connect` to `host` (a DNS name or an IP literal): present ours, verify theirs against `ca`. */
  client(host: string): ConnectionOptions {
    const options: ConnectionOptions = { ...this.context(), ALPNProtocols: ["h2"], rejectUnauthorized: true };
    if (isIP(host) === 0) return { ...options, servername: host };
    return { ...options, servername: IP_TARGET_SERVERNAME, checkServerIdentity: (_name, cert) => checkServerIdentity(host, cert) };
  }

  /** Hears every update's context options (the listener's `setSecureContext`); returns its removal. */
  onUpdate(listener: (options: SecureContextOptions) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** New handshakes, both ways, use `tls`; throws INVALID_CONFIG (and keeps the old) when it does not make a context. */
  update(tls: PeerTls): void {
    checkTlsContext(tls, "peer TLS material");
    this.tls = tls;
    for (const l of this.listeners) l(this.context());
  }

  private context(): SecureContextOptions {
    return { cert: this.tls.cert, key: this.tls.key, ca: this.tls.ca };
  }
}
