/** CONTRACT STUB — the HTTP/CLI helper implements the client commands. */
export async function runClientCommand(_argv: string[]): Promise<number> {
  throw new Error("not implemented");
}
