/**
 * Starting, watching and signalling VMM processes, the same for every driver: one detached
 * process per VM that must outlive the agent, optionally inside a network namespace.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import type { DriverLogger } from './logger.ts';
import { signalProcess, watchForExit } from './proc.ts';

/** A VMM process, started by this agent or adopted from an earlier one. */
export interface VmmProcess {
  pid: number;
  /**
   * Resolves with the exit code or signal name; `unknown` for an adopted process (it is not
   * our child, so its status cannot be read) and `spawn-error: CODE` when it never started.
   */
  exited: Promise<number | string>;
  /** Delivers a signal to the VMM, unless it is already gone. */
  signal(name: NodeJS.Signals): Promise<void>;
}

/**
 * The program and arguments that run `command` inside network namespace `netns` (by name),
 * or `command` itself without one. `ip netns exec` execs in place, so the pid of the started
 * process is the VMM's own, and device names (TAPs) refer to devices in that namespace.
 */
export function inNetns(
  netns: string | undefined,
  command: string,
  args: string[],
  ipBin = 'ip',
): { command: string; args: string[] } {
  if (netns === undefined) return { command, args };
  return { command: ipBin, args: ['netns', 'exec', netns, command, ...args] };
}

/**
 * Starts a VMM detached from the agent, with stdout and stderr appended to `outputPath`.
 * Node does not wait for it: the VM must outlive an agent restart.
 */
export function spawnVmm(options: {
  command: string;
  args: string[];
  outputPath: string;
  log: DriverLogger;
  vm: string;
}): VmmProcess {
  const { command, args, log, vm } = options;
  const outputFd = openSync(options.outputPath, 'a');
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(command, args, { stdio: ['ignore', outputFd, outputFd], detached: true });
  } finally {
    closeSync(outputFd);
  }
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.on('error', (error) => {
      log.error({ vm, err: error, command }, 'cannot start the VMM');
      resolve(`spawn-error: ${(error as NodeJS.ErrnoException).code ?? error.message}`);
    });
  });
  child.unref();
  return {
    pid: child.pid ?? -1,
    exited,
    signal: async (name) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // Someone now waits for the exit: keep Node running until it is seen.
      child.ref();
      child.kill(name);
    },
  };
}

/**
 * Takes over watching a VMM this agent did not start, the process that is `pid` since
 * `startTicks` (from `readProcStat`). Its end is noticed by polling /proc every `pollMs`;
 * signals are only sent while the pid still names the same process.
 */
export function adoptedVmm(pid: number, startTicks: number, pollMs: number): VmmProcess {
  return {
    pid,
    exited: watchForExit(pid, startTicks, pollMs),
    signal: (name) => signalProcess(pid, startTicks, name),
  };
}

/** Why a new VMM did not become ready: it exited, or it stayed silent until the deadline. */
export interface NotReady {
  reason: string;
  /** The last error of the readiness check, the likely cause. */
  lastError: unknown;
}

/**
 * Runs `check` until it succeeds, the process exits or `timeoutMs` passes; the VMM's socket
 * appears some time after the process starts. Resolves with the check's value, or with why
 * the VMM never became ready (`what` names the awaited thing, e.g. `API`).
 */
export async function waitForReady<T>(options: {
  check: () => Promise<T>;
  exited: Promise<number | string>;
  timeoutMs: number;
  what: string;
  intervalMs?: number;
}): Promise<{ value: T } | NotReady> {
  const { check, timeoutMs, what } = options;
  const deadline = Date.now() + timeoutMs;
  let exit: number | string | undefined;
  void options.exited.then((value) => {
    exit = value;
  });
  let lastError: unknown;
  while (exit === undefined && Date.now() < deadline) {
    try {
      return { value: await check() };
    } catch (error) {
      lastError = error;
      await delay(options.intervalMs ?? 25);
    }
  }
  const reason = exit === undefined ? `no ${what} within ${timeoutMs} ms` : `VMM exited (${exit})`;
  return { reason, lastError };
}

/** The last `lines` lines of each file that has any: where a VMM says why it stopped. */
export async function outputTail(paths: string[], lines = 8): Promise<string> {
  const tails: string[] = [];
  for (const path of paths) {
    const text = await readFile(path, 'utf8').catch(() => '');
    const tail = text.trimEnd().split('\n').slice(-lines).join('\n');
    if (tail) tails.push(`${path}:\n${tail}`);
  }
  return tails.join('\n') || '(no output)';
}
