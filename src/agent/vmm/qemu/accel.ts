/** Which acceleration QEMU gets: KVM where it really runs a guest, else TCG. */
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import type { QemuAccel } from './options.ts';

/** The acceleration chosen and why, for the log. */
export interface AccelChoice {
  accel: 'kvm' | 'tcg';
  reason: string;
}

/**
 * Resolves `auto`. An openable /dev/kvm is not enough: a software nested hypervisor (such as
 * the `kvm_pvm` module) serves /dev/kvm without hardware virtualization and fails to run a
 * stock Linux guest, which would hang every boot. So KVM is taken only when the CPU also
 * shows VMX or SVM, which such a hypervisor does not.
 */
export async function chooseAccel(
  wanted: QemuAccel,
  probe: { kvmDevice?: string; cpuinfoPath?: string } = {},
): Promise<AccelChoice> {
  if (wanted !== 'auto') return { accel: wanted, reason: 'configured' };
  const kvmDevice = probe.kvmDevice ?? '/dev/kvm';
  try {
    await access(kvmDevice, constants.R_OK | constants.W_OK);
  } catch {
    return { accel: 'tcg', reason: `${kvmDevice} is not usable` };
  }
  const cpuinfo = await readFile(probe.cpuinfoPath ?? '/proc/cpuinfo', 'utf8').catch(() => '');
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.split(/\s+/) ?? [];
  if (!flags.includes('vmx') && !flags.includes('svm')) {
    return {
      accel: 'tcg',
      reason: `${kvmDevice} exists but the CPU shows no VMX or SVM (software nested KVM)`,
    };
  }
  return { accel: 'kvm', reason: `${kvmDevice} is usable and the CPU has VMX or SVM` };
}
