/** Settings of the Firecracker driver, parsed once by whoever builds it. */

import type { DriverLogger } from '../logger.ts';

export type { DriverLogger };

/** Runs Firecracker through its jailer: chroot, dropped privileges, cgroups. */
export interface JailerOptions {
  /** Path of the `jailer` binary; it must be the same release as Firecracker. */
  binaryPath: string;
  uid: number;
  gid: number;
  /** Jails live in `<chrootBaseDir>/<firecracker file name>/<vm id>/root`. */
  chrootBaseDir: string;
  /** Cgroup hierarchy the jailer writes to (the jailer's own default is 1). */
  cgroupVersion?: 1 | 2;
  /** Cgroup files and values, e.g. `{ 'cpu.shares': '512' }`. */
  cgroups?: Record<string, string>;
  /** Parent cgroup of every VM's cgroup; named so the driver can remove what it created. */
  parentCgroup?: string;
  /** Resource limits the jailer applies, e.g. `{ 'no-file': '2048' }`. */
  resourceLimits?: Record<string, string>;
}

/** A virtio balloon on every VM, mainly for the guest memory statistics it reports. */
export interface BalloonOptions {
  /** Initial balloon size; 0 takes nothing from the guest. */
  amountMiB: number;
  deflateOnOom: boolean;
  /** How often the guest refreshes its statistics; 0 turns them off. */
  statsPollingIntervalSeconds: number;
}

export type FirecrackerLogLevel = 'Error' | 'Warning' | 'Info' | 'Debug';

export interface FirecrackerDriverOptions {
  /** Path of the `firecracker` binary. */
  firecrackerBin: string;
  log: DriverLogger;
  /** Launch through the jailer when set. */
  jailer?: JailerOptions;
  balloon?: BalloonOptions;
  /** Level of Firecracker's own log file (default Info). */
  logLevel?: FirecrackerLogLevel;
  /** The `ip` command used for `ip netns exec` (default `ip` from PATH). */
  ipBin?: string;
  /** How long a new VMM may take to open its API socket (default 5 s). */
  apiReadyTimeoutMs?: number;
  /** Limit for one ordinary API request (default 10 s); snapshots get longer. */
  requestTimeoutMs?: number;
}

export const defaultApiReadyTimeoutMs = 5_000;
export const defaultRequestTimeoutMs = 10_000;
/** Writing or loading guest memory scales with its size; a minute covers several GiB. */
export const snapshotRequestTimeoutMs = 120_000;
