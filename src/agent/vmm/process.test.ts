import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DriverLogger } from './logger.ts';
import { readProcStat } from './proc.ts';
import { adoptedVmm, inNetns, outputTail, spawnVmm, waitForReady } from './process.ts';

const quiet: DriverLogger = { debug() {}, info() {}, warn() {}, error() {} };

describe('VMM processes', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imp-vmm-process-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('runs a VMM inside a network namespace through ip netns exec', () => {
    assert.deepEqual(inNetns(undefined, 'qemu', ['-S']), { command: 'qemu', args: ['-S'] });
    assert.deepEqual(inNetns('ns1', 'qemu', ['-S'], '/sbin/ip'), {
      command: '/sbin/ip',
      args: ['netns', 'exec', 'ns1', 'qemu', '-S'],
    });
  });

  it('appends the output to a file and reports the exit code', async () => {
    const output = join(dir, 'out.log');
    await writeFile(output, 'earlier\n');
    const vmm = spawnVmm({
      command: 'sh',
      args: ['-c', 'echo hello; exit 3'],
      outputPath: output,
      log: quiet,
      vm: 'vm-1',
    });
    assert.equal(await vmm.exited, 3);
    assert.equal(await readFile(output, 'utf8'), 'earlier\nhello\n');
  });

  it('reports the signal that ended it, and a program that never started', async () => {
    const output = join(dir, 'signal.log');
    const vmm = spawnVmm({
      command: 'sleep',
      args: ['30'],
      outputPath: output,
      log: quiet,
      vm: 'a',
    });
    await vmm.signal('SIGKILL');
    assert.equal(await vmm.exited, 'SIGKILL');
    await vmm.signal('SIGKILL'); // already gone: nothing happens
    const missing = spawnVmm({
      command: join(dir, 'no-such-vmm'),
      args: [],
      outputPath: output,
      log: quiet,
      vm: 'b',
    });
    assert.equal(await missing.exited, 'spawn-error: ENOENT');
  });

  it('watches and signals a process it did not start', async () => {
    const output = join(dir, 'adopted.log');
    const child = spawnVmm({
      command: 'sleep',
      args: ['30'],
      outputPath: output,
      log: quiet,
      vm: 'c',
    });
    const stat = await readProcStat(child.pid);
    assert.ok(stat);
    const adopted = adoptedVmm(child.pid, stat.startTicks, 20);
    await adopted.signal('SIGTERM');
    assert.equal(await adopted.exited, 'unknown');
    assert.equal(await child.exited, 'SIGTERM');
  });

  it('waits until the check passes, the process exits or time runs out', async () => {
    let calls = 0;
    const passes = await waitForReady({
      check: async () => {
        calls++;
        if (calls < 3) throw new Error('not yet');
        return 'up';
      },
      exited: new Promise(() => undefined),
      timeoutMs: 1_000,
      what: 'socket',
      intervalMs: 5,
    });
    assert.deepEqual(passes, { value: 'up' });

    const failing = async (): Promise<never> => {
      throw new Error('ECONNREFUSED');
    };
    const exited = await waitForReady({
      check: failing,
      exited: Promise.resolve(1),
      timeoutMs: 1_000,
      what: 'socket',
    });
    assert.ok(!('value' in exited));
    assert.equal(exited.reason, 'VMM exited (1)');
    const silent = await waitForReady({
      check: failing,
      exited: new Promise(() => undefined),
      timeoutMs: 50,
      what: 'socket',
    });
    assert.ok(!('value' in silent));
    assert.equal(silent.reason, 'no socket within 50 ms');
    assert.match(String(silent.lastError), /ECONNREFUSED/);
  });

  it('quotes the last lines of the files that have any', async () => {
    const log = join(dir, 'tail.log');
    await writeFile(log, `${Array.from({ length: 12 }, (_, i) => `line ${i}`).join('\n')}\n`);
    assert.equal(await outputTail([log, join(dir, 'missing.log')], 2), `${log}:\nline 10\nline 11`);
    assert.equal(await outputTail([join(dir, 'missing.log')]), '(no output)');
  });
});
