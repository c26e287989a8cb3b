/**
 * Server credentials whose TLS material can change in place, for the gRPC gateway: grpc-js watches server credentials for new context options (the hook its
 * FileWatcherCertificateProvider uses) and hands them to the http2 server's setSecureContext, so
 * new connections get the new material and open ones keep going.
 */
import * as grpc from "@grpc/grpc-js";
import type { TlsMaterial } from "../../src/security/tls.ts";

/**
 * Server credentials whose certificate can change: grpc-js watches credentials for new context
 * options (the hook FileWatcherCertificateProvider uses) and applies them with setSecureContext.
 * The material is already checked (readTlsMaterial), so grpc-js never gets a context it cannot
 * build (it would then drop every new connection).
 */
export class ReloadableServerCredentials extends grpc.ServerCredentials {
  constructor(material: TlsMaterial) {
    super({ requestCert: material.ca !== null, rejectUnauthorized: true }, ReloadableServerCredentials.context(material));
  }

  private static context(material: TlsMaterial): { cert: string; key: string; ca?: string } {
    return { cert: material.cert, key: material.key, ...(material.ca === null ? {} : { ca: material.ca }) };
  }

  update(material: TlsMaterial): void {
    this.updateSecureContextOptions(ReloadableServerCredentials.context(material));
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}
