import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  ownsUnixSocket,
  parseProcStat,
  parseRssBytes,
  parseUnixSocketPaths,
  processUsage,
  readProcStat,
  watchForExit,
} from './proc.ts';

describe('parseProcStat', () => {
  it('counts fields after the last parenthesis, whatever the name holds', () => {
    const line =
      '4242 (fc_vcpu 0) (x)) S 1 4242 4242 0 -1 4194560 300 0 0 0 ' +
      '125 37 0 0 20 0 3 0 987654 1000000 500 18446744073709551615\n';
    assert.deepEqual(parseProcStat(line), {
      state: 'S',
      userTicks: 125,
      systemTicks: 37,
      startTicks: 987654,
    });
  });

  it('refuses a line it cannot read', () => {
    assert.throws(() => parseProcStat('garbage'), /malformed/);
    assert.throws(() => parseProcStat('1 (x) S 1 2'), /no field 14/);
  });
});

describe('parseRssBytes', () => {
  it('reads VmRSS in bytes', () => {
    assert.equal(parseRssBytes('Name:\tfirecracker\nVmRSS:\t   40960 kB\nThreads: 3\n'), 41943040);
    assert.equal(parseRssBytes('Name:\tkthreadd\n'), undefined);
  });
});

describe('parseUnixSocketPaths', () => {
  it('maps inodes to bound paths and skips unnamed sockets', () => {
    const text =
      'Num       RefCount Protocol Flags    Type St Inode Path\n' +
      '0000000000000000: 00000002 00000000 00010000 0001 01 31337 /run/imp/vm-1/fc.sock\n' +
      '0000000000000000: 00000003 00000000 00000000 0001 03 31338\n';
    assert.deepEqual([...parseUnixSocketPaths(text)], [['31337', '/run/imp/vm-1/fc.sock']]);
  });
});

describe('this process in /proc', () => {
  it('reports its own CPU time and memory', async () => {
    const usage = await processUsage(process.pid);
    assert.ok(usage.cpuSeconds > 0);
    assert.ok((usage.rssBytes ?? 0) > 1024 * 1024);
  });

  it('tells which Unix socket a process holds', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imp-fc-proc-'));
    const server = createServer();
    try {
      await new Promise<void>((resolve) => server.listen(join(dir, 'a.sock'), resolve));
      assert.equal(await ownsUnixSocket(process.pid, join(dir, 'a.sock')), true);
      assert.equal(await ownsUnixSocket(process.pid, join(dir, 'b.sock')), false);
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('notices when a process it did not start has gone', async () => {
    const child = spawn('sleep', ['0.3'], { stdio: 'ignore' });
    const stat = await readProcStat(child.pid ?? -1);
    assert.ok(stat);
    const started = Date.now();
    assert.equal(await watchForExit(child.pid ?? -1, stat.startTicks, 50), 'unknown');
    assert.ok(Date.now() - started >= 200);
  });

  it('takes a pid with another start time for another process', async () => {
    const stat = await readProcStat(process.pid);
    assert.ok(stat);
    assert.equal(await watchForExit(process.pid, stat.startTicks + 1, 50), 'unknown');
  });
});
