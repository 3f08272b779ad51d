/** One QEMU process and the VM inside it, driven over QMP. */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { DriverLogger } from '../logger.ts';
import { processUsage } from '../proc.ts';
import type { VmmProcess } from '../process.ts';
import type { Machine, MachineSpec, MachineStats, SnapshotFiles } from '../types.ts';
import { balloonQomPath, type QemuLayout, snapshotUri } from './layout.ts';
import { snapshotTimeoutMs } from './options.ts';
import { type QmpClient, type QmpCommandOptions, QmpError, type QmpEvent } from './qmp.ts';

/** QEMU's run states (`query-status`) the driver tells apart. */
export interface QemuStatus {
  /** `prelaunch` (created), `running`, `paused`, `postmigrate` (after a snapshot), ... */
  status: string;
  running: boolean;
}

/** What the driver hands a machine once its process runs. */
export interface QemuMachineParts {
  spec: MachineSpec;
  layout: QemuLayout;
  log: DriverLogger;
  vmm: VmmProcess;
  /** Resolves once the process has exited and its socket and pidfile are removed. */
  gone: Promise<void>;
  /** Opens a QMP connection to this VM's QEMU. */
  connectQmp(): Promise<QmpClient>;
  /** The connection the driver made while starting or adopting the VMM. */
  qmp: QmpClient;
  /** A balloon with statistics was configured, so `stats` asks for them. */
  balloon: { statistics: boolean } | undefined;
}

/** How often `query-migrate` is asked while a snapshot is written. */
const migratePollMs = 20;

/** A running (or paused) QEMU microVM. */
export class QemuMachine implements Machine {
  readonly id: string;
  readonly pid: number;
  readonly consoleLogPath: string;
  readonly exited: Promise<number | string>;
  readonly qmpSocketPath: string;
  private readonly parts: QemuMachineParts;
  private readonly listeners = new Set<(event: QmpEvent) => void>();
  private qmp: QmpClient | undefined;
  private reconnecting: Promise<QmpClient> | undefined;
  private hasExited = false;
  private detached = false;

  constructor(parts: QemuMachineParts) {
    this.parts = parts;
    this.id = parts.spec.id;
    this.pid = parts.vmm.pid;
    this.consoleLogPath = parts.layout.consoleLogPath;
    this.qmpSocketPath = parts.layout.qmpSocketPath;
    this.exited = parts.vmm.exited;
    this.attach(parts.qmp);
    void parts.vmm.exited.then(() => {
      this.hasExited = true;
      this.qmp?.close();
    });
  }

  /** Boots the guest: QEMU was started paused before its first instruction. */
  async start(): Promise<void> {
    await this.execute('cont', undefined, { attempt: `start VM ${this.id}` });
    this.parts.log.info({ vm: this.id, pid: this.pid }, 'guest booting');
  }

  async pause(): Promise<void> {
    await this.execute('stop', undefined, { attempt: `pause VM ${this.id}` });
    this.parts.log.info({ vm: this.id }, 'VM paused');
  }

  /** Resumes a paused VM, also one that was snapshotted (QEMU's `postmigrate` state). */
  async resume(): Promise<void> {
    await this.execute('cont', undefined, { attempt: `resume VM ${this.id}` });
    this.parts.log.info({ vm: this.id }, 'VM resumed');
  }

  /** QEMU's run state. */
  async status(): Promise<QemuStatus> {
    const answer = (await this.execute('query-status', undefined, {
      attempt: `query the state of VM ${this.id}`,
    })) as Partial<QemuStatus>;
    return { status: String(answer.status), running: answer.running === true };
  }

  /** Calls `listener` with every QMP event of this VM (SHUTDOWN, STOP, RESUME, ...). */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Sends one QMP command as is. */
  async execute(
    command: string,
    args?: Record<string, unknown>,
    options?: QmpCommandOptions,
  ): Promise<unknown> {
    const qmp = await this.connection(options?.attempt ?? `QMP ${command} on VM ${this.id}`);
    return qmp.execute(command, args, options);
  }

  /**
   * Closes the QMP connection and leaves the VM running, as an agent that shuts down does.
   * QEMU serves one QMP client at a time, so another agent can only adopt the VM after this.
   */
  detach(): void {
    this.detached = true;
    this.qmp?.close();
    this.parts.log.info({ vm: this.id, pid: this.pid }, 'VMM detached');
  }

  /**
   * Presses the ACPI power button and waits up to `timeoutMs` for QEMU to exit. Halfway it
   * presses again, which the guest init takes as "kill everything now"; at the end the VMM
   * is killed. A paused guest cannot see the button, so it is resumed first.
   */
  async stop(timeoutMs: number): Promise<void> {
    const { log } = this.parts;
    if (this.hasExited) return this.parts.gone;
    const started = Date.now();
    try {
      const { status } = await this.status();
      if (status === 'prelaunch' || status === 'inmigrate') {
        log.info({ vm: this.id, status }, 'guest never ran; killing the VMM');
        return this.kill();
      }
      if (status !== 'running') await this.resume();
      await this.execute('system_powerdown', undefined, { attempt: `power down VM ${this.id}` });
    } catch (error) {
      if (this.hasExited) return this.parts.gone;
      log.warn({ vm: this.id, err: error }, 'power button press failed; killing the VMM');
      return this.kill();
    }
    if (await this.goneWithin(timeoutMs / 2)) return this.stopped(started);
    log.warn({ vm: this.id }, 'guest still running; pressing the power button again');
    await this.execute('system_powerdown', undefined, {
      attempt: `power down VM ${this.id} (second press)`,
    }).catch((error: unknown) => log.warn({ vm: this.id, err: error }, 'second press failed'));
    if (await this.goneWithin(timeoutMs - (Date.now() - started))) return this.stopped(started);
    log.warn({ vm: this.id, timeoutMs }, 'guest did not shut down in time; killing the VMM');
    return this.kill();
  }

  async kill(): Promise<void> {
    if (!this.hasExited) await this.parts.vmm.signal('SIGKILL');
    await this.parts.gone;
    this.parts.log.info({ vm: this.id, exit: await this.exited }, 'VMM gone');
  }

  /**
   * Writes state and memory into one file, `files.statePath`, by migrating to a file; the VM
   * must be paused. `files.memoryPath` gets an empty marker, since QEMU keeps guest memory in
   * the state file. Disks are not included.
   */
  async snapshot(files: SnapshotFiles): Promise<void> {
    const attempt = `snapshot VM ${this.id} to ${files.statePath}`;
    const started = Date.now();
    const { status } = await this.status();
    if (status !== 'paused' && status !== 'postmigrate') {
      throw new Error(`${attempt}: the VM must be paused, it is ${status}`);
    }
    try {
      await mkdir(dirname(files.statePath), { recursive: true });
      // Without a limit QEMU throttles migration to 32 MiB/s, its default for live migration.
      await this.execute('migrate-set-parameters', { 'max-bandwidth': 2 ** 40 }, { attempt });
      await this.execute('migrate', { uri: snapshotUri(files.statePath) }, { attempt });
      await this.waitForMigration(attempt);
      if (files.memoryPath && files.memoryPath !== files.statePath) {
        await mkdir(dirname(files.memoryPath), { recursive: true });
        await writeFile(files.memoryPath, '');
      }
    } catch (error) {
      await rm(files.statePath, { force: true });
      throw error instanceof QmpError ? error : new Error(attempt, { cause: error });
    }
    this.parts.log.info(
      { vm: this.id, statePath: files.statePath, durationMs: Date.now() - started },
      'snapshot written',
    );
  }

  async stats(): Promise<MachineStats> {
    let usage: Awaited<ReturnType<typeof processUsage>>;
    try {
      usage = await processUsage(this.pid);
    } catch (cause) {
      throw new Error(`read CPU and memory use of VM ${this.id} (pid ${this.pid})`, { cause });
    }
    if (!this.parts.balloon) return usage;
    try {
      return { ...usage, ...(await this.guestMemory(this.parts.balloon.statistics)) };
    } catch (error) {
      // The process figures are still worth returning when the guest's figures are not.
      this.parts.log.debug({ vm: this.id, err: error }, 'no balloon figures');
      return usage;
    }
  }

  /**
   * The guest's memory: what the balloon leaves it (`query-balloon`) and, once the guest's
   * balloon driver reports them, its own total and available figures. A figure the guest has
   * not reported is all ones (-1 as an unsigned 64-bit number) and is left out.
   */
  private async guestMemory(statistics: boolean): Promise<MachineStats> {
    const attempt = `read the balloon of VM ${this.id}`;
    const balloon = (await this.execute('query-balloon', undefined, { attempt })) as {
      actual?: number;
    };
    const figures: MachineStats = {};
    if (typeof balloon.actual === 'number') figures.memoryTotalBytes = balloon.actual;
    if (!statistics) return figures;
    const answer = (await this.execute(
      'qom-get',
      { path: balloonQomPath, property: 'guest-stats' },
      { attempt },
    )) as { stats?: Record<string, number> };
    const total = answer.stats?.['stat-total-memory'];
    const available = answer.stats?.['stat-available-memory'];
    if (isReported(total)) figures.memoryTotalBytes = total;
    if (isReported(available)) figures.memoryAvailableBytes = available;
    return figures;
  }

  private async waitForMigration(attempt: string): Promise<void> {
    const deadline = Date.now() + snapshotTimeoutMs;
    for (;;) {
      const answer = (await this.execute('query-migrate', undefined, { attempt })) as {
        status?: string;
        'error-desc'?: string;
      };
      if (answer.status === 'completed') return;
      if (answer.status === 'failed' || answer.status === 'cancelled') {
        throw new QmpError(attempt, 'MigrationFailed', answer['error-desc'] ?? answer.status);
      }
      if (Date.now() > deadline) {
        await this.execute('migrate_cancel', undefined, { attempt }).catch(() => undefined);
        throw new Error(`${attempt}: not done within ${snapshotTimeoutMs} ms`);
      }
      await delay(migratePollMs);
    }
  }

  private async goneWithin(ms: number): Promise<boolean> {
    const abort = new AbortController();
    const inTime = await Promise.race([
      this.parts.gone.then(() => true),
      delay(Math.max(0, ms), false, { signal: abort.signal }).catch(() => false),
    ]);
    abort.abort();
    return inTime;
  }

  private async stopped(started: number): Promise<void> {
    this.parts.log.info(
      { vm: this.id, exit: await this.exited, durationMs: Date.now() - started },
      'guest shut down',
    );
  }

  /** The open QMP connection, reopened if it dropped while QEMU still runs. */
  private async connection(attempt: string): Promise<QmpClient> {
    if (this.qmp?.isOpen) return this.qmp;
    if (this.hasExited) throw new Error(`${attempt}: the VMM has exited`);
    if (this.detached) throw new Error(`${attempt}: the VMM was detached from this agent`);
    this.reconnecting ??= this.parts.connectQmp().finally(() => {
      this.reconnecting = undefined;
    });
    try {
      const qmp = await this.reconnecting;
      this.attach(qmp);
      return qmp;
    } catch (cause) {
      throw new Error(`${attempt}: cannot reach QMP at ${this.qmpSocketPath}`, { cause });
    }
  }

  private attach(qmp: QmpClient): void {
    if (this.qmp === qmp) return;
    this.qmp = qmp;
    qmp.onEvent((event) => {
      const fields = { vm: this.id, event: event.event, data: event.data };
      if (event.event === 'SHUTDOWN' || event.event === 'POWERDOWN') {
        this.parts.log.info(fields, 'QEMU event');
      } else {
        this.parts.log.debug(fields, 'QEMU event');
      }
      for (const listener of this.listeners) {
        try {
          listener(event);
        } catch (error) {
          this.parts.log.warn(
            { vm: this.id, err: error, event: event.event },
            'event listener failed',
          );
        }
      }
    });
  }
}

function isReported(figure: number | undefined): figure is number {
  return figure !== undefined && figure >= 0 && figure <= Number.MAX_SAFE_INTEGER;
}
