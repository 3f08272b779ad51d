/**
 * Checks that this host can run Imp locally, and picks the hypervisor. Each missing piece
 * is reported with what to install, all at once, so one round of fixes is enough.
 */
import { access, constants, readFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

export interface HypervisorChoice {
  type: 'firecracker' | 'qemu';
  accel: 'kvm' | 'tcg';
  reason: string;
}

async function onPath(command: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      await access(join(dir, command), constants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

const tools: [command: string, debianPackage: string][] = [
  ['qemu-system-x86_64', 'qemu-system-x86'],
  ['ip', 'iproute2'],
  ['nft', 'nftables'],
  ['skopeo', 'skopeo'],
  ['umoci', 'umoci'],
  ['mkfs.ext4', 'e2fsprogs'],
  ['debugfs', 'e2fsprogs'],
  ['busybox', 'busybox-static'],
  ['docker-registry', 'docker-registry'],
  ['cpio', 'cpio'],
];

/** Throws one error listing every missing prerequisite and how to get it. */
export async function checkPrerequisites(): Promise<void> {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) {
    problems.push('run as root: VM networks need network namespaces, bridges and TAP devices');
  }
  const packages = new Set<string>();
  for (const [command, pkg] of tools) if (!(await onPath(command))) packages.add(pkg);
  try {
    await access('/usr/bin/tini-static', constants.X_OK);
  } catch {
    packages.add('tini');
  }
  if (packages.size > 0) {
    problems.push(`install the missing tools: apt-get install -y ${[...packages].join(' ')}`);
  }
  try {
    await access('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    problems.push('/dev/net/tun is missing: load the tun module (modprobe tun)');
  }
  if (problems.length > 0) {
    throw new Error(`this host cannot run Imp locally yet:\n  - ${problems.join('\n  - ')}`);
  }
}

/**
 * KVM is only worth using when the CPU exposes hardware virtualisation to this host. A
 * software-nested /dev/kvm (kvm_pvm) opens and even runs toy guests, but a real Linux guest
 * never reaches userspace under it, so it counts as absent.
 */
export async function kvmUsable(): Promise<{ usable: boolean; why: string }> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { usable: false, why: '/dev/kvm is not available' };
  }
  try {
    await access('/sys/module/kvm_pvm');
    return { usable: false, why: '/dev/kvm is served by kvm_pvm (software nesting)' };
  } catch {}
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)) {
    return { usable: false, why: 'the CPU shows no vmx/svm flag, so KVM would be emulated' };
  }
  return { usable: true, why: '/dev/kvm with hardware virtualisation' };
}

/** Firecracker with a configured binary and real KVM; else QEMU with KVM; else QEMU/TCG. */
export async function chooseHypervisor(firecrackerBin?: string): Promise<HypervisorChoice> {
  const kvm = await kvmUsable();
  if (firecrackerBin && kvm.usable) {
    return {
      type: 'firecracker',
      accel: 'kvm',
      reason: `Firecracker at ${firecrackerBin}, ${kvm.why}`,
    };
  }
  const noFirecracker = firecrackerBin
    ? `Firecracker is configured but needs KVM (${kvm.why})`
    : 'no Firecracker binary configured (IMP_FIRECRACKER_BIN)';
  if (kvm.usable) return { type: 'qemu', accel: 'kvm', reason: `${noFirecracker}; ${kvm.why}` };
  return {
    type: 'qemu',
    accel: 'tcg',
    reason: `${noFirecracker}; ${kvm.why}: QEMU emulates the CPU (TCG), slower but complete`,
  };
}
