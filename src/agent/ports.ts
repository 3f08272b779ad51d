/**
 * The node-side services the agent drives, as small interfaces, so the lifecycle code reads
 * the same whichever implementation (or namespace) is behind them.
 */

export interface NetworkParams {
  id: string;
  subnet: string;
  gateway: string;
  nat: boolean;
  blockMetadata: boolean;
  blockNode: boolean;
}

export interface VMNetworking {
  ensureNetwork(params: NetworkParams): Promise<{ bridge: string }>;
  attachVM(params: { networkId: string; vmId: string }): Promise<{ tap: string }>;
  detachVM(vmId: string): Promise<void>;
  /**
   * Removes Imp devices and rules not named in `keep`; a function is called only once no
   * other networking change can run, so its answer cannot be stale.
   */
  cleanup(keep: KeepSets | (() => Promise<KeepSets>)): Promise<void>;
}

/** What a cleanup must leave alone: network ids and VM ids. */
export interface KeepSets {
  networks: Set<string>;
  vms: Set<string>;
}

export interface GuestKernel {
  kernelPath: string;
  initrdPath?: string;
}

export interface BootArgsParams {
  /** `a.b.c.d/prefix`, when the VM has a network. */
  address?: string;
  gateway?: string;
  dns: string[];
  search: string[];
  hostname: string;
  /** Extra arguments from the class or node profile. */
  extra?: string;
}

export interface KernelSource {
  kernel(): Promise<GuestKernel>;
  bootArgs(params: BootArgsParams): string;
}
