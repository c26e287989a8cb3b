import { TributaryError } from "../../src/errors.ts";

/**
 * The code of the TributaryError that `p` (a promise, or a function called here) rejects or
 * throws with. Fails the test when it succeeds or fails with anything else.
 */
export async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    if (e instanceof TributaryError) return e.code;
    throw e;
  }
  throw new Error("expected a TributaryError");
}
