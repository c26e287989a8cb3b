/**
 * The peer transport's TLS credentials, reloadable: one `PeerCredentials` holds the current PEM
 * material and hands grpc-js a server credential (mutual TLS: a client certificate from `ca` is
 * required; ReloadableServerCredentials, as the gRPC gateway's) and channel credentials (present
 * the same certificate, verify the peer's against `ca`) that read it through grpc-js's
 * certificate-provider hook, which builds the TLS context of each new connection from the latest
 * material. `channel` builds them per link, with the verify options `dial` (../grpc/channel.ts)
 * gives for that peer's address (an IP address is checked against the certificate's IP SANs);
 * all share one provider. `update` pushes new material to all; open connections keep the one
 * they were made with.
 *
 * The material is checked (a TLS context is built from it) before it is pushed, so grpc-js never
 * holds a context it cannot build (it would then fail every new connection); a bad update throws
 * INVALID_CONFIG and the previous material stays.
 *
 * @example
 *   const creds = new PeerCredentials(tls);
 *   server.bindAsync(addr, creds.server, cb); dial(addr, creds.channel);
 *   creds.update(await readTlsMaterial(files)); // on SIGHUP
 */
import * as grpc from "@grpc/grpc-js";
import { checkTlsContext } from "../../src/security/tls.ts";
import type { SecureCredentials } from "../grpc/channel.ts";
import { ReloadableServerCredentials } from "../grpc/reloadable-credentials.ts";

type CertificateProvider = grpc.experimental.CertificateProvider;
type CaCertificateUpdateListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityCertificateUpdateListener = grpc.experimental.IdentityCertificateUpdateListener;

/** PEM contents, not file names. */
export interface PeerTls {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

/** A CertificateProvider (the channel side reads it) whose certificates are set in memory; listeners hear the current ones at once. */
class MemoryCertificateProvider implements CertificateProvider {
  private readonly caListeners = new Set<CaCertificateUpdateListener>();
  private readonly identityListeners = new Set<IdentityCertificateUpdateListener>();

  constructor(private tls: PeerTls) {}

  set(tls: PeerTls): void {
    this.tls = tls;
    for (const l of this.caListeners) l(this.ca());
    for (const l of this.identityListeners) l(this.identity());
  }

  private ca() {
    return { caCertificate: Buffer.from(this.tls.ca) };
  }

  private identity() {
    return { certificate: Buffer.from(this.tls.cert), privateKey: Buffer.from(this.tls.key) };
  }

  addCaCertificateListener(listener: CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    listener(this.ca());
  }

  removeCaCertificateListener(listener: CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener);
    listener(this.identity());
  }

  removeIdentityCertificateListener(listener: IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener);
  }
}

export class PeerCredentials {
  private readonly provider: MemoryCertificateProvider;
  readonly server: ReloadableServerCredentials;
  /** Channel credentials for one link, verifying as `verify` says (`dial` passes it). */
  readonly channel: SecureCredentials;

  constructor(tls: PeerTls) {
    checkTlsContext(tls, "peer TLS material");
    this.provider = new MemoryCertificateProvider(tls);
    this.server = new ReloadableServerCredentials(tls);
    this.channel = (verify) => grpc.experimental.createCertificateProviderChannelCredentials(this.provider, this.provider, verify);
  }

  /** New handshakes, both ways, use `tls`; throws INVALID_CONFIG (and keeps the old) when it does not make a context. */
  update(tls: PeerTls): void {
    checkTlsContext(tls, "peer TLS material");
    this.provider.set(tls);
    this.server.update(tls);
  }
}
