import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { shellQuote } from '../../shell.ts';
import type { MachineSpec } from '../types.ts';
import { planLayout, qemuArguments, servesQmpAt, withTscKeys } from './layout.ts';

const spec: MachineSpec = {
  id: 'web-1',
  vcpus: 2,
  memoryMiB: 512,
  kernelPath: '/k/vmlinuz',
  initrdPath: '/k/initrd.gz',
  bootArgs: 'console=ttyS0 root=/dev/vda',
  drives: [
    { id: 'root', path: '/vms/web-1/root.img', readOnly: false, isRoot: true },
    { id: 'data', path: '/vms/a,b.img', readOnly: true, isRoot: false },
  ],
  networkInterfaces: [{ id: 'eth0', tapName: 'imp-tap1', mac: '52:54:00:00:00:01' }],
  runDir: '/run/imp/web-1',
};

/** The value after each occurrence of `flag`. */
function values(args: string[], flag: string): string[] {
  return args.flatMap((arg, index) => (args[index - 1] === flag ? [arg] : []));
}

describe('QEMU layout and arguments', () => {
  const layout = planLayout(spec);

  it('keeps every file of the VM in its runDir', () => {
    assert.deepEqual(layout, {
      qmpSocketPath: '/run/imp/web-1/qmp.sock',
      consoleLogPath: '/run/imp/web-1/console.log',
      outputPath: '/run/imp/web-1/qemu.log',
      pidFilePath: '/run/imp/web-1/qemu.pid',
    });
  });

  it('starts a microvm paused, under TCG as in hack/boot-demo.sh', () => {
    const args = qemuArguments(spec, layout, { accel: 'tcg', bootArgs: spec.bootArgs });
    assert.deepEqual(values(args, '-M'), ['microvm,acpi=on']);
    assert.deepEqual(values(args, '-accel'), ['tcg']);
    assert.deepEqual(values(args, '-cpu'), ['max,la57=off']);
    assert.deepEqual(values(args, '-m'), ['512M']);
    assert.deepEqual(values(args, '-smp'), ['2']);
    for (const flag of ['-S', '-nodefaults', '-no-user-config', '-no-reboot']) {
      assert.ok(args.includes(flag), flag);
    }
    assert.deepEqual(values(args, '-kernel'), ['/k/vmlinuz']);
    assert.deepEqual(values(args, '-initrd'), ['/k/initrd.gz']);
    assert.deepEqual(values(args, '-append'), ['console=ttyS0 root=/dev/vda']);
    assert.deepEqual(values(args, '-name'), ['guest=web-1']);
    assert.deepEqual(values(args, '-pidfile'), ['/run/imp/web-1/qemu.pid']);
    assert.deepEqual(values(args, '-incoming'), []);
  });

  it('takes KVM without the MSR nested hypervisors refuse', () => {
    const args = qemuArguments(spec, layout, { accel: 'kvm', bootArgs: '' });
    assert.deepEqual(values(args, '-accel'), ['kvm']);
    assert.deepEqual(values(args, '-cpu'), ['host,-arch-capabilities']);
  });

  it('attaches disks, TAPs, console, QMP and balloon, escaping commas in paths', () => {
    const args = qemuArguments(spec, layout, {
      accel: 'tcg',
      bootArgs: '',
      balloon: { statsPollingIntervalSeconds: 5, deflateOnOom: true },
    });
    assert.deepEqual(values(args, '-drive'), [
      'id=drive-root,file=/vms/web-1/root.img,format=raw,if=none',
      'id=drive-data,file=/vms/a,,b.img,format=raw,if=none,readonly=on',
    ]);
    assert.deepEqual(values(args, '-netdev'), [
      'tap,id=net-eth0,ifname=imp-tap1,script=no,downscript=no',
    ]);
    assert.deepEqual(values(args, '-device'), [
      'virtio-blk-device,drive=drive-root',
      'virtio-blk-device,drive=drive-data',
      'virtio-net-device,netdev=net-eth0,mac=52:54:00:00:00:01',
      'virtio-balloon-device,id=balloon0,deflate-on-oom=on',
    ]);
    assert.deepEqual(values(args, '-chardev'), [
      'file,id=console,path=/run/imp/web-1/console.log,append=on',
      'socket,id=qmp,path=/run/imp/web-1/qmp.sock,server=on,wait=off',
    ]);
    assert.deepEqual(values(args, '-serial'), ['chardev:console']);
    assert.deepEqual(values(args, '-mon'), ['chardev=qmp,mode=control']);
  });

  it('loads a snapshot through cat, quoted for the shell', () => {
    const args = qemuArguments(spec, layout, {
      accel: 'tcg',
      bootArgs: '',
      incomingStatePath: "/snap/it's.state",
    });
    assert.deepEqual(values(args, '-incoming'), [`exec:cat '/snap/it'\\''s.state'`]);
    assert.equal(shellQuote('a b'), "'a b'");
  });

  it('adds the TSC keys once', () => {
    assert.equal(
      withTscKeys('console=ttyS0', 2000000),
      'console=ttyS0 tsc_early_khz=2000000 tsc=reliable',
    );
    assert.equal(withTscKeys('tsc_early_khz=1 quiet', 2000000), 'tsc_early_khz=1 quiet');
  });

  it("recognises this VM's QEMU by its QMP socket argument", () => {
    const args = [
      'qemu-system-x86_64',
      ...qemuArguments(spec, layout, { accel: 'tcg', bootArgs: '' }),
    ];
    assert.equal(servesQmpAt(args, layout.qmpSocketPath), true);
    assert.equal(servesQmpAt(args, '/run/imp/web-2/qmp.sock'), false);
    assert.equal(servesQmpAt(args, '/run/imp/web-1/qmp'), false);
    const commas = planLayout({ ...spec, runDir: '/run/a,b' });
    const escaped = qemuArguments({ ...spec, runDir: '/run/a,b' }, commas, {
      accel: 'tcg',
      bootArgs: '',
    });
    assert.equal(servesQmpAt(escaped, '/run/a,b/qmp.sock'), true);
  });

  it('refuses names QEMU or the kernel cannot take', () => {
    assert.throws(() => planLayout({ ...spec, id: 'default/web' }), /cannot name a QEMU guest/);
    assert.throws(
      () => planLayout({ ...spec, drives: [{ ...spec.drives[0]!, id: '0root' }] }),
      /device id "0root" of VM web-1 is not a QEMU id/,
    );
    assert.throws(() => planLayout({ ...spec, runDir: `/${'d'.repeat(100)}` }), /longer than 107/);
  });
});
