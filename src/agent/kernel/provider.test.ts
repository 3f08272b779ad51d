import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bzImageRelease, GuestKernelSource, provideGuestKernel } from './provider.ts';

describe('guest kernel provider', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imp-kernel-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A file with just enough of a bzImage setup header to name its release. */
  async function fakeBzImage(path: string, version: string): Promise<void> {
    const image = Buffer.alloc(0x400);
    image.write('HdrS', 0x202, 'latin1');
    image.writeUInt16LE(0x300 - 0x200, 0x20e);
    image.write(`${version}\0`, 0x300, 'latin1');
    await writeFile(path, image);
  }

  it("uses the node profile's paths as given and reads the release from the kernel", async () => {
    const kernel = join(dir, 'vmlinuz');
    await fakeBzImage(kernel, '6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP');
    assert.deepEqual(await provideGuestKernel({ kernelPath: kernel, initrdPath: '/boot/i.gz' }), {
      kernelPath: kernel,
      initrdPath: '/boot/i.gz',
      release: '6.1.0-57-cloud-amd64',
    });
    assert.deepEqual(await provideGuestKernel({ kernelPath: kernel }), {
      kernelPath: kernel,
      initrdPath: undefined,
      release: '6.1.0-57-cloud-amd64',
    });
  });

  it('tells no release for a kernel that is not a bzImage', async () => {
    const elf = join(dir, 'vmlinux');
    await writeFile(elf, Buffer.from('\x7fELF', 'latin1'));
    assert.equal(await bzImageRelease(elf), undefined);
    assert.equal(await bzImageRelease(join(dir, 'missing')), undefined);
  });

  it('runs the scripts for what the profile does not name, passing the cache dir', async () => {
    const scripts = join(dir, 'hack');
    const kernelDir = join(dir, 'cache/kernel/6.1.0-99-cloud-amd64');
    await mkdir(join(kernelDir, 'lib/modules/6.1.0-99-cloud-amd64'), { recursive: true });
    await mkdir(scripts);
    await writeFile(
      join(scripts, 'guest-kernel.sh'),
      `#!/bin/sh\necho progress >&2\necho "$IMP_CACHE_DIR/kernel/6.1.0-99-cloud-amd64"\n`,
      { mode: 0o755 },
    );
    await writeFile(
      join(scripts, 'build-initramfs.sh'),
      '#!/bin/sh\necho "$IMP_CACHE_DIR/initramfs/$(basename "$1").cpio.gz"\n',
      { mode: 0o755 },
    );
    const source = new GuestKernelSource({ scriptsDir: scripts, cacheDir: join(dir, 'cache') });
    const files = await source.kernel();
    assert.deepEqual(files, {
      kernelPath: join(kernelDir, 'vmlinuz'),
      initrdPath: join(dir, 'cache/initramfs/6.1.0-99-cloud-amd64.cpio.gz'),
      release: '6.1.0-99-cloud-amd64',
    });
    assert.equal(await source.kernel(), files, 'fetched once');
    assert.match(source.bootArgs({ address: '10.0.0.2/24' }), /imp.ip=10.0.0.2\/24$/);
  });

  it('says which script failed and what it printed', async () => {
    const scripts = join(dir, 'broken');
    await mkdir(scripts);
    await writeFile(
      join(scripts, 'guest-kernel.sh'),
      '#!/bin/sh\necho "guest-kernel: error: cannot resolve linux-image-cloud-amd64" >&2\nexit 1\n',
      { mode: 0o755 },
    );
    await assert.rejects(
      provideGuestKernel({ scriptsDir: scripts }),
      /^Error: run guest-kernel.sh; it said:\nguest-kernel: error: cannot resolve/,
    );
  });
});
