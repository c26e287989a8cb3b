/**
 * A throwaway PKI made by `openssl` in a directory: certificate authorities and leaf certificates
 * signed by them (EC P-256, valid two days). Used by the TLS tests of the broker and of the peer
 * transport.
 *
 * @example
 *   makeCa(dir, "ca");
 *   makeLeaf(dir, "server", "localhost", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1");
 *   // dir/server.pem, dir/server.key
 */
import { execFileSync } from "node:child_process";

export function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

/** `<name>.pem` and `<name>.key`: a self-signed CA whose CN is `name`. */
export function makeCa(dir: string, name: string): void {
  openssl(dir, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "2", "-subj", `/CN=${name}`]);
}

/** `<name>.pem` and `<name>.key`: a certificate for `cn` signed by CA `ca`, with the x509 extension line `ext`. */
export function makeLeaf(dir: string, name: string, cn: string, ca: string, ext: string): void {
  openssl(dir, ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`]);
  execFileSync("sh", ["-c", `printf '%s\\n' '${ext}' > ${name}.ext`], { cwd: dir });
  openssl(dir, ["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`]);
}
