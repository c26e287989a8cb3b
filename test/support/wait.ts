/**
 * Waiting for a condition instead of sleeping: `waitFor` polls `check` until it returns a value
 * (anything but `undefined` or `false`) and resolves with it, or fails after `timeoutMs` naming
 * what it waited for. Tests wait for what they need, never for a fixed time.
 *
 * @example
 *   await waitFor("the sink to have every byte", () => sink.bytes === total);
 *   const line = await waitFor("the ready line", () => lines.find((l) => l.includes("ready")));
 */

/** Between two checks: short, so a test goes on soon after its condition holds. */
const POLL_MS = 10;

export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 20_000,
): Promise<Exclude<T, undefined | false>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v as Exclude<T, undefined | false>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
