/** Label values in the Prometheus text format: plain ones as they are, the three special characters escaped. */
import { describe, expect, it } from "vitest";
import { Metrics } from "../src/metrics.ts";

describe("metric labels", () => {
  it("renders plain values as they are and escapes backslash, newline and quote", () => {
    const m = new Metrics();
    const c = m.counter("t_total", "test", ["topic"]);
    c.inc({ topic: "telemetry" }, 2);
    c.inc({ topic: 'a\\b\n"c"' });
    const text = m.render();
    expect(text).toContain('t_total{topic="telemetry"} 2');
    expect(text).toContain('t_total{topic="a\\\\b\\n\\"c\\""} 1');
    expect(c.get({ topic: "telemetry" })).toBe(2);
    expect(c.get({ topic: 'a\\b\n"c"' })).toBe(1);
  });
});
