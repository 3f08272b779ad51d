/**
 * The host's TSC rate, which a guest under TCG must be told (docs/guest.md): under TCG the
 * guest reads the host's TSC, and left to itself it calibrates against the emulated PIT,
 * which fails on a busy host and hangs the boot. The host kernel already measured the rate.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Patterns of the host kernel's TSC messages; the last match in the log wins. */
const kernelLogPatterns = [
  /tsc: Refined TSC clocksource calibration: (\d+(?:\.\d+)?) MHz/,
  /tsc: Detected (\d+(?:\.\d+)?) MHz TSC/,
  /tsc: Detected (\d+(?:\.\d+)?) MHz processor/,
];

/**
 * The TSC rate in kHz from the kernel log (`dmesg`): the refined calibration when present,
 * which the kernel logs after its first estimate.
 */
export function tscKhzFromKernelLog(text: string): number | undefined {
  let mhz: string | undefined;
  for (const line of text.split('\n')) {
    for (const pattern of kernelLogPatterns) {
      const match = pattern.exec(line);
      if (match) mhz = match[1];
    }
  }
  return mhz === undefined ? undefined : mhzToKhz(mhz);
}

/**
 * The TSC rate in kHz from /proc/cpuinfo, only where "cpu MHz" is the kernel's calibrated
 * TSC rate: a constant TSC and no APERF/MPERF (as in most VMs). With APERF/MPERF it is the
 * current clock, which frequency scaling moves away from the TSC's.
 */
export function tscKhzFromCpuinfo(text: string): number | undefined {
  const flags = /^flags\s*:(.*)$/m.exec(text)?.[1]?.split(/\s+/) ?? [];
  if (!flags.includes('constant_tsc') || flags.includes('aperfmperf')) return undefined;
  const mhz = /^cpu MHz\s*:\s*(\d+(?:\.\d+)?)\s*$/m.exec(text)?.[1];
  return mhz === undefined ? undefined : mhzToKhz(mhz);
}

/**
 * The host's TSC rate in kHz, the way `hack/boot-demo.sh` finds it: the kernel log first,
 * then /proc/cpuinfo; undefined when neither tells (the log may have been rotated away and
 * `dmesg` needs privileges). `readKernelLog` and `readCpuinfo` replace the sources in tests.
 */
export async function hostTscKhz(
  sources: { readKernelLog?: () => Promise<string>; readCpuinfo?: () => Promise<string> } = {},
): Promise<number | undefined> {
  const readKernelLog =
    sources.readKernelLog ?? (async () => (await run('dmesg', [], { maxBuffer: 64 << 20 })).stdout);
  const readCpuinfo = sources.readCpuinfo ?? (() => readFile('/proc/cpuinfo', 'utf8'));
  const fromLog = tscKhzFromKernelLog(await readKernelLog().catch(() => ''));
  if (fromLog !== undefined) return fromLog;
  return tscKhzFromCpuinfo(await readCpuinfo().catch(() => ''));
}

/** `2445.422` MHz to 2445422 kHz, exactly (no floating-point rounding). */
function mhzToKhz(mhz: string): number {
  const [whole = '0', fraction = ''] = mhz.split('.');
  return Number(whole) * 1000 + Number(fraction.padEnd(3, '0').slice(0, 3));
}
