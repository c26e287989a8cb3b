/** CONTRACT STUB — the composition root: config -> broker -> gateways. */
export async function runServe(_argv: string[]): Promise<number> {
  throw new Error("not implemented");
}
