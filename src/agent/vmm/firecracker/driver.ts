/**
 * The Firecracker driver: one `firecracker` process per VM, configured and controlled over
 * the REST API on a Unix socket in the VM's runDir (or in its jail).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Driver, MachineSpec, SnapshotFiles } from '../types.ts';
import { FirecrackerApi } from './api.ts';
import { prepareJail, removeJail } from './jail.ts';
import { launchCommand, planLayout, type VmLayout } from './layout.ts';
import { FirecrackerMachine, type MachineParts } from './machine.ts';
import {
  defaultApiReadyTimeoutMs,
  defaultRequestTimeoutMs,
  type FirecrackerDriverOptions,
} from './options.ts';
import { ownsUnixSocket, processIdentity, readProcStat, watchForExit } from './proc.ts';
import {
  assertMachineId,
  configureCalls,
  describeInstanceCall,
  parseInstanceInfo,
  snapshotLoadCall,
} from './requests.ts';

/** How often an adopted VMM's liveness is checked in /proc. */
const adoptedPollMs = 1_000;

/** Runs VMs as Firecracker microVMs. */
export class FirecrackerDriver implements Driver {
  readonly type = 'firecracker';
  private readonly options: FirecrackerDriverOptions;

  constructor(options: FirecrackerDriverOptions) {
    this.options = options;
  }

  async create(spec: MachineSpec): Promise<FirecrackerMachine> {
    const layout = this.plan(spec);
    const machine = await this.launch(spec, layout);
    try {
      for (const call of configureCalls(spec, layout.inVmm, this.options.balloon)) {
        await machine.request(call);
      }
    } catch (error) {
      await machine.kill();
      throw new Error(`create VM ${spec.id}`, { cause: error });
    }
    this.options.log.info({ vm: spec.id, pid: machine.pid }, 'VMM configured');
    return machine;
  }

  async restore(
    spec: MachineSpec,
    files: SnapshotFiles,
    resume: boolean,
  ): Promise<FirecrackerMachine> {
    const layout = this.plan(spec, files);
    const machine = await this.launch(spec, layout);
    const started = Date.now();
    try {
      await machine.request(
        snapshotLoadCall(layout.inVmm(files.statePath), layout.inVmm(files.memoryPath), resume),
      );
    } catch (error) {
      await machine.kill();
      throw new Error(`restore VM ${spec.id}`, { cause: error });
    }
    this.options.log.info(
      { vm: spec.id, pid: machine.pid, resumed: resume, durationMs: Date.now() - started },
      'snapshot loaded',
    );
    return machine;
  }

  /**
   * Re-attaches to a VMM started by an earlier agent. The pid alone proves nothing (pids are
   * reused), so the process must be a Firecracker holding this VM's API socket, and the API
   * must answer with this VM's id.
   */
  async adopt(spec: MachineSpec, pid: number): Promise<FirecrackerMachine> {
    const layout = this.plan(spec);
    const stat = await readProcStat(pid);
    if (!stat) throw new Error(`adopt VM ${spec.id}: no process ${pid}`);
    const api = new FirecrackerApi(layout.socketPath, this.requestTimeoutMs());
    let state: string;
    try {
      const { comm, argv0 } = await processIdentity(pid);
      if (!comm.includes('firecracker') && !basename(argv0).includes('firecracker')) {
        throw new Error(`process ${pid} is ${JSON.stringify(comm)}, not a Firecracker`);
      }
      if (!(await ownsUnixSocket(pid, layout.socketInVmm))) {
        throw new Error(`process ${pid} does not hold the API socket ${layout.socketInVmm}`);
      }
      const info = parseInstanceInfo(await api.send(describeInstanceCall()));
      if (info.id !== spec.id) throw new Error(`process ${pid} runs instance ${info.id}`);
      state = info.state;
    } catch (cause) {
      throw new Error(`adopt VM ${spec.id}`, { cause });
    }
    const exited = watchForExit(pid, stat.startTicks, adoptedPollMs);
    const machine = this.assemble(spec, layout, api, pid, exited, async (signal) => {
      // Recheck the start time: the VMM may have ended and its pid been reused meanwhile.
      if ((await readProcStat(pid))?.startTicks !== stat.startTicks) return;
      try {
        process.kill(pid, signal);
      } catch (error) {
        // Gone between the check and the signal: what the caller wanted anyway.
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
      }
    });
    this.options.log.info({ vm: spec.id, pid, state }, 'VMM adopted');
    return machine;
  }

  private plan(spec: MachineSpec, snapshot?: SnapshotFiles): VmLayout {
    assertMachineId(spec.id);
    return planLayout(spec, this.options.firecrackerBin, this.options.jailer, snapshot);
  }

  /** Starts the VMM process and waits until its API answers. */
  private async launch(spec: MachineSpec, layout: VmLayout): Promise<FirecrackerMachine> {
    const { options } = this;
    await mkdir(spec.runDir, { recursive: true });
    if (options.jailer) {
      await prepareJail(layout, options.jailer);
    } else {
      // A socket left by a killed VMM would make Firecracker fail to bind.
      await rm(layout.socketPath, { force: true });
      for (const path of [layout.logPath, layout.metricsPath]) {
        await writeFile(path, '', { flag: 'a' });
      }
    }
    const { command, args } = launchCommand(spec, layout, {
      firecrackerBin: options.firecrackerBin,
      ...(options.jailer ? { jailer: options.jailer } : {}),
      logLevel: options.logLevel ?? 'Info',
      ipBin: options.ipBin ?? 'ip',
    });
    const consoleFd = openSync(layout.consoleLogPath, 'a');
    // Detached, and not waited for by Node: the VM must outlive an agent restart.
    const child = spawn(command, args, { stdio: ['ignore', consoleFd, consoleFd], detached: true });
    closeSync(consoleFd);
    const exited = new Promise<number | string>((resolve) => {
      child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
      child.on('error', (error) => {
        options.log.error({ vm: spec.id, err: error, command }, 'cannot start the VMM');
        resolve(`spawn-error: ${(error as NodeJS.ErrnoException).code ?? error.message}`);
      });
    });
    child.unref();
    const pid = child.pid ?? -1;
    options.log.info({ vm: spec.id, pid, command, jailed: !!options.jailer }, 'VMM started');
    const api = new FirecrackerApi(layout.socketPath, this.requestTimeoutMs());
    const machine = this.assemble(spec, layout, api, pid, exited, async (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    });
    await this.waitForApi(spec, layout, exited, machine);
    return machine;
  }

  private assemble(
    spec: MachineSpec,
    layout: VmLayout,
    api: FirecrackerApi,
    pid: number,
    exited: Promise<number | string>,
    signal: MachineParts['signal'],
  ): FirecrackerMachine {
    const { jailer, log } = this.options;
    const gone = exited.then(async (exit) => {
      log.info({ vm: spec.id, pid, exit }, 'VMM exited');
      try {
        if (jailer) await removeJail(layout, jailer, spec.id, spec.runDir);
        else await rm(layout.socketPath, { force: true });
      } catch (error) {
        log.warn({ vm: spec.id, err: error }, 'cleanup after VMM exit failed');
      }
    });
    return new FirecrackerMachine({
      spec,
      layout,
      api,
      log,
      pid,
      exited,
      gone,
      signal,
      balloonStatistics: (this.options.balloon?.statsPollingIntervalSeconds ?? 0) > 0,
    });
  }

  /** Polls the socket until `GET /` answers; a VMM that exits or hangs is reported. */
  private async waitForApi(
    spec: MachineSpec,
    layout: VmLayout,
    exited: Promise<number | string>,
    machine: FirecrackerMachine,
  ): Promise<void> {
    const timeoutMs = this.options.apiReadyTimeoutMs ?? defaultApiReadyTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    let exit: number | string | undefined;
    void exited.then((value) => {
      exit = value;
    });
    let lastError: unknown;
    while (exit === undefined && Date.now() < deadline) {
      try {
        await machine.request({ ...describeInstanceCall(), timeoutMs: 1_000 });
        return;
      } catch (error) {
        lastError = error;
        await delay(25);
      }
    }
    const why = exit === undefined ? `no API within ${timeoutMs} ms` : `VMM exited (${exit})`;
    // Also waits for the cleanup, which moves a jailed VMM's log out of the jail.
    await machine.kill();
    throw new Error(
      `start Firecracker for VM ${spec.id}: ${why}; its output ends with:\n` +
        (await outputTail(spec, layout)),
      { cause: lastError },
    );
  }

  private requestTimeoutMs(): number {
    return this.options.requestTimeoutMs ?? defaultRequestTimeoutMs;
  }
}

/** The last lines of Firecracker's log and console: where it says why it stopped. */
async function outputTail(spec: MachineSpec, layout: VmLayout): Promise<string> {
  const tails: string[] = [];
  const logPath = layout.jail ? join(spec.runDir, 'firecracker.log') : layout.logPath;
  for (const path of [logPath, layout.consoleLogPath]) {
    const text = await readFile(path, 'utf8').catch(() => '');
    const lines = text.trimEnd().split('\n').slice(-8).join('\n');
    if (lines) tails.push(`${path}:\n${lines}`);
  }
  return tails.join('\n') || '(no output)';
}
