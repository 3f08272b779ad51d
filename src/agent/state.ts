/**
 * What the agent knows about each VM on its node, kept as one JSON file per VM under
 * `<stateDir>/vms/<uid>/`. With it a restarted agent re-adopts running VMMs by pid and finds
 * everything it created (disk, TAP, run dir) to clean up VMs whose objects are gone.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HypervisorType } from './vmm/types.ts';

export interface VMRecord {
  uid: string;
  namespace: string;
  name: string;
  hypervisor: HypervisorType;
  /** VMM process id while one runs. */
  pid?: number;
  /** ImpNetwork id and TAP the VM is attached to, when it has a network. */
  networkId?: string;
  tap?: string;
  ip?: string;
  imageDigest?: string;
  /** When the current VMM process was started (ISO time). */
  startedAt?: string;
  /** When the guest first reported ready; written once. */
  runningAt?: string;
  bootDurationSeconds?: number;
  restartCount: number;
  /** Exit code of the last workload run, when it ended. */
  exitCode?: number;
  /** Set once the workload finished and the restart policy says it stays stopped. */
  finished?: 'Succeeded' | 'Failed';
  /** The spec the running VM was started with, for the restart and adopt paths. */
  machine?: unknown;
}

export class StateStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'vms');
  }

  vmDir(uid: string): string {
    return join(this.dir, uid);
  }

  async init(): Promise<void> {
    // VM dirs hold disks with resolved secret env values: root only.
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  async list(): Promise<VMRecord[]> {
    const records: VMRecord[] = [];
    for (const uid of await readdir(this.dir).catch(() => [])) {
      const record = await this.get(uid);
      if (record) records.push(record);
    }
    return records;
  }

  async get(uid: string): Promise<VMRecord | undefined> {
    try {
      return JSON.parse(await readFile(join(this.vmDir(uid), 'vm.json'), 'utf8')) as VMRecord;
    } catch {
      return undefined;
    }
  }

  /** Writes atomically, so a crash leaves the old or the new record, never half of one. */
  async put(record: VMRecord): Promise<void> {
    const dir = this.vmDir(record.uid);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = join(dir, 'vm.json.tmp');
    await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`);
    await rename(tmp, join(dir, 'vm.json'));
  }

  /** Removes the VM's directory: record, disk, sockets and logs. */
  async remove(uid: string): Promise<void> {
    await rm(this.vmDir(uid), { recursive: true, force: true });
  }
}
