/**
 * The Firecracker driver: one `firecracker` process per VM, configured and controlled over
 * the REST API on a Unix socket in the VM's runDir (or in its jail).
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ownsUnixSocket, processArguments, processIdentity, readProcStat } from '../proc.ts';
import { adoptedVmm, outputTail, spawnVmm, type VmmProcess, waitForReady } from '../process.ts';
import type { Driver, MachineSpec, SnapshotFiles } from '../types.ts';
import { FirecrackerApi } from './api.ts';
import { prepareJail, removeJail } from './jail.ts';
import { launchCommand, planLayout, type VmLayout } from './layout.ts';
import { FirecrackerMachine } from './machine.ts';
import {
  defaultApiReadyTimeoutMs,
  defaultRequestTimeoutMs,
  type FirecrackerDriverOptions,
} from './options.ts';
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
    const vmm = adoptedVmm(pid, stat.startTicks, adoptedPollMs);
    const machine = this.assemble(spec, layout, api, vmm);
    this.options.log.info({ vm: spec.id, pid, state }, 'VMM adopted');
    return machine;
  }

  /**
   * Firecracker runs with `--id <VM id>`, also when the jailer starts it (the jailer passes
   * its own `--id` on), and no other VM has that id.
   */
  async ownsProcess(spec: MachineSpec, pid: number): Promise<boolean> {
    const [{ comm, argv0 }, argv] = await Promise.all([
      processIdentity(pid),
      processArguments(pid),
    ]).catch(() => [{ comm: '', argv0: '' }, [] as string[]] as const);
    if (!comm.includes('firecracker') && !basename(argv0).includes('firecracker')) return false;
    return argv.some((arg, index) => arg === spec.id && argv[index - 1] === '--id');
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
    // Firecracker's stdout and stderr are the guest's serial console.
    const vmm = spawnVmm({
      command,
      args,
      outputPath: layout.consoleLogPath,
      log: options.log,
      vm: spec.id,
    });
    options.log.info(
      { vm: spec.id, pid: vmm.pid, command, jailed: !!options.jailer },
      'VMM started',
    );
    const api = new FirecrackerApi(layout.socketPath, this.requestTimeoutMs());
    const machine = this.assemble(spec, layout, api, vmm);
    await this.waitForApi(spec, layout, vmm.exited, machine);
    return machine;
  }

  private assemble(
    spec: MachineSpec,
    layout: VmLayout,
    api: FirecrackerApi,
    vmm: VmmProcess,
  ): FirecrackerMachine {
    const { jailer, log } = this.options;
    const { pid, exited, signal } = vmm;
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
    const outcome = await waitForReady({
      check: () => machine.request({ ...describeInstanceCall(), timeoutMs: 1_000 }),
      exited,
      timeoutMs: this.options.apiReadyTimeoutMs ?? defaultApiReadyTimeoutMs,
      what: 'API',
    });
    if ('value' in outcome) return;
    // Also waits for the cleanup, which moves a jailed VMM's log out of the jail.
    await machine.kill();
    const logPath = layout.jail ? join(spec.runDir, 'firecracker.log') : layout.logPath;
    throw new Error(
      `start Firecracker for VM ${spec.id}: ${outcome.reason}; its output ends with:\n` +
        (await outputTail([logPath, layout.consoleLogPath])),
      { cause: outcome.lastError },
    );
  }

  private requestTimeoutMs(): number {
    return this.options.requestTimeoutMs ?? defaultRequestTimeoutMs;
  }
}
