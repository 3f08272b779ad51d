import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { checkPrerequisites, chooseHypervisor, kvmUsable } from './preflight.ts';

describe('local prerequisites', () => {
  it('names every missing tool with the Debian package that brings it, at once', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'imp-preflight-'));
    const path = process.env.PATH;
    process.env.PATH = empty;
    try {
      await assert.rejects(checkPrerequisites(), (error: Error) => {
        assert.match(error.message, /^this host cannot run Imp locally yet:/);
        assert.match(error.message, /apt-get install -y qemu-system-x86 iproute2 nftables/);
        assert.match(error.message, /skopeo umoci e2fsprogs busybox-static docker-registry cpio/);
        return true;
      });
    } finally {
      process.env.PATH = path;
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('passes on a host with everything installed', async () => {
    await checkPrerequisites();
  });

  it('takes Firecracker only where KVM can run a real guest, and says why', async () => {
    const kvm = await kvmUsable();
    const choice = await chooseHypervisor('/opt/firecracker');
    if (kvm.usable) {
      assert.equal(choice.type, 'firecracker');
    } else {
      assert.deepEqual([choice.type, choice.accel], ['qemu', 'tcg']);
      assert.match(choice.reason, /Firecracker is configured but needs KVM/);
      assert.ok(choice.reason.includes(kvm.why));
    }
    const without = await chooseHypervisor(undefined);
    assert.equal(without.type, 'qemu');
    assert.match(without.reason, /no Firecracker binary configured/);
  });
});
