/** Command-line parsing shared by the subcommands: one place that turns flags into config. */
import { hostname } from 'node:os';
import { type ParseArgsConfig, parseArgs } from 'node:util';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: T,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** `host:port` → parts; throws naming the flag when malformed. */
export function hostPort(value: string, flag: string): { host: string; port: number } {
  const match = /^(.*):(\d+)$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || port < 0 || port > 65535) {
    throw new UsageError(`--${flag} must be host:port (got "${value}")`);
  }
  return { host: match[1] || '127.0.0.1', port };
}

export const defaultIdentity = () => process.env.POD_NAME ?? hostname();
export const defaultNamespace = () => process.env.POD_NAMESPACE ?? 'imp-system';
