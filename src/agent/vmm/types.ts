/**
 * The contract every VMM driver meets. It follows Firecracker's model (one process per VM,
 * configured before boot, controlled over a socket); the QEMU driver implements the same
 * calls over QMP, which keeps the agent's lifecycle code free of VMM specifics.
 */

export type HypervisorType = 'firecracker' | 'qemu';

export interface DriveSpec {
  /** Stable id, e.g. `root`. */
  id: string;
  path: string;
  readOnly: boolean;
  isRoot: boolean;
}

export interface NetworkInterfaceSpec {
  id: string;
  /** Host TAP device the guest interface is wired to. */
  tapName: string;
  mac: string;
}

/** Everything needed to create one VM. Paths are on the node. */
export interface MachineSpec {
  /** Unique on the node; names the socket, log and state files. */
  id: string;
  vcpus: number;
  memoryMiB: number;
  kernelPath: string;
  initrdPath?: string;
  /** The full kernel command line. */
  bootArgs: string;
  drives: DriveSpec[];
  networkInterfaces: NetworkInterfaceSpec[];
  /** Directory the driver owns for this VM: API socket, serial log, metrics, snapshots. */
  runDir: string;
  /** Run the VMM inside this network namespace (by name), when set. */
  netns?: string;
}

export interface MachineStats {
  /** Guest memory statistics (balloon or QMP), when the VMM reports them. */
  memoryTotalBytes?: number;
  memoryAvailableBytes?: number;
  /** CPU time consumed by the VMM process, seconds. */
  cpuSeconds?: number;
  /** Resident set size of the VMM process. */
  rssBytes?: number;
}

export interface SnapshotFiles {
  /** VM state (device and vCPU state). */
  statePath: string;
  /** Guest memory. */
  memoryPath: string;
}

/** A VMM process running (or able to run) one VM. */
export interface Machine {
  readonly id: string;
  /** The VMM process id, once started. */
  readonly pid: number | undefined;
  /** Where the guest serial console is written. */
  readonly consoleLogPath: string;
  /** Boots the guest. Resolves once the VMM reports it running, not when the guest is up. */
  start(): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /**
   * Asks the guest to shut down (Ctrl-Alt-Del on Firecracker, ACPI power button on QEMU)
   * and waits up to `timeoutMs`; then kills the VMM. Resolves when the process is gone.
   */
  stop(timeoutMs: number): Promise<void>;
  /** Kills the VMM at once. */
  kill(): Promise<void>;
  /**
   * Lets go of the VMM without stopping it (closes control connections), so a later agent
   * can adopt it; used when the agent shuts down and VMs keep running.
   */
  detach(): void;
  /** Writes a full snapshot; the VM must be paused. */
  snapshot(files: SnapshotFiles): Promise<void>;
  stats(): Promise<MachineStats>;
  /** Resolves when the VMM process exits, with its exit code or signal. */
  readonly exited: Promise<number | string>;
}

export interface Driver {
  readonly type: HypervisorType;
  /** Starts a VMM process configured for `spec`, not yet booted. */
  create(spec: MachineSpec): Promise<Machine>;
  /** Starts a VMM process that loads `files` instead of booting; left paused unless resume. */
  restore(spec: MachineSpec, files: SnapshotFiles, resume: boolean): Promise<Machine>;
  /** Re-attaches to a VMM that survived an agent restart. */
  adopt(spec: MachineSpec, pid: number): Promise<Machine>;
  /**
   * True when `pid` is this VM's VMM, judged from the process alone (its VMM may be hung),
   * so a VMM that could not be adopted can still be stopped without hitting a reused pid.
   */
  ownsProcess(spec: MachineSpec, pid: number): Promise<boolean>;
}
