/**
 * Structured logging: one JSON object per line, with stable keys (`controller`, `namespace`,
 * `name`, `node`, `vm`, `err`). Errors keep their cause chain in the output.
 */
import { pino } from 'pino';

export type Logger = pino.Logger;

export function createLogger(options: { name: string; level?: string }): Logger {
  return pino({
    name: options.name,
    level: options.level ?? 'info',
    base: { component: options.name },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    serializers: { err: pino.stdSerializers.errWithCause },
  });
}

/** A logger that drops everything, for tests that assert on behaviour, not logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
