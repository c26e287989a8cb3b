/**
 * TLS material of the HTTP and gRPC listeners: the certificate chain, its key and, for mutual
 * TLS, the CA bundle that client certificates must chain to. Read from the files named by
 * tls.cert.file, tls.key.file and tls.ca.file at start and again on SIGHUP; every read is checked
 * by building a TLS context from it, so a half-written or mismatched file is refused (and, on a
 * reload, the listeners keep the material they have).
 *
 * A client certificate's subject CN is the caller's principal (certificatePrincipal); the guard
 * (guard.ts) decides when it is used.
 *
 * @example
 *   const material = await readTlsMaterial({ certFile, keyFile, caFile: "" });
 */
import { readFile } from "node:fs/promises";
import { createSecureContext } from "node:tls";
import type { TlsFiles } from "../config.ts";
import { TributaryError } from "../errors.ts";

export interface TlsMaterial {
  cert: string;
  key: string;
  /** Client CA bundle; null: client certificates are not requested. */
  ca: string | null;
}

async function readPem(setting: string, path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    throw new TributaryError("INVALID_CONFIG", `${setting} ${path}: ${(e as Error).message}`);
  }
}

export async function readTlsMaterial(files: TlsFiles): Promise<TlsMaterial> {
  const cert = await readPem("tls.cert.file", files.certFile);
  const key = await readPem("tls.key.file", files.keyFile);
  const ca = files.caFile === "" ? null : await readPem("tls.ca.file", files.caFile);
  if (!/-----BEGIN CERTIFICATE-----/.test(cert)) throw new TributaryError("INVALID_CONFIG", `tls.cert.file ${files.certFile} holds no PEM certificate`);
  if (ca !== null && !/-----BEGIN CERTIFICATE-----/.test(ca)) throw new TributaryError("INVALID_CONFIG", `tls.ca.file ${files.caFile} holds no PEM certificate`);
  checkTlsContext({ cert, key, ca }, `TLS files ${[files.certFile, files.keyFile, files.caFile].filter((f) => f).join(", ")}`);
  return { cert, key, ca };
}

/**
 * Throws INVALID_CONFIG (naming `what`) unless the PEM material makes a TLS context: unparsable
 * PEM, a key that does not match the certificate, or a CA bundle without a certificate (which
 * createSecureContext would take, and then trust nothing).
 */
export function checkTlsContext(material: { cert: string; key: string; ca: string | null }, what: string): void {
  if (material.ca !== null && !/-----BEGIN CERTIFICATE-----/.test(material.ca)) throw new TributaryError("INVALID_CONFIG", `${what}: the CA bundle holds no PEM certificate`);
  try {
    createSecureContext({ cert: material.cert, key: material.key, ...(material.ca === null ? {} : { ca: material.ca }) });
  } catch (e) {
    throw new TributaryError("INVALID_CONFIG", `${what} do not make a TLS context: ${(e as Error).message}`);
  }
}

/** The principal a verified client certificate stands for: its subject CN; null when it has none. */
export function certificatePrincipal(subject: Record<string, unknown> | null | undefined): string | null {
  const cn = subject?.CN;
  const v = Array.isArray(cn) ? cn[0] : cn;
  return typeof v === "string" && v !== "" ? v : null;
}
