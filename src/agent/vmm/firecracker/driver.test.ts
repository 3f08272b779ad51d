import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MachineSpec } from '../types.ts';
import { FirecrackerDriver } from './driver.ts';
import type { DriverLogger } from './options.ts';

const quiet: DriverLogger = { debug() {}, info() {}, warn() {}, error() {} };

describe('FirecrackerDriver without a working Firecracker', () => {
  let dir: string;
  let spec: MachineSpec;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imp-fc-driver-'));
    spec = {
      id: 'vm-1',
      vcpus: 1,
      memoryMiB: 64,
      kernelPath: join(dir, 'vmlinux'),
      bootArgs: '',
      drives: [],
      networkInterfaces: [],
      runDir: join(dir, 'vm-1'),
    };
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('says the VMM could not start when the binary is missing', async () => {
    const driver = new FirecrackerDriver({ firecrackerBin: join(dir, 'nope'), log: quiet });
    await assert.rejects(
      driver.create(spec),
      /^Error: start Firecracker for VM vm-1: VMM exited \(spawn-error: ENOENT\)/,
    );
  });

  it("quotes the VMM's last words when it exits at once", async () => {
    const fake = join(dir, 'firecracker');
    await writeFile(fake, '#!/bin/sh\necho "Error: bad arguments: $*"\nexit 1\n');
    await chmod(fake, 0o755);
    const driver = new FirecrackerDriver({ firecrackerBin: fake, log: quiet });
    await assert.rejects(driver.create(spec), (error: Error) => {
      assert.match(error.message, /VMM exited \(1\)/);
      assert.match(error.message, /Error: bad arguments: --id vm-1 --api-sock/);
      return true;
    });
  });

  it('kills a VMM that never opens its API socket', async () => {
    const fake = join(dir, 'firecracker-silent');
    await writeFile(fake, '#!/bin/sh\nexec sleep 30\n');
    await chmod(fake, 0o755);
    const driver = new FirecrackerDriver({
      firecrackerBin: fake,
      log: quiet,
      apiReadyTimeoutMs: 300,
    });
    await assert.rejects(driver.create(spec), /no API within 300 ms/);
  });

  it('refuses an id Firecracker would refuse, before starting anything', async () => {
    const driver = new FirecrackerDriver({ firecrackerBin: join(dir, 'nope'), log: quiet });
    await assert.rejects(driver.create({ ...spec, id: 'default/web' }), /cannot name/);
  });

  it('refuses to adopt a pid that is not running', async () => {
    const driver = new FirecrackerDriver({ firecrackerBin: join(dir, 'nope'), log: quiet });
    await assert.rejects(driver.adopt(spec, 2 ** 22 + 1), /adopt VM vm-1: no process/);
  });
});
