/**
 * The realistic telemetry reading the mirror benchmarks send (bench/mirror-bytes.ts,
 * bench/mirror.ts): a device id, sequence, timestamp, temperature, humidity, pressure, a 3-axis
 * vibration sample, battery and status, CBOR-encoded with cbor-x (its pure-JS entry point, as
 * gateways/http/media.ts explains) to about 181 bytes, keyed by device id; 200 devices in turn.
 */
import { Encoder } from "cbor-x/encode";

export const cbor = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true });
export const T0 = 1_795_300_000_000;
export const DEVICES = 200;

/** Reading number `i`; `random` (seeded) makes the measurements vary as a sensor's do. */
export function telemetryReading(i: number, random: () => number): Record<string, unknown> {
  const device = i % DEVICES;
  const r2 = (x: number) => Math.round(x * 100) / 100;
  return {
    deviceId: `plant3-line${device % 8}-sensor-${String(device).padStart(4, "0")}`,
    seq: Math.floor(i / DEVICES),
    ts: T0 + i * 5 + Math.floor(random() * 5),
    temperatureC: r2(20 + 5 * Math.sin(i / 500) + random()),
    humidityPct: r2(40 + 10 * random()),
    pressureHPa: r2(1013 + 4 * random()),
    vibrationMmS: [r2(random() * 3), r2(random() * 3), r2(random() * 3)],
    batteryPct: 100 - Math.floor(i / 10_000) % 100,
    status: random() < 0.99 ? "ok" : "warn",
  };
}
