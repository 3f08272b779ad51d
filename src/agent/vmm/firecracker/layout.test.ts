import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MachineSpec } from '../types.ts';
import { launchCommand, planLayout } from './layout.ts';
import type { JailerOptions } from './options.ts';

const spec: MachineSpec = {
  id: 'vm-1',
  vcpus: 1,
  memoryMiB: 128,
  kernelPath: '/k/vmlinux',
  bootArgs: 'console=ttyS0',
  drives: [{ id: 'root', path: '/d/root.ext4', readOnly: false, isRoot: true }],
  networkInterfaces: [],
  runDir: '/run/imp/vm-1',
};

const jailer: JailerOptions = {
  binaryPath: '/opt/fc/jailer',
  uid: 1000,
  gid: 1000,
  chrootBaseDir: '/srv/jailer',
  cgroupVersion: 1,
  cgroups: { 'cpu.shares': '512' },
  parentCgroup: 'imp',
};

const launchOptions = {
  firecrackerBin: '/opt/fc/firecracker',
  logLevel: 'Info' as const,
  ipBin: 'ip',
};

describe('planLayout', () => {
  it('keeps every file of an unjailed VM in its runDir', () => {
    const layout = planLayout(spec, '/opt/fc/firecracker', undefined);
    assert.equal(layout.socketPath, '/run/imp/vm-1/firecracker.sock');
    assert.equal(layout.socketInVmm, layout.socketPath);
    assert.equal(layout.consoleLogPath, '/run/imp/vm-1/console.log');
    assert.equal(layout.logPath, '/run/imp/vm-1/firecracker.log');
    assert.equal(layout.inVmm('/d/root.ext4'), '/d/root.ext4');
    assert.equal(layout.jail, undefined);
  });

  it("puts a jailed VM's socket and files in the jailer's chroot", () => {
    const layout = planLayout(spec, '/opt/fc/firecracker', jailer);
    assert.equal(layout.jail?.root, '/srv/jailer/firecracker/vm-1/root');
    assert.equal(layout.socketPath, '/srv/jailer/firecracker/vm-1/root/firecracker.sock');
    assert.equal(layout.socketInVmm, '/firecracker.sock');
    assert.equal(layout.consoleLogPath, '/run/imp/vm-1/console.log');
    assert.equal(layout.inVmm('/k/vmlinux'), '/kernel');
    assert.equal(layout.inVmm('/d/root.ext4'), '/drive-root');
    assert.throws(() => layout.inVmm('/elsewhere'), /was not placed in the jail/);
    assert.deepEqual(
      layout.jail?.files.map((file) => [file.hostPath, file.ownedByJail]),
      [
        ['/k/vmlinux', false],
        ['/d/root.ext4', true],
      ],
    );
  });

  it('adds the snapshot files to the jail of a restore', () => {
    const layout = planLayout(spec, '/opt/fc/firecracker', jailer, {
      statePath: '/s/vm.state',
      memoryPath: '/s/vm.mem',
    });
    assert.equal(layout.inVmm('/s/vm.state'), '/snapshot.state');
    assert.equal(layout.inVmm('/s/vm.mem'), '/snapshot.mem');
  });

  it('refuses a socket path the kernel cannot bind', () => {
    const deep = { ...spec, runDir: `/run/${'x'.repeat(100)}` };
    assert.throws(() => planLayout(deep, '/opt/fc/firecracker', undefined), /longer than 107/);
  });
});

describe('launchCommand', () => {
  it('runs Firecracker with its id, socket, log and metrics', () => {
    const layout = planLayout(spec, '/opt/fc/firecracker', undefined);
    const { command, args } = launchCommand(spec, layout, launchOptions);
    assert.equal(command, '/opt/fc/firecracker');
    assert.deepEqual(args, [
      '--id',
      'vm-1',
      '--api-sock',
      '/run/imp/vm-1/firecracker.sock',
      '--log-path',
      '/run/imp/vm-1/firecracker.log',
      '--level',
      'Info',
      '--show-level',
      '--metrics-path',
      '/run/imp/vm-1/metrics.json',
    ]);
  });

  it('enters the network namespace through ip netns exec', () => {
    const inNetns = { ...spec, netns: 'imp-net' };
    const layout = planLayout(inNetns, '/opt/fc/firecracker', undefined);
    const { command, args } = launchCommand(inNetns, layout, launchOptions);
    assert.equal(command, 'ip');
    assert.deepEqual(args.slice(0, 6), [
      'netns',
      'exec',
      'imp-net',
      '/opt/fc/firecracker',
      '--id',
      'vm-1',
    ]);
  });

  it('launches through the jailer, which joins the namespace itself', () => {
    const inNetns = { ...spec, netns: 'imp-net' };
    const layout = planLayout(inNetns, '/opt/fc/firecracker', jailer);
    const { command, args } = launchCommand(inNetns, layout, { ...launchOptions, jailer });
    assert.equal(command, '/opt/fc/jailer');
    const split = args.indexOf('--');
    assert.deepEqual(args.slice(0, split), [
      '--id',
      'vm-1',
      '--exec-file',
      '/opt/fc/firecracker',
      '--uid',
      '1000',
      '--gid',
      '1000',
      '--chroot-base-dir',
      '/srv/jailer',
      '--cgroup-version',
      '1',
      '--parent-cgroup',
      'imp',
      '--cgroup',
      'cpu.shares=512',
      '--netns',
      '/run/netns/imp-net',
    ]);
    assert.deepEqual(args.slice(split + 1, split + 3), ['--api-sock', '/firecracker.sock']);
    assert.equal(args.includes('ip'), false);
  });
});
