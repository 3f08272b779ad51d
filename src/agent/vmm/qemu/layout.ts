/**
 * Where one VM's files live and the QEMU command line that runs it, as plain data so both can
 * be checked without QEMU. The arguments follow `hack/boot-demo.sh`; docs/qemu.md explains
 * each choice.
 */
import { join } from 'node:path';
import { shellQuote } from '../../shell.ts';
import type { MachineSpec } from '../types.ts';
import type { QemuBalloonOptions } from './options.ts';

export interface QemuLayout {
  /** QMP, the control socket. */
  qmpSocketPath: string;
  /** The guest's serial console. */
  consoleLogPath: string;
  /** QEMU's own stdout and stderr: where it says why it would not start. */
  outputPath: string;
  /** QEMU writes its pid here. */
  pidFilePath: string;
}

/** Socket paths are limited by `sun_path`: 108 bytes including the final NUL. */
const maxSocketPathBytes = 107;

/** QEMU ids: a letter first, then letters, digits, `-`, `.` and `_`. */
const qemuIdPattern = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;
/** VM ids name files and the QEMU guest; the same rule keeps them safe in both. */
const machineIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The balloon's QOM path, where its statistics are read. */
export const balloonQomPath = '/machine/peripheral/balloon0';

/** Plans the files of `spec`'s VM, refusing names QEMU or the kernel cannot take. */
export function planLayout(spec: MachineSpec): QemuLayout {
  if (!machineIdPattern.test(spec.id)) {
    throw new Error(
      `VM id ${JSON.stringify(spec.id)} cannot name a QEMU guest: ` +
        'use 1 to 64 letters, digits, dots, dashes or underscores',
    );
  }
  for (const device of [...spec.drives, ...spec.networkInterfaces]) {
    if (!qemuIdPattern.test(device.id)) {
      throw new Error(
        `device id ${JSON.stringify(device.id)} of VM ${spec.id} is not a QEMU id: ` +
          'start with a letter, then letters, digits, dots, dashes or underscores',
      );
    }
  }
  const layout = {
    qmpSocketPath: join(spec.runDir, 'qmp.sock'),
    consoleLogPath: join(spec.runDir, 'console.log'),
    outputPath: join(spec.runDir, 'qemu.log'),
    pidFilePath: join(spec.runDir, 'qemu.pid'),
  };
  if (Buffer.byteLength(layout.qmpSocketPath) > maxSocketPathBytes) {
    throw new Error(
      `QMP socket path ${layout.qmpSocketPath} is longer than ${maxSocketPathBytes} bytes; ` +
        'use a shorter runDir',
    );
  }
  return layout;
}

export interface LaunchSettings {
  accel: 'kvm' | 'tcg';
  /** The kernel command line, with anything the accel needs already added. */
  bootArgs: string;
  balloon?: QemuBalloonOptions;
  /** Load this snapshot instead of booting. */
  incomingStatePath?: string;
}

/**
 * QEMU's arguments for `spec`. It always starts with `-S`, paused before the first guest
 * instruction, so a created VM is fully configured but not running, and a restored one
 * stays paused until told otherwise.
 */
export function qemuArguments(
  spec: MachineSpec,
  layout: QemuLayout,
  settings: LaunchSettings,
): string[] {
  const args = ['-name', `guest=${optionValue(spec.id)}`];
  // acpi=on (microvm's default, stated because two things depend on it): the guest kernel
  // finds the virtio-mmio devices in ACPI, and system_powerdown becomes an ACPI power-button
  // press through microvm's generic event device.
  args.push('-M', 'microvm,acpi=on');
  if (settings.accel === 'kvm') {
    // Nested hypervisors abort QEMU on the arch-capabilities MSR (0x10a); guests do not need it.
    args.push('-accel', 'kvm', '-cpu', 'host,-arch-capabilities');
  } else {
    // -cpu max offers 5-level paging, which makes every emulated page walk a level longer.
    args.push('-accel', 'tcg', '-cpu', 'max,la57=off');
  }
  args.push('-m', `${spec.memoryMiB}M`, '-smp', String(spec.vcpus));
  // Only the devices named here; a guest reboot or panic ends QEMU instead of rebooting.
  args.push('-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-S');
  args.push('-kernel', spec.kernelPath);
  if (spec.initrdPath !== undefined) args.push('-initrd', spec.initrdPath);
  args.push('-append', settings.bootArgs);
  for (const drive of spec.drives) {
    const id = `drive-${drive.id}`;
    const readOnly = drive.readOnly ? ',readonly=on' : '';
    args.push(
      '-drive',
      `id=${id},file=${optionValue(drive.path)},format=raw,if=none${readOnly}`,
      '-device',
      `virtio-blk-device,drive=${id}`,
    );
  }
  for (const nic of spec.networkInterfaces) {
    const id = `net-${nic.id}`;
    // No vhost: it needs /dev/vhost-net, which not every node has.
    args.push(
      '-netdev',
      `tap,id=${id},ifname=${optionValue(nic.tapName)},script=no,downscript=no`,
      '-device',
      `virtio-net-device,netdev=${id},mac=${nic.mac}`,
    );
  }
  if (settings.balloon) {
    const deflate = settings.balloon.deflateOnOom ? ',deflate-on-oom=on' : '';
    args.push('-device', `virtio-balloon-device,id=balloon0${deflate}`);
  }
  // append=on: a restored VM's QEMU continues the console log instead of truncating it.
  args.push(
    '-chardev',
    `file,id=console,path=${optionValue(layout.consoleLogPath)},append=on`,
    '-serial',
    'chardev:console',
  );
  args.push(
    '-chardev',
    `socket,id=qmp,path=${optionValue(layout.qmpSocketPath)},server=on,wait=off`,
    '-mon',
    'chardev=qmp,mode=control',
  );
  args.push('-pidfile', layout.pidFilePath);
  if (settings.incomingStatePath !== undefined) {
    // QEMU 7.2 has no file: migration URI; exec: runs the command through /bin/sh.
    args.push('-incoming', `exec:cat ${shellQuote(settings.incomingStatePath)}`);
  }
  return args;
}

/** The migration URI that writes a snapshot to `path`. */
export function snapshotUri(path: string): string {
  return `exec:cat > ${shellQuote(path)}`;
}

/**
 * Adds the keys a guest under TCG needs to skip TSC calibration (docs/guest.md), unless the
 * command line already sets them.
 */
export function withTscKeys(bootArgs: string, tscKhz: number): string {
  if (/(^|\s)tsc_early_khz=/.test(bootArgs)) return bootArgs;
  return `${bootArgs} tsc_early_khz=${tscKhz} tsc=reliable`.trim();
}

/**
 * True when QEMU's arguments `argv` serve QMP on `qmpSocketPath`, as `qemuArguments` sets
 * it up: proof, with the pid's start time, that a process is this VM's QEMU.
 */
export function servesQmpAt(argv: string[], qmpSocketPath: string): boolean {
  const path = `path=${optionValue(qmpSocketPath)}`;
  return argv.some(
    (arg, index) =>
      argv[index - 1] === '-chardev' &&
      arg.startsWith('socket,') &&
      splitOptions(arg).includes(path),
  );
}

/** A value inside a QEMU `key=value,...` option: commas are doubled. */
export function optionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/** Splits a QEMU option string at single commas, keeping doubled ones escaped. */
function splitOptions(option: string): string[] {
  return option.split(/(?<!,),(?!,)/);
}
