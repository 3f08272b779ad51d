/**
 * The QEMU driver: one `qemu-system-x86_64 -M microvm` process per VM, started paused and
 * controlled over QMP on a Unix socket in the VM's runDir.
 */
import { mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { hostTscKhz } from '../../kernel/tsc.ts';
import { processArguments, processIdentity, readProcStat } from '../proc.ts';
import {
  adoptedVmm,
  inNetns,
  outputTail,
  spawnVmm,
  type VmmProcess,
  waitForReady,
} from '../process.ts';
import type { Driver, MachineSpec, SnapshotFiles } from '../types.ts';
import { type AccelChoice, chooseAccel } from './accel.ts';
import {
  balloonQomPath,
  type LaunchSettings,
  planLayout,
  type QemuLayout,
  qemuArguments,
  servesQmpAt,
  withTscKeys,
} from './layout.ts';
import { QemuMachine } from './machine.ts';
import {
  defaultCommandTimeoutMs,
  defaultQmpReadyTimeoutMs,
  type QemuDriverOptions,
  snapshotTimeoutMs,
} from './options.ts';
import { QmpClient } from './qmp.ts';

/** How often an adopted VMM's liveness is checked in /proc. */
const adoptedPollMs = 1_000;
/** How often a restoring VMM is asked whether it has loaded its snapshot. */
const incomingPollMs = 20;

/** Runs VMs as QEMU microVMs. */
export class QemuDriver implements Driver {
  readonly type = 'qemu';
  private readonly options: QemuDriverOptions;
  private accel: Promise<AccelChoice> | undefined;
  private tscKhz: Promise<number | undefined> | undefined;

  constructor(options: QemuDriverOptions) {
    this.options = options;
  }

  async create(spec: MachineSpec): Promise<QemuMachine> {
    const layout = planLayout(spec);
    const machine = await this.launch(spec, layout, await this.settings(spec));
    try {
      await this.configureBalloon(machine);
    } catch (error) {
      await machine.kill();
      throw new Error(`create VM ${spec.id}`, { cause: error });
    }
    this.options.log.info({ vm: spec.id, pid: machine.pid }, 'VMM configured');
    return machine;
  }

  /**
   * Starts a QEMU that loads the snapshot in `files.statePath` (QEMU keeps memory in the same
   * file; `files.memoryPath` is not read). The spec must describe the same devices as the
   * snapshotted VM, and its disks must be as they were when the snapshot was taken.
   */
  async restore(spec: MachineSpec, files: SnapshotFiles, resume: boolean): Promise<QemuMachine> {
    const layout = planLayout(spec);
    const started = Date.now();
    await checkSnapshotFile(spec, files.statePath);
    const settings = { ...(await this.settings(spec)), incomingStatePath: files.statePath };
    // A snapshot QEMU cannot load may end it before QMP answers; say what was attempted.
    const machine = await this.launch(spec, layout, settings).catch((cause: unknown) => {
      throw new Error(`restore VM ${spec.id} from ${files.statePath}`, { cause });
    });
    try {
      await this.waitForSnapshotLoaded(machine);
      await this.configureBalloon(machine);
      if (resume) await machine.resume();
    } catch (error) {
      await machine.kill();
      throw new Error(
        `restore VM ${spec.id} from ${files.statePath}; QEMU's output ends with:\n` +
          (await outputTail([layout.outputPath])),
        { cause: error },
      );
    }
    this.options.log.info(
      { vm: spec.id, pid: machine.pid, resumed: resume, durationMs: Date.now() - started },
      'snapshot loaded',
    );
    return machine;
  }

  /**
   * Re-attaches to a QEMU started by an earlier agent. The pid alone proves nothing (pids are
   * reused), so the process must be a QEMU serving QMP on this VM's socket, and QMP must
   * answer with this VM's name. The earlier agent's QMP connection must be closed: QEMU
   * serves one client at a time.
   */
  async adopt(spec: MachineSpec, pid: number): Promise<QemuMachine> {
    const layout = planLayout(spec);
    const stat = await readProcStat(pid);
    if (!stat) throw new Error(`adopt VM ${spec.id}: no process ${pid}`);
    let qmp: QmpClient | undefined;
    let status: unknown;
    try {
      const [{ comm }, argv] = await Promise.all([processIdentity(pid), processArguments(pid)]);
      if (!comm.includes('qemu') && !basename(argv[0] ?? '').includes('qemu')) {
        throw new Error(`process ${pid} is ${JSON.stringify(comm)}, not a QEMU`);
      }
      if (!servesQmpAt(argv, layout.qmpSocketPath)) {
        throw new Error(`process ${pid} does not serve QMP at ${layout.qmpSocketPath}`);
      }
      qmp = await this.connectQmp(layout);
      const { name } = (await qmp.execute('query-name')) as { name?: string };
      if (name !== spec.id) throw new Error(`process ${pid} runs VM ${JSON.stringify(name)}`);
      ({ status } = (await qmp.execute('query-status')) as { status?: string });
    } catch (cause) {
      qmp?.close();
      throw new Error(`adopt VM ${spec.id}`, { cause });
    }
    const vmm = adoptedVmm(pid, stat.startTicks, adoptedPollMs);
    const machine = await this.assemble(spec, layout, vmm, qmp);
    this.options.log.info({ vm: spec.id, pid, status }, 'VMM adopted');
    return machine;
  }

  /** A QEMU serving QMP on this VM's socket, which lives in the VM's own run dir. */
  async ownsProcess(spec: MachineSpec, pid: number): Promise<boolean> {
    const [{ comm }, argv] = await Promise.all([processIdentity(pid), processArguments(pid)]).catch(
      () => [{ comm: '' }, [] as string[]] as const,
    );
    if (!comm.includes('qemu') && !basename(argv[0] ?? '').includes('qemu')) return false;
    return servesQmpAt(argv, planLayout(spec).qmpSocketPath);
  }

  /** How this driver launches `spec`: the acceleration and what TCG adds to the cmdline. */
  private async settings(spec: MachineSpec): Promise<LaunchSettings> {
    const { log } = this.options;
    this.accel ??= chooseAccel(this.options.accel ?? 'auto').then((choice) => {
      log.info({ accel: choice.accel, reason: choice.reason }, 'QEMU acceleration chosen');
      return choice;
    });
    const { accel } = await this.accel;
    const settings: LaunchSettings = {
      accel,
      bootArgs: spec.bootArgs,
      ...(this.options.balloon ? { balloon: this.options.balloon } : {}),
    };
    if (accel === 'tcg') {
      this.tscKhz ??= (async () => {
        const khz = this.options.tscKhz ?? (await hostTscKhz());
        if (khz === undefined) {
          log.warn({}, 'host TSC rate unknown (set tscKhz); guests under TCG may hang at boot');
        }
        return khz;
      })();
      const khz = await this.tscKhz;
      if (khz !== undefined) settings.bootArgs = withTscKeys(spec.bootArgs, khz);
    }
    return settings;
  }

  /** Starts QEMU (paused) and waits until QMP answers. */
  private async launch(
    spec: MachineSpec,
    layout: QemuLayout,
    settings: LaunchSettings,
  ): Promise<QemuMachine> {
    const { log } = this.options;
    await mkdir(spec.runDir, { recursive: true });
    // Left by a killed QEMU; the new one must not be mistaken for it.
    await rm(layout.qmpSocketPath, { force: true });
    await rm(layout.pidFilePath, { force: true });
    // QEMU's own output is about this process only (the console log keeps the history).
    await writeFile(layout.outputPath, '');
    const { command, args } = inNetns(
      spec.netns,
      this.options.qemuPath ?? 'qemu-system-x86_64',
      qemuArguments(spec, layout, settings),
      this.options.ipBin,
    );
    const vmm = spawnVmm({ command, args, outputPath: layout.outputPath, log, vm: spec.id });
    log.info({ vm: spec.id, pid: vmm.pid, command, accel: settings.accel }, 'VMM started');
    const ready = await waitForReady({
      check: () => this.connectQmp(layout, 1_000),
      exited: vmm.exited,
      timeoutMs: this.options.qmpReadyTimeoutMs ?? defaultQmpReadyTimeoutMs,
      what: 'QMP',
    });
    if ('value' in ready) return this.assemble(spec, layout, vmm, ready.value);
    await vmm.signal('SIGKILL');
    await vmm.exited;
    throw new Error(
      `start QEMU for VM ${spec.id}: ${ready.reason}; its output ends with:\n` +
        (await outputTail([layout.outputPath])),
      { cause: ready.lastError },
    );
  }

  private async assemble(
    spec: MachineSpec,
    layout: QemuLayout,
    vmm: VmmProcess,
    qmp: QmpClient,
  ): Promise<QemuMachine> {
    const { log, balloon } = this.options;
    // The socket as this QEMU made it, so cleanup never removes a later QEMU's socket.
    const socketInode = (await stat(layout.qmpSocketPath).catch(() => undefined))?.ino;
    const gone = vmm.exited.then(async (exit) => {
      log.info({ vm: spec.id, pid: vmm.pid, exit }, 'VMM exited');
      try {
        await removeSocket(layout.qmpSocketPath, socketInode);
        await removePidFile(layout.pidFilePath, vmm.pid);
      } catch (error) {
        log.warn({ vm: spec.id, err: error }, 'cleanup after VMM exit failed');
      }
    });
    return new QemuMachine({
      spec,
      layout,
      log,
      vmm,
      gone,
      qmp,
      connectQmp: () => this.connectQmp(layout),
      balloon: balloon ? { statistics: balloon.statsPollingIntervalSeconds > 0 } : undefined,
    });
  }

  /** Turns on the balloon's statistics; QEMU has no command-line switch for them. */
  private async configureBalloon(machine: QemuMachine): Promise<void> {
    const interval = this.options.balloon?.statsPollingIntervalSeconds ?? 0;
    if (interval <= 0) return;
    await machine.execute(
      'qom-set',
      { path: balloonQomPath, property: 'guest-stats-polling-interval', value: interval },
      { attempt: `turn on balloon statistics of VM ${machine.id}` },
    );
  }

  /**
   * A restoring QEMU reports `inmigrate` until the snapshot is loaded, then `paused`. A load
   * that fails ends QEMU (seen through `status`); one that never starts leaves it waiting
   * forever, which QEMU shows as an empty `query-migrate`.
   */
  private async waitForSnapshotLoaded(machine: QemuMachine): Promise<void> {
    const started = Date.now();
    const startTimeoutMs = this.options.commandTimeoutMs ?? defaultCommandTimeoutMs;
    for (;;) {
      const { status } = await machine.status();
      if (status === 'paused' || status === 'running') return;
      if (status !== 'inmigrate') throw new Error(`QEMU is ${status} after loading the snapshot`);
      const elapsed = Date.now() - started;
      if (elapsed > startTimeoutMs) {
        const migration = (await machine.execute('query-migrate')) as { status?: string };
        if (migration.status === undefined) {
          throw new Error(`QEMU did not start reading the snapshot within ${startTimeoutMs} ms`);
        }
      }
      if (elapsed > snapshotTimeoutMs) {
        throw new Error(`snapshot not loaded within ${snapshotTimeoutMs} ms`);
      }
      await delay(incomingPollMs);
    }
  }

  /** Connects to QMP; `timeoutMs` bounds the greeting (default: the command timeout). */
  private connectQmp(layout: QemuLayout, timeoutMs?: number): Promise<QmpClient> {
    const commandTimeoutMs = this.options.commandTimeoutMs ?? defaultCommandTimeoutMs;
    return QmpClient.connect(layout.qmpSocketPath, {
      timeoutMs: timeoutMs ?? commandTimeoutMs,
      commandTimeoutMs,
    });
  }
}

/**
 * Refuses a file that is not a QEMU migration stream (magic `QEVM`, version 3) before QEMU
 * gets it: QEMU waits forever on an empty stream instead of failing.
 */
async function checkSnapshotFile(spec: MachineSpec, path: string): Promise<void> {
  const header = Buffer.alloc(8);
  try {
    const file = await open(path, 'r');
    try {
      await file.read(header, 0, header.length, 0);
    } finally {
      await file.close();
    }
  } catch (cause) {
    throw new Error(`restore VM ${spec.id}: cannot read snapshot ${path}`, { cause });
  }
  if (header.toString('latin1', 0, 4) !== 'QEVM' || header.readUInt32BE(4) !== 3) {
    throw new Error(`restore VM ${spec.id}: ${path} is not a QEMU snapshot (no QEVM v3 header)`);
  }
}

/** Removes the QMP socket, unless another QEMU has bound a new one at the same path. */
async function removeSocket(path: string, inode: number | undefined): Promise<void> {
  const current = await stat(path).catch(() => undefined);
  if (current && (inode === undefined || current.ino === inode)) await rm(path, { force: true });
}

/** Removes the pidfile if it still names `pid` (QEMU leaves it behind when killed). */
async function removePidFile(path: string, pid: number): Promise<void> {
  const text = await readFile(path, 'utf8').catch(() => '');
  if (text.trim() === String(pid)) await rm(path, { force: true });
}
