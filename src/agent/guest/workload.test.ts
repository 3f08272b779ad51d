import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConsoleWatcher } from './console.ts';
import { argvFor, signalName, workloadScript } from './workload.ts';

const image = {
  entrypoint: ['/docker-entrypoint.sh'],
  cmd: ['nginx', '-g', 'daemon off;'],
  env: ['PATH=/usr/bin:/bin', 'NGINX_VERSION=1.27'],
  workingDir: '',
  user: '',
  stopSignal: '',
};

describe('workloadScript', () => {
  it('follows Kubernetes command and args rules', () => {
    assert.deepEqual(argvFor(image, { env: [] }), [
      '/docker-entrypoint.sh',
      'nginx',
      '-g',
      'daemon off;',
    ]);
    assert.deepEqual(argvFor(image, { env: [], args: ['x'] }), ['/docker-entrypoint.sh', 'x']);
    assert.deepEqual(argvFor(image, { env: [], command: ['/bin/sh'] }), ['/bin/sh']);
    assert.deepEqual(argvFor(image, { env: [], command: ['/bin/sh'], args: ['-c', 'x'] }), [
      '/bin/sh',
      '-c',
      'x',
    ]);
  });

  it("passes the image's stop signal on by name, and none when the image has none", () => {
    assert.match(
      workloadScript({ ...image, stopSignal: 'SIGQUIT' }, { env: [] }),
      /^IMP_STOP_SIGNAL=SIGQUIT$/m,
    );
    assert.doesNotMatch(workloadScript(image, { env: [] }), /IMP_STOP_SIGNAL/);
    assert.equal(signalName('quit'), 'SIGQUIT');
    assert.equal(signalName('3'), 'SIGQUIT');
    assert.equal(signalName('SIGWINCH'), 'SIGWINCH');
    assert.equal(signalName('SIGRTMIN+3'), '37', "systemd's stop signal, by number");
    assert.equal(signalName('RTMAX-1'), '63');
    assert.equal(signalName('40'), '40');
    assert.throws(() => signalName('SIGRTMIN+40'), /not a Linux signal/);
    assert.throws(() => signalName('SIGNOPE'), /stop signal "SIGNOPE" is not a Linux signal/);
    assert.throws(() => signalName('99'), /not a Linux signal/);
  });

  it('quotes every value and lets VM env override the image', () => {
    const text = workloadScript(image, {
      env: [{ name: 'NGINX_VERSION', value: "it's 2" }],
      workingDir: '/srv',
      user: '101:101',
    });
    assert.match(text, /^IMP_WORKDIR='\/srv'$/m);
    assert.match(text, /^IMP_USER='101:101'$/m);
    assert.match(text, /^imp_env 'NGINX_VERSION=it'\\''s 2'$/m);
    assert.match(text, /^imp_arg 'daemon off;'$/m);
    assert.equal(text.match(/NGINX_VERSION/g)?.length, 1);
  });

  it('refuses a VM with nothing to run', () => {
    assert.throws(
      () => workloadScript({ ...image, entrypoint: [], cmd: [] }, { env: [] }),
      /nothing to run/,
    );
  });
});

describe('ConsoleWatcher', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imp-console-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('finds markers across reads, including a line split between them', async () => {
    const log = join(dir, 'split.log');
    await writeFile(log, '[    0.1] booting\nIMP_READY ip=10.0.0.2/24 upt');
    const watcher = new ConsoleWatcher(log);
    assert.equal((await watcher.poll()).ready, false);
    await appendFile(log, 'ime=2.41\nserving\nIMP_EXIT code=3\n');
    const state = await watcher.poll();
    assert.equal(state.ready, true);
    assert.equal(state.readyUptime, 2.41);
    assert.equal(state.exitCode, 3);
  });

  it('reports guest start-up errors', async () => {
    const log = join(dir, 'error.log');
    await writeFile(log, 'IMP_ERROR reason=UnknownUser message="no user app"\n');
    const state = await new ConsoleWatcher(log).poll();
    assert.deepEqual(state.error, { reason: 'UnknownUser', message: 'no user app' });
  });
});
