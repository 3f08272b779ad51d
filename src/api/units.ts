/** Parsing of the quantities and durations users write in specs. */
import parseDuration from 'parse-duration';

const suffixes: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** Bytes in a quantity such as `512Mi`, `1.5Gi` or `2G`; throws naming the value when invalid. */
export function quantityBytes(value: string | number): number {
  if (typeof value === 'number') return value;
  const match = /^([0-9]+(?:\.[0-9]+)?)([kMGTPE]i?)?$/.exec(value.trim());
  const multiplier = match ? suffixes[match[2] ?? ''] : undefined;
  if (!match || multiplier === undefined) {
    throw new Error(`"${value}" is not a quantity such as 512Mi or 2Gi`);
  }
  return Math.round(Number(match[1]) * multiplier);
}

export const MiB = 1024 * 1024;

/**
 * Milliseconds in a duration such as `45m`, `2h30m` or `0`. Returns 0 for 0, undefined for
 * an absent value, and throws for text that is not a duration.
 */
export function durationMs(value: string | number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'number') return value * 1000;
  const ms = parseDuration(value);
  if (ms === null || ms === undefined || Number.isNaN(ms)) {
    throw new Error(`"${value}" is not a duration such as 90s, 45m or 2h`);
  }
  return ms;
}
