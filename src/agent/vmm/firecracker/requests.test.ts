import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MachineSpec } from '../types.ts';
import {
  assertMachineId,
  configureCalls,
  memoryFromBalloonStatistics,
  parseInstanceInfo,
  snapshotCreateCall,
  snapshotLoadCall,
  vmStateCall,
} from './requests.ts';

const spec: MachineSpec = {
  id: 'vm-1',
  vcpus: 2,
  memoryMiB: 256,
  kernelPath: '/k/vmlinux',
  initrdPath: '/k/initrd',
  bootArgs: 'console=ttyS0 reboot=k',
  drives: [
    { id: 'root', path: '/d/root.ext4', readOnly: false, isRoot: true },
    { id: 'data', path: '/d/data.img', readOnly: true, isRoot: false },
  ],
  networkInterfaces: [{ id: 'eth0', tapName: 'imptap0', mac: '06:00:ac:10:00:02' }],
  runDir: '/run/imp/vm-1',
};

describe('configureCalls', () => {
  it('configures machine, boot source, drives and interfaces in that order', () => {
    const calls = configureCalls(spec, (path) => path, undefined);
    assert.deepEqual(
      calls.map((call) => `${call.method} ${call.path}`),
      [
        'PUT /machine-config',
        'PUT /boot-source',
        'PUT /drives/root',
        'PUT /drives/data',
        'PUT /network-interfaces/eth0',
      ],
    );
    assert.deepEqual(calls[0]?.body, { vcpu_count: 2, mem_size_mib: 256, smt: false });
    assert.deepEqual(calls[1]?.body, {
      kernel_image_path: '/k/vmlinux',
      initrd_path: '/k/initrd',
      boot_args: 'console=ttyS0 reboot=k',
    });
    assert.deepEqual(calls[3]?.body, {
      drive_id: 'data',
      path_on_host: '/d/data.img',
      is_root_device: false,
      is_read_only: true,
    });
    assert.deepEqual(calls[4]?.body, {
      iface_id: 'eth0',
      host_dev_name: 'imptap0',
      guest_mac: '06:00:ac:10:00:02',
    });
  });

  it('leaves out the initrd when the spec has none', () => {
    const { initrdPath: _, ...withoutInitrd } = spec;
    const boot = configureCalls(withoutInitrd, (path) => path, undefined)[1];
    assert.equal(Object.hasOwn(boot?.body as object, 'initrd_path'), false);
  });

  it('gives Firecracker the paths it sees, e.g. inside a jail', () => {
    const calls = configureCalls(spec, (path) => `/jail${path}`, undefined);
    assert.match(JSON.stringify(calls[1]?.body), /"kernel_image_path":"\/jail\/k\/vmlinux"/);
    assert.match(JSON.stringify(calls[2]?.body), /"path_on_host":"\/jail\/d\/root.ext4"/);
  });

  it('adds a balloon last when one is wanted', () => {
    const calls = configureCalls(spec, (path) => path, {
      amountMiB: 0,
      deflateOnOom: true,
      statsPollingIntervalSeconds: 5,
    });
    const last = calls.at(-1);
    assert.equal(last?.path, '/balloon');
    assert.deepEqual(last?.body, {
      amount_mib: 0,
      deflate_on_oom: true,
      stats_polling_interval_s: 5,
    });
  });

  it('names what each request attempts, for error messages', () => {
    const calls = configureCalls(spec, (path) => path, undefined);
    assert.equal(calls[2]?.attempt, 'attach drive root (/d/root.ext4)');
    assert.equal(calls[4]?.attempt, 'attach network interface eth0 to TAP imptap0');
  });
});

describe('assertMachineId', () => {
  it('accepts letters, digits and dashes up to 64 characters', () => {
    assertMachineId('default-web-0');
    assertMachineId('a'.repeat(64));
  });

  it('refuses what Firecracker would refuse', () => {
    for (const id of ['', 'a'.repeat(65), 'ns/name', 'with_underscore', 'dot.ted']) {
      assert.throws(() => assertMachineId(id), /cannot name a Firecracker instance/, id);
    }
  });
});

describe('state and snapshot requests', () => {
  it('pauses and resumes through PATCH /vm', () => {
    assert.deepEqual(vmStateCall('Paused').body, { state: 'Paused' });
    assert.equal(vmStateCall('Resumed').method, 'PATCH');
  });

  it('creates full snapshots', () => {
    const call = snapshotCreateCall('/s/state', '/s/mem');
    assert.equal(call.path, '/snapshot/create');
    assert.deepEqual(call.body, {
      snapshot_type: 'Full',
      snapshot_path: '/s/state',
      mem_file_path: '/s/mem',
    });
  });

  it('loads snapshots from a memory file backend', () => {
    assert.deepEqual(snapshotLoadCall('/s/state', '/s/mem', true).body, {
      snapshot_path: '/s/state',
      mem_backend: { backend_type: 'File', backend_path: '/s/mem' },
      enable_diff_snapshots: false,
      resume_vm: true,
    });
  });
});

describe('answers', () => {
  it('reads the instance description', () => {
    const info = parseInstanceInfo({
      id: 'vm-1',
      state: 'Paused',
      vmm_version: '1.14.1',
      app_name: 'Firecracker',
    });
    assert.deepEqual(info, { id: 'vm-1', state: 'Paused', vmmVersion: '1.14.1' });
    assert.throws(() => parseInstanceInfo({ hello: 1 }), /unexpected instance description/);
  });

  it('takes guest memory from balloon statistics only when the guest reported it', () => {
    assert.deepEqual(memoryFromBalloonStatistics({ target_pages: 0, actual_mib: 0 }), {});
    assert.deepEqual(
      memoryFromBalloonStatistics({ total_memory: 1024, available_memory: 512, free_memory: 9 }),
      { memoryTotalBytes: 1024, memoryAvailableBytes: 512 },
    );
  });
});
