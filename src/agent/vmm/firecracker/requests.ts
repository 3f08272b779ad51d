/**
 * The API requests that configure and drive one VM, built as plain data so they can be
 * checked without a Firecracker binary. Field names follow Firecracker's OpenAPI spec; the
 * set used here is accepted by every release from v1.7 to v1.14.
 */
import type { MachineSpec } from '../types.ts';
import type { ApiCall } from './api.ts';
import { type BalloonOptions, snapshotRequestTimeoutMs } from './options.ts';

/** Host paths as Firecracker sees them: unchanged, or relative to the jail's root. */
export type PathInVmm = (hostPath: string) => string;

/** Firecracker's rule for `--id` (and the jailer's): 1 to 64 letters, digits and dashes. */
const machineIdPattern = /^[A-Za-z0-9-]{1,64}$/;

/** Throws when `id` cannot name a Firecracker instance. */
export function assertMachineId(id: string): void {
  if (!machineIdPattern.test(id)) {
    throw new Error(
      `VM id ${JSON.stringify(id)} cannot name a Firecracker instance: ` +
        'use 1 to 64 letters, digits or dashes',
    );
  }
}

/**
 * Every request that configures a created, not yet started VM, in the order they are sent.
 * The optional balloon comes last because it is the only device the spec does not name.
 */
export function configureCalls(
  spec: MachineSpec,
  inVmm: PathInVmm,
  balloon: BalloonOptions | undefined,
): ApiCall[] {
  const calls: ApiCall[] = [
    {
      method: 'PUT',
      path: '/machine-config',
      body: { vcpu_count: spec.vcpus, mem_size_mib: spec.memoryMiB, smt: false },
      attempt: `configure ${spec.vcpus} vCPUs and ${spec.memoryMiB} MiB of memory`,
    },
    {
      method: 'PUT',
      path: '/boot-source',
      body: {
        kernel_image_path: inVmm(spec.kernelPath),
        boot_args: spec.bootArgs,
        ...(spec.initrdPath === undefined ? {} : { initrd_path: inVmm(spec.initrdPath) }),
      },
      attempt: `set the boot source (kernel ${spec.kernelPath})`,
    },
  ];
  for (const drive of spec.drives) {
    calls.push({
      method: 'PUT',
      path: `/drives/${encodeURIComponent(drive.id)}`,
      body: {
        drive_id: drive.id,
        path_on_host: inVmm(drive.path),
        is_root_device: drive.isRoot,
        is_read_only: drive.readOnly,
      },
      attempt: `attach drive ${drive.id} (${drive.path})`,
    });
  }
  for (const nic of spec.networkInterfaces) {
    calls.push({
      method: 'PUT',
      path: `/network-interfaces/${encodeURIComponent(nic.id)}`,
      body: { iface_id: nic.id, host_dev_name: nic.tapName, guest_mac: nic.mac },
      attempt: `attach network interface ${nic.id} to TAP ${nic.tapName}`,
    });
  }
  if (balloon) calls.push(balloonCall(balloon));
  return calls;
}

function balloonCall(balloon: BalloonOptions): ApiCall {
  return {
    method: 'PUT',
    path: '/balloon',
    body: {
      amount_mib: balloon.amountMiB,
      deflate_on_oom: balloon.deflateOnOom,
      stats_polling_interval_s: balloon.statsPollingIntervalSeconds,
    },
    attempt: 'add the memory balloon',
  };
}

/** Boots the configured guest. */
export function instanceStartCall(): ApiCall {
  return {
    method: 'PUT',
    path: '/actions',
    body: { action_type: 'InstanceStart' },
    attempt: 'boot the guest',
  };
}

/** Presses Ctrl-Alt-Del on the guest's i8042 keyboard controller (x86 only). */
export function ctrlAltDelCall(): ApiCall {
  return {
    method: 'PUT',
    path: '/actions',
    body: { action_type: 'SendCtrlAltDel' },
    attempt: 'send Ctrl-Alt-Del to the guest',
  };
}

/** Pauses or resumes every vCPU. */
export function vmStateCall(state: 'Paused' | 'Resumed'): ApiCall {
  return {
    method: 'PATCH',
    path: '/vm',
    body: { state },
    attempt: state === 'Paused' ? 'pause the VM' : 'resume the VM',
  };
}

/** Describes the instance; its `state` is `Not started`, `Running` or `Paused`. */
export function describeInstanceCall(): ApiCall {
  return { method: 'GET', path: '/', attempt: 'describe the instance' };
}

/** Reads what the guest's balloon driver last reported. */
export function balloonStatisticsCall(): ApiCall {
  return { method: 'GET', path: '/balloon/statistics', attempt: 'read balloon statistics' };
}

/** Writes a full snapshot of a paused VM. */
export function snapshotCreateCall(statePath: string, memoryPath: string): ApiCall {
  return {
    method: 'PUT',
    path: '/snapshot/create',
    body: { snapshot_type: 'Full', snapshot_path: statePath, mem_file_path: memoryPath },
    attempt: `write a full snapshot to ${statePath}`,
    timeoutMs: snapshotRequestTimeoutMs,
  };
}

/**
 * Loads a snapshot into a fresh process. `mem_backend` rather than the older
 * `mem_file_path`, which v1.7 already calls deprecated.
 */
export function snapshotLoadCall(statePath: string, memoryPath: string, resume: boolean): ApiCall {
  return {
    method: 'PUT',
    path: '/snapshot/load',
    body: {
      snapshot_path: statePath,
      mem_backend: { backend_type: 'File', backend_path: memoryPath },
      enable_diff_snapshots: false,
      resume_vm: resume,
    },
    attempt: `load the snapshot ${statePath}`,
    timeoutMs: snapshotRequestTimeoutMs,
  };
}

/** The instance description, narrowed to what the driver reads. */
export interface InstanceInfo {
  id: string;
  state: string;
  vmmVersion: string;
}

/** Reads `GET /`'s answer; throws when it is not an instance description. */
export function parseInstanceInfo(answer: unknown): InstanceInfo {
  if (!answer || typeof answer !== 'object') {
    throw new Error(`unexpected instance description: ${JSON.stringify(answer)}`);
  }
  const info = answer as Record<string, unknown>;
  if (typeof info.id !== 'string' || typeof info.state !== 'string') {
    throw new Error(`unexpected instance description: ${JSON.stringify(answer)}`);
  }
  return {
    id: info.id,
    state: info.state,
    vmmVersion: typeof info.vmm_version === 'string' ? info.vmm_version : 'unknown',
  };
}

/** Guest memory from balloon statistics; absent until the guest's driver reports. */
export function memoryFromBalloonStatistics(answer: unknown): {
  memoryTotalBytes?: number;
  memoryAvailableBytes?: number;
} {
  if (!answer || typeof answer !== 'object') return {};
  const stats = answer as Record<string, unknown>;
  return {
    ...(typeof stats.total_memory === 'number' ? { memoryTotalBytes: stats.total_memory } : {}),
    ...(typeof stats.available_memory === 'number'
      ? { memoryAvailableBytes: stats.available_memory }
      : {}),
  };
}
