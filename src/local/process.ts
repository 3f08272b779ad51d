/** Starts helper processes (etcd, kube-apiserver, registries) and stops them for sure. */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, rmSync } from 'node:fs';

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Resolves with the exit code (or signal) once the process has ended. */
  readonly exited: Promise<number | string>;
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<ManagedProcess>();

/** Temporary directories of running helpers, removed with them if the process ends early. */
const scratchDirs = new Set<string>();

/**
 * Has `dir` removed should this process end before removing it itself; the returned
 * function takes it off the list once it is gone or handed over.
 */
export function removeOnExit(dir: string): () => void {
  scratchDirs.add(dir);
  return () => scratchDirs.delete(dir);
}

// A test that throws or a Ctrl-C must not leave an etcd (or its data) behind; an exit hook
// is the last chance, and it can only be synchronous, so it sends SIGKILL.
function abandonHelpers(): void {
  for (const managed of running) managed.child.kill('SIGKILL');
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
  scratchDirs.clear();
}
process.on('exit', abandonHelpers);

// Helpers run in process groups of their own (see startProcess), so a Ctrl-C reaches only
// this process. Where nothing else handles the signal (a test run, a CLI step before its
// own handler is set), end as the signal would have, taking the helpers along.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  const onSignal = () => {
    if (process.listenerCount(signal) > 1) return;
    abandonHelpers();
    process.removeListener(signal, onSignal);
    process.kill(process.pid, signal);
  };
  // First in line, so a listener that removes itself when called cannot make this one
  // think it is alone.
  process.prependListener(signal, onSignal);
}

/** Spawns `command` with stdout and stderr appended to `logFile`. */
export function startProcess(
  name: string,
  command: string,
  args: string[],
  logFile: string,
  env: NodeJS.ProcessEnv = process.env,
): ManagedProcess {
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    // In a process group of its own: a Ctrl-C reaches only Imp, which then stops the VMs,
    // agent and operator before their control plane, instead of all at once.
    child = spawn(command, args, { stdio: ['ignore', fd, fd], env, detached: true });
  } finally {
    closeSync(fd); // the child holds its own copy
  }
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.on('error', () => resolve('spawn-error'));
  });
  const managed: ManagedProcess = {
    name,
    child,
    logFile,
    exited,
    async stop(graceMs = 5000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      running.delete(managed);
    },
  };
  running.add(managed);
  void exited.then(() => running.delete(managed));
  return managed;
}
