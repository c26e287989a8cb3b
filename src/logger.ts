/**
 * One logger for the whole broker: one line of JSON per event on stderr, so logs from a gateway
 * box can be shipped and filtered by machines. Never log secrets or record payloads.
 *
 * @example
 *   logger.info("topic created", { topic: "telemetry", partitions: 3 });
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(level: LogLevel = "info", write: (line: string) => void = defaultWrite): Logger {
  const min = ORDER[level];
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < min) return;
    const entry: Record<string, unknown> = { ts: new Date().toISOString(), level: lvl, msg, ...fields };
    const err = fields?.error;
    if (err instanceof Error) entry.error = { name: err.name, message: err.message };
    write(JSON.stringify(entry));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}

function defaultWrite(line: string): void {
  console.error(line);
}

/** Discards everything: for tests and library use. */
export const silentLogger: Logger = createLogger("error", () => {});
