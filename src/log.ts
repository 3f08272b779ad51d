/**
 * Structured logging: one JSON object per line, with stable keys (`controller`, `namespace`,
 * `name`, `node`, `vm`, `err`). Errors keep their cause chain in the output.
 */
import { pino } from 'pino';

export type Logger = pino.Logger;

/** The JSON line format every Imp logger shares. */
function lineFormat(level: string | undefined): pino.LoggerOptions {
  return {
    level: level ?? 'info',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    serializers: { err: pino.stdSerializers.errWithCause },
  };
}

export function createLogger(options: { name: string; level?: string }): Logger {
  return pino({
    ...lineFormat(options.level),
    name: options.name,
    base: { component: options.name },
  });
}

/**
 * A logger appending to `path`, for several components in one process: each child sets its
 * own `component`.
 */
export function fileLogger(path: string, level?: string): Logger {
  return pino(lineFormat(level), pino.destination({ dest: path, sync: false }));
}

/** A logger that drops everything, for tests that assert on behaviour, not logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
