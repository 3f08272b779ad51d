/**
 * Where one VM's files live and how its VMM is launched. Without the jailer every path is
 * a host path in the VM's runDir; with it, Firecracker sees only its chroot, so each file
 * has a host path (for the agent) and a path inside the jail (for Firecracker).
 */
import { basename, join } from 'node:path';
import { inNetns } from '../process.ts';
import type { MachineSpec } from '../types.ts';
import type { FirecrackerLogLevel, JailerOptions } from './options.ts';
import type { PathInVmm } from './requests.ts';

/** A file the jail must hold, linked or copied in from the host. */
export interface JailFile {
  hostPath: string;
  /** Path inside the jail, starting with `/`. */
  inJail: string;
  /** Firecracker writes it, or it belongs to this VM alone: the jail's uid gets to own it. */
  ownedByJail: boolean;
}

export interface VmLayout {
  /** The API socket as the agent connects to it. */
  socketPath: string;
  /** The API socket as Firecracker binds it (and as /proc/net/unix lists it). */
  socketInVmm: string;
  /** Serial console: the VMM's stdout and stderr. Always in runDir. */
  consoleLogPath: string;
  /** Firecracker's own log and metrics, host side and as Firecracker names them. */
  logPath: string;
  logInVmm: string;
  metricsPath: string;
  metricsInVmm: string;
  /** Maps a host path of the spec to the path Firecracker is given. */
  inVmm: PathInVmm;
  /** Set when jailed: the per-VM jail directory (removed after exit) and its root. */
  jail?: { dir: string; root: string; files: JailFile[] };
}

/** Socket paths are limited by `sun_path`: 108 bytes including the final NUL. */
const maxSocketPathBytes = 107;

const socketName = 'firecracker.sock';
const logName = 'firecracker.log';
const metricsName = 'metrics.json';
/** In-jail names of snapshot files being written or loaded. */
export const jailSnapshotState = '/snapshot.state';
export const jailSnapshotMemory = '/snapshot.mem';

/** Plans the files of `spec`'s VM; `snapshot` adds the files a restore loads. */
export function planLayout(
  spec: MachineSpec,
  firecrackerBin: string,
  jailer: JailerOptions | undefined,
  snapshot?: { statePath: string; memoryPath: string },
): VmLayout {
  const consoleLogPath = join(spec.runDir, 'console.log');
  const layout: VmLayout = jailer
    ? jailedLayout(spec, firecrackerBin, jailer, consoleLogPath, snapshot)
    : {
        socketPath: join(spec.runDir, socketName),
        socketInVmm: join(spec.runDir, socketName),
        consoleLogPath,
        logPath: join(spec.runDir, logName),
        logInVmm: join(spec.runDir, logName),
        metricsPath: join(spec.runDir, metricsName),
        metricsInVmm: join(spec.runDir, metricsName),
        inVmm: (hostPath) => hostPath,
      };
  if (Buffer.byteLength(layout.socketPath) > maxSocketPathBytes) {
    throw new Error(
      `API socket path ${layout.socketPath} is longer than ${maxSocketPathBytes} bytes; ` +
        'use a shorter runDir or chroot base dir',
    );
  }
  return layout;
}

function jailedLayout(
  spec: MachineSpec,
  firecrackerBin: string,
  jailer: JailerOptions,
  consoleLogPath: string,
  snapshot: { statePath: string; memoryPath: string } | undefined,
): VmLayout {
  // The jailer's own layout: <base>/<exec file name>/<id>/root.
  const dir = join(jailer.chrootBaseDir, basename(firecrackerBin), spec.id);
  const root = join(dir, 'root');
  const files: JailFile[] = [{ hostPath: spec.kernelPath, inJail: '/kernel', ownedByJail: false }];
  if (spec.initrdPath !== undefined) {
    files.push({ hostPath: spec.initrdPath, inJail: '/initrd', ownedByJail: false });
  }
  for (const drive of spec.drives) {
    files.push({
      hostPath: drive.path,
      inJail: `/drive-${drive.id}`,
      ownedByJail: !drive.readOnly,
    });
  }
  if (snapshot) {
    files.push({ hostPath: snapshot.statePath, inJail: jailSnapshotState, ownedByJail: true });
    files.push({ hostPath: snapshot.memoryPath, inJail: jailSnapshotMemory, ownedByJail: true });
  }
  const byHostPath = new Map(files.map((file) => [file.hostPath, file.inJail]));
  return {
    socketPath: join(root, socketName),
    socketInVmm: `/${socketName}`,
    consoleLogPath,
    logPath: join(root, logName),
    logInVmm: `/${logName}`,
    metricsPath: join(root, metricsName),
    metricsInVmm: `/${metricsName}`,
    inVmm: (hostPath) => {
      const inJail = byHostPath.get(hostPath);
      if (inJail === undefined) throw new Error(`${hostPath} was not placed in the jail`);
      return inJail;
    },
    jail: { dir, root, files },
  };
}

/** The program and arguments that start the VMM for `spec`. */
export function launchCommand(
  spec: MachineSpec,
  layout: VmLayout,
  options: {
    firecrackerBin: string;
    jailer?: JailerOptions;
    logLevel: FirecrackerLogLevel;
    ipBin: string;
  },
): { command: string; args: string[] } {
  // Logger and metrics from the command line rather than the API: otherwise Firecracker's
  // first lines would go to stdout, which is the guest's serial console file.
  const vmmArgs = [
    '--api-sock',
    layout.socketInVmm,
    '--log-path',
    layout.logInVmm,
    '--level',
    options.logLevel,
    '--show-level',
    '--metrics-path',
    layout.metricsInVmm,
  ];
  const { jailer } = options;
  if (jailer) {
    const args = [
      '--id',
      spec.id,
      '--exec-file',
      options.firecrackerBin,
      '--uid',
      String(jailer.uid),
      '--gid',
      String(jailer.gid),
      '--chroot-base-dir',
      jailer.chrootBaseDir,
    ];
    if (jailer.cgroupVersion !== undefined) {
      args.push('--cgroup-version', String(jailer.cgroupVersion));
    }
    if (jailer.parentCgroup !== undefined) args.push('--parent-cgroup', jailer.parentCgroup);
    for (const [file, value] of Object.entries(jailer.cgroups ?? {})) {
      args.push('--cgroup', `${file}=${value}`);
    }
    for (const [resource, value] of Object.entries(jailer.resourceLimits ?? {})) {
      args.push('--resource-limit', `${resource}=${value}`);
    }
    // The jailer joins the namespace itself, after its own setup and before exec.
    if (spec.netns !== undefined) args.push('--netns', netnsPath(spec.netns));
    // The jailer passes --id on to Firecracker.
    return { command: jailer.binaryPath, args: [...args, '--', ...vmmArgs] };
  }
  return inNetns(spec.netns, options.firecrackerBin, ['--id', spec.id, ...vmmArgs], options.ipBin);
}

/** Where `ip netns add NAME` keeps its namespace handle. */
export function netnsPath(name: string): string {
  return `/run/netns/${name}`;
}
