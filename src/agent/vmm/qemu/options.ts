/** Settings of the QEMU driver, parsed once by whoever builds it. */
import type { DriverLogger } from '../logger.ts';

/** `auto` takes KVM only where a stock guest really runs under it (see accel.ts). */
export type QemuAccel = 'kvm' | 'tcg' | 'auto';

/** A virtio balloon on every VM, for the guest memory figures it reports. */
export interface QemuBalloonOptions {
  /** Give memory back to a guest under memory pressure. */
  deflateOnOom?: boolean;
  /** How often the guest refreshes its statistics; 0 turns them off. */
  statsPollingIntervalSeconds: number;
}

export interface QemuDriverOptions {
  log: DriverLogger;
  /** Path of the QEMU binary (default `qemu-system-x86_64` from PATH). */
  qemuPath?: string;
  /** Acceleration (default `auto`). */
  accel?: QemuAccel;
  /**
   * The host TSC rate in kHz, given to guests under TCG (`tsc_early_khz=`). Found from the
   * host kernel log or /proc/cpuinfo when unset.
   */
  tscKhz?: number;
  balloon?: QemuBalloonOptions;
  /** The `ip` command used for `ip netns exec` (default `ip` from PATH). */
  ipBin?: string;
  /** How long a new QEMU may take to answer on its QMP socket (default 5 s). */
  qmpReadyTimeoutMs?: number;
  /** Limit for one ordinary QMP command (default 10 s). */
  commandTimeoutMs?: number;
}

export const defaultQmpReadyTimeoutMs = 5_000;
export const defaultCommandTimeoutMs = 10_000;
/** Writing or loading guest memory scales with its size; two minutes cover several GiB. */
export const snapshotTimeoutMs = 120_000;
