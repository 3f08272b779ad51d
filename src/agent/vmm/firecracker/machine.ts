/** One Firecracker process and the VM inside it, driven over its API socket. */
import { setTimeout as delay } from 'node:timers/promises';
import type { DriverLogger } from '../logger.ts';
import { processUsage } from '../proc.ts';
import type { Machine, MachineSpec, MachineStats, SnapshotFiles } from '../types.ts';
import type { ApiCall, FirecrackerApi } from './api.ts';
import { moveFile } from './jail.ts';
import { jailSnapshotMemory, jailSnapshotState, type VmLayout } from './layout.ts';
import {
  balloonStatisticsCall,
  ctrlAltDelCall,
  describeInstanceCall,
  type InstanceInfo,
  instanceStartCall,
  memoryFromBalloonStatistics,
  parseInstanceInfo,
  snapshotCreateCall,
  vmStateCall,
} from './requests.ts';

/** What the driver hands a machine once its process runs. */
export interface MachineParts {
  spec: MachineSpec;
  layout: VmLayout;
  api: FirecrackerApi;
  log: DriverLogger;
  pid: number;
  /** Resolves with the exit code or signal (`unknown` for an adopted process). */
  exited: Promise<number | string>;
  /** Resolves once the process has exited and its socket (or jail) is cleaned up. */
  gone: Promise<void>;
  /** Delivers a signal to the VMM, unless it is already gone. */
  signal(name: NodeJS.Signals): Promise<void>;
  /** A balloon with statistics was configured, so `stats` asks for them. */
  balloonStatistics: boolean;
}

/** A running (or paused) Firecracker VM. */
export class FirecrackerMachine implements Machine {
  readonly id: string;
  readonly pid: number;
  readonly consoleLogPath: string;
  readonly exited: Promise<number | string>;
  /** The API socket, as the agent connects to it. */
  readonly socketPath: string;
  private readonly parts: MachineParts;
  private hasExited = false;

  constructor(parts: MachineParts) {
    this.parts = parts;
    this.id = parts.spec.id;
    this.pid = parts.pid;
    this.consoleLogPath = parts.layout.consoleLogPath;
    this.socketPath = parts.layout.socketPath;
    this.exited = parts.exited;
    void parts.exited.then(() => {
      this.hasExited = true;
    });
  }

  async start(): Promise<void> {
    await this.parts.api.send(instanceStartCall());
    this.parts.log.info({ vm: this.id, pid: this.pid }, 'guest booting');
  }

  async pause(): Promise<void> {
    await this.parts.api.send(vmStateCall('Paused'));
    this.parts.log.info({ vm: this.id }, 'VM paused');
  }

  async resume(): Promise<void> {
    await this.parts.api.send(vmStateCall('Resumed'));
    this.parts.log.info({ vm: this.id }, 'VM resumed');
  }

  /** Sends one API request as is; the driver configures the VM through it. */
  request(call: ApiCall): Promise<unknown> {
    return this.parts.api.send(call);
  }

  /** Firecracker's view of the VM: `Not started`, `Running` or `Paused`. */
  async describe(): Promise<InstanceInfo> {
    return parseInstanceInfo(await this.parts.api.send(describeInstanceCall()));
  }

  /**
   * Ctrl-Alt-Del reaches a guest only through its i8042 keyboard controller; a Linux guest
   * reboots, and Firecracker ends on the reboot. A paused guest cannot react, nor can one
   * without a keyboard driver, so both end by SIGKILL after `timeoutMs`.
   */
  async stop(timeoutMs: number): Promise<void> {
    const { log } = this.parts;
    if (this.hasExited) return this.parts.gone;
    try {
      await this.parts.api.send(ctrlAltDelCall());
    } catch (error) {
      log.warn({ vm: this.id, err: error }, 'Ctrl-Alt-Del failed; killing the VMM');
      return this.kill();
    }
    const abort = new AbortController();
    const inTime = await Promise.race([
      this.parts.gone.then(() => true),
      delay(timeoutMs, false, { signal: abort.signal }).catch(() => false),
    ]);
    abort.abort();
    if (inTime) {
      log.info({ vm: this.id, exit: await this.exited }, 'guest shut down');
      return;
    }
    log.warn({ vm: this.id, timeoutMs }, 'guest did not shut down in time; killing the VMM');
    return this.kill();
  }

  async kill(): Promise<void> {
    if (!this.hasExited) await this.parts.signal('SIGKILL');
    await this.parts.gone;
    this.parts.log.info({ vm: this.id, exit: await this.exited }, 'VMM gone');
  }

  /**
   * A jailed Firecracker can only write inside its jail, so the snapshot is written there
   * and then moved to the requested paths.
   */
  /**
   * Firecracker's API is one HTTP request per call over its socket, so there is no
   * connection to close: the VMM keeps running and a later agent adopts it by pid.
   */
  detach(): void {}

  async snapshot(files: SnapshotFiles): Promise<void> {
    const { api, layout, log } = this.parts;
    const started = Date.now();
    if (!layout.jail) {
      await api.send(snapshotCreateCall(files.statePath, files.memoryPath));
    } else {
      await api.send(snapshotCreateCall(jailSnapshotState, jailSnapshotMemory));
      const inRoot = (name: string): string => `${layout.jail?.root}${name}`;
      try {
        await moveFile(inRoot(jailSnapshotState), files.statePath);
        await moveFile(inRoot(jailSnapshotMemory), files.memoryPath);
      } catch (cause) {
        throw new Error(`move snapshot of VM ${this.id} out of its jail`, { cause });
      }
    }
    log.info(
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
    if (!this.parts.balloonStatistics) return usage;
    try {
      const answer = await this.parts.api.send(balloonStatisticsCall());
      return { ...usage, ...memoryFromBalloonStatistics(answer) };
    } catch (error) {
      // The process figures are still worth returning when the guest's figures are not.
      this.parts.log.debug({ vm: this.id, err: error }, 'no balloon statistics');
      return usage;
    }
  }
}
