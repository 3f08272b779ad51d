import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chooseAccel } from './accel.ts';

describe('chooseAccel', () => {
  let dir: string;
  let kvmDevice: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imp-accel-'));
    kvmDevice = join(dir, 'kvm');
    await writeFile(kvmDevice, '');
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function cpuinfo(flags: string): Promise<string> {
    const path = join(dir, `cpuinfo-${flags.replaceAll(' ', '_')}`);
    await writeFile(path, `processor\t: 0\nflags\t\t: fpu ${flags} sse2\n`);
    return path;
  }

  it('keeps an explicit choice', async () => {
    assert.deepEqual(await chooseAccel('tcg'), { accel: 'tcg', reason: 'configured' });
    assert.equal((await chooseAccel('kvm', { kvmDevice: join(dir, 'none') })).accel, 'kvm');
  });

  it('takes KVM with a usable /dev/kvm and hardware virtualization', async () => {
    for (const flag of ['vmx', 'svm']) {
      const choice = await chooseAccel('auto', { kvmDevice, cpuinfoPath: await cpuinfo(flag) });
      assert.equal(choice.accel, 'kvm', flag);
    }
  });

  it('takes TCG when /dev/kvm is served by a software nested hypervisor', async () => {
    const choice = await chooseAccel('auto', {
      kvmDevice,
      cpuinfoPath: await cpuinfo('hypervisor'),
    });
    assert.equal(choice.accel, 'tcg');
    assert.match(choice.reason, /no VMX or SVM/);
  });

  it('takes TCG without /dev/kvm', async () => {
    const choice = await chooseAccel('auto', {
      kvmDevice: join(dir, 'none'),
      cpuinfoPath: await cpuinfo('vmx'),
    });
    assert.deepEqual(choice, { accel: 'tcg', reason: `${join(dir, 'none')} is not usable` });
  });
});
