/**
 * `dial`: how every grpc-js client here opens its channel (the gateway client `connect` in
 * client.ts, the mirror sink, the peer links), so TLS to an IP address works on every runtime.
 *
 * grpc-js sets the TLS server name (SNI) to the target's host. For an IP literal
 * (`10.0.0.1:8482`, `[fd00::1]:8482`) RFC 6066 forbids that, and the `tls.connect` of Bun
 * (1.4) and of Deno (2.9) refuse it outright (ERR_INVALID_ARG_VALUE: every handshake fails;
 * Node 20 only warns). So
 * for an IP target `dial` sets `grpc.ssl_target_name_override` to `IP_TARGET_SERVERNAME`
 * (sent as SNI, which our listeners ignore) and gives the credentials a `checkServerIdentity`
 * that checks the certificate against the real IP: grpc-js would otherwise check it against the
 * override name. The check is node:tls `checkServerIdentity(ip, cert)`, the very one a plain
 * Node connection to that IP runs, so it is as strict as before: the certificate must carry the
 * IP as an IP SAN (a DNS SAN or CN spelling the address does not count). A DNS name target is
 * dialled as before. Targets with a scheme (`dns:///...`, `ipv4:...`) are passed through as
 * they are: we never build those.
 *
 * The credentials are built per channel, by the caller's `SecureCredentials`, because the check
 * must know the target's IP (grpc-js hands it the override name only).
 *
 * @example
 *   const client = dial("10.0.0.1:8482", (verify) => grpc.credentials.createSsl(ca, key, cert, verify), { "grpc.keepalive_time_ms": 10_000 });
 */
import * as grpc from "@grpc/grpc-js";
import { isIP } from "node:net";
import { checkServerIdentity } from "node:tls";

/** SNI sent to an IP target: under `.invalid` (RFC 6761) so it can never name a real host. */
export const IP_TARGET_SERVERNAME = "ip-address.invalid";

/** Builds TLS channel credentials that apply `verify` (grpc-js `createSsl`'s last argument, or the certificate-provider variant's). */
export type SecureCredentials = (verify: grpc.VerifyOptions) => grpc.ChannelCredentials;

/** The IP literal a `host:port` (or `[v6]:port`) target names, or null for a DNS name or anything else. */
export function ipLiteral(address: string): string | null {
  const hostPort = grpc.experimental.splitHostPort(address);
  if (!hostPort) return null;
  return isIP(hostPort.host) === 0 ? null : hostPort.host;
}

/** A grpc-js client for `address`: TLS through `secure` (see the top of the file for IP targets), plain text when it is null. */
export function dial(address: string, secure: SecureCredentials | null, options: grpc.ClientOptions = {}): grpc.Client {
  if (!secure) return new grpc.Client(address, grpc.credentials.createInsecure(), options);
  const ip = ipLiteral(address);
  if (ip === null) return new grpc.Client(address, secure({}), options);
  const verify: grpc.VerifyOptions = { checkServerIdentity: (_servername, cert) => checkServerIdentity(ip, cert) };
  return new grpc.Client(address, secure(verify), { ...options, "grpc.ssl_target_name_override": IP_TARGET_SERVERNAME });
}
