import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { kernelCommandLine } from './cmdline.ts';

describe('kernelCommandLine', () => {
  it('boots from the first virtio disk with the console on the serial port', () => {
    assert.equal(kernelCommandLine({}), 'console=ttyS0 panic=-1 root=/dev/vda rootfstype=ext4 rw');
  });

  it("writes the guest's network, names and extra arguments as imp.* keys", () => {
    assert.equal(
      kernelCommandLine({
        address: '10.213.0.2/24',
        gateway: '10.213.0.1',
        dns: ['10.213.0.1', '9.9.9.9'],
        search: ['svc.local', 'local'],
        mtu: 1450,
        hostname: 'web-1',
        extra: '  loglevel=4 ',
      }),
      'console=ttyS0 panic=-1 root=/dev/vda rootfstype=ext4 rw imp.ip=10.213.0.2/24 ' +
        'imp.gw=10.213.0.1 imp.dns=10.213.0.1,9.9.9.9 imp.search=svc.local,local imp.mtu=1450 ' +
        'imp.hostname=web-1 loglevel=4',
    );
  });

  it('gives a guest under TCG the host TSC rate, and trusts the TSC', () => {
    const line = kernelCommandLine({ tscKhz: 2445422 });
    assert.match(line, / tsc_early_khz=2445422 tsc=reliable$/);
    assert.doesNotMatch(kernelCommandLine({}), /tsc/);
  });

  it('takes another root device, a root wait and quiet', () => {
    assert.equal(
      kernelCommandLine({ rootDevice: '/dev/vdb', rootWaitSeconds: 5, quiet: true }),
      'console=ttyS0 panic=-1 root=/dev/vdb rootfstype=ext4 rw quiet imp.rootwait=5',
    );
  });

  it('leaves out what is empty', () => {
    assert.equal(
      kernelCommandLine({ dns: [], search: [], extra: ' ' }),
      'console=ttyS0 panic=-1 root=/dev/vda rootfstype=ext4 rw',
    );
  });

  it('refuses values the guest init would split or misread', () => {
    assert.throws(() => kernelCommandLine({ address: '10.0.0.2' }), /not IPv4 address\/prefix/);
    assert.throws(() => kernelCommandLine({ address: '10.0.0.2/33' }), /address\/prefix/);
    assert.throws(() => kernelCommandLine({ address: '300.0.0.2/24' }), /address\/prefix/);
    assert.throws(() => kernelCommandLine({ gateway: 'router' }), /gateway router is not IPv4/);
    assert.throws(() => kernelCommandLine({ dns: ['1.1.1.1 x'] }), /nameserver/);
    assert.throws(() => kernelCommandLine({ search: ['a b'] }), /search domain/);
    assert.throws(() => kernelCommandLine({ hostname: 'web 1' }), /hostname "web 1"/);
    assert.throws(() => kernelCommandLine({ hostname: '-web' }), /hostname/);
    assert.throws(() => kernelCommandLine({ hostname: 'a'.repeat(65) }), /hostname/);
    assert.throws(() => kernelCommandLine({ mtu: 20 }), /MTU 20/);
    assert.throws(() => kernelCommandLine({ tscKhz: 1.5 }), /TSC rate/);
  });

  it('accepts dotted host names as long as the kernel allows', () => {
    assert.match(kernelCommandLine({ hostname: 'web-1.default' }), /imp.hostname=web-1.default$/);
    assert.match(kernelCommandLine({ hostname: 'a'.repeat(64) }), /imp.hostname=a{64}$/);
  });
});
