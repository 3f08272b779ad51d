/**
 * Writes `/.imp/workload.sh`, the guest init's description of what to run (format:
 * docs/guest.md), from the image config and the VM's overrides. The rules follow
 * Kubernetes: `command` replaces the entrypoint and drops the image's cmd; `args` replaces
 * the cmd; `env` adds to (and overrides) the image's environment.
 */
import { constants } from 'node:os';
import type { ImageConfig } from '../image/manifest.ts';
import { shellQuote } from '../shell.ts';

export interface WorkloadOverrides {
  command?: string[];
  args?: string[];
  /** Resolved `NAME=value` pairs (valueFrom already looked up). */
  env: { name: string; value: string }[];
  workingDir?: string;
  user?: string;
}

export function argvFor(image: ImageConfig, overrides: WorkloadOverrides): string[] {
  if (overrides.command) return [...overrides.command, ...(overrides.args ?? [])];
  return [...image.entrypoint, ...(overrides.args ?? image.cmd)];
}

export function workloadScript(image: ImageConfig, overrides: WorkloadOverrides): string {
  const argv = argvFor(image, overrides);
  if (argv.length === 0) {
    throw new Error(
      'nothing to run: the image has no entrypoint or cmd and the VM sets no command',
    );
  }
  const env = new Map<string, string>();
  for (const entry of image.env) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  for (const { name, value } of overrides.env) env.set(name, value);
  const lines = ['# Written by the Imp agent; format 1 of docs/guest.md.'];
  const workdir = overrides.workingDir ?? image.workingDir;
  if (workdir) lines.push(`IMP_WORKDIR=${shellQuote(workdir)}`);
  const user = overrides.user ?? image.user;
  if (user) lines.push(`IMP_USER=${shellQuote(user)}`);
  if (image.stopSignal) lines.push(`IMP_STOP_SIGNAL=${signalName(image.stopSignal)}`);
  for (const [name, value] of env) lines.push(`imp_env ${shellQuote(`${name}=${value}`)}`);
  for (const word of argv) lines.push(`imp_arg ${shellQuote(word)}`);
  return `${lines.join('\n')}\n`;
}

/** Real-time signals as the guest's glibc numbers them (SIGRTMIN is 34 there). */
const realTimeMin = 34;
const realTimeMax = 64;

/**
 * The image's stop signal as the guest init takes it: a name such as `SIGQUIT`, or the
 * number of a real-time signal (systemd images stop on `SIGRTMIN+3`). Images may give a name
 * with or without `SIG`, or a number.
 */
export function signalName(signal: string): string {
  const signals = constants.signals as Record<string, number>;
  const word = signal.trim().toUpperCase().replace(/^SIG/, '');
  const realTime = /^RT(MIN|MAX)(?:([+-])(\d+))?$/.exec(word);
  let number: number | undefined;
  if (realTime) {
    const offset = Number(realTime[3] ?? 0) * (realTime[2] === '-' ? -1 : 1);
    number = (realTime[1] === 'MIN' ? realTimeMin : realTimeMax) + offset;
  } else if (/^\d+$/.test(word)) {
    number = Number(word);
    const name = Object.keys(signals).find((n) => signals[n] === number);
    if (name) return name;
  } else if (`SIG${word}` in signals) {
    return `SIG${word}`;
  }
  if (number !== undefined && number >= realTimeMin && number <= realTimeMax) return `${number}`;
  throw new Error(`the image's stop signal ${JSON.stringify(signal)} is not a Linux signal`);
}
