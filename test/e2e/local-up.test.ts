/**
 * `npm start` as a new user runs it, non-interactively: IMP_LOCAL_CHECK=1 makes
 * `imp local up` exit once the quick-start VM answered through its loopback port-forward.
 * Afterwards nothing it started may be left: no network namespace, no VMM, no kubeconfig.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runTool } from '../../src/agent/image/run.ts';
import { repoRoot } from '../support/cluster.ts';

it('npm start brings up Imp, serves the quick-start page, and cleans up', async () => {
  const started = performance.now();
  const child = spawn('npm', ['start', '--silent'], {
    cwd: repoRoot,
    env: { ...process.env, IMP_LOCAL_CHECK: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => {
    output += d;
  });
  child.stderr.on('data', (d) => {
    output += d;
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`# npm start (check mode) took ${seconds}s`);
  assert.equal(code, 0, output);
  assert.match(output, /hypervisor: (qemu|firecracker) \((kvm|tcg)\) because /);
  assert.match(output, /quick-vm: Running/);
  assert.match(
    output,
    /quick-vm \(192\.168\.100\.\d+ on node [^)]+\) answered on http:\/\/127\.0\.0\.1:\d+\//,
  );
  assert.match(output, /Imp nginx stand-in/);
  assert.match(output, /stopped; nothing left running/);

  const namespaces = (await runTool('ip', ['netns', 'list'], { timeoutMs: 10_000 })).stdout;
  assert.doesNotMatch(namespaces.toString(), /^imp-local\b/m, 'the VM network namespace is gone');
  await assert.rejects(access(join(repoRoot, '.imp', 'kubeconfig')), 'the kubeconfig is removed');
  await assert.rejects(access(join(repoRoot, '.imp', 'local.pid')));
});

/** Starts `npm start` in a process group of its own, as a terminal would, collecting output. */
function startInTerminal() {
  const child = spawn('npm', ['start', '--silent'], {
    cwd: repoRoot,
    env: { ...process.env, IMP_LOCAL_CHECK: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const run = { child, output: '', closed: undefined as Promise<number | string> | undefined };
  child.stdout.on('data', (d) => {
    run.output += d;
  });
  child.stderr.on('data', (d) => {
    run.output += d;
  });
  run.closed = new Promise((resolve) =>
    child.on('close', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  return run;
}

it('refuses a second npm start, and stops in order on Ctrl-C', async () => {
  const first = startInTerminal();
  try {
    const deadline = Date.now() + 300_000;
    while (!/Ctrl-C stops everything/.test(first.output)) {
      assert.ok(Date.now() < deadline, `npm start did not come up:\n${first.output}`);
      assert.equal(first.child.exitCode, null, `npm start ended:\n${first.output}`);
      await sleep(250);
    }
    const url = /answered on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(first.output)![1]!;

    const second = startInTerminal();
    const code = await second.closed;
    assert.notEqual(code, 0);
    assert.match(second.output, /imp local up is already running here \(pid \d+\)/);
    const page = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    assert.equal(page.status, 200, 'the first instance still serves its VM');

    // Ctrl-C goes to the whole foreground process group.
    process.kill(-first.child.pid!, 'SIGINT');
    // npm passes the interrupt on as its own way of ending; Imp itself exits cleanly.
    assert.ok([0, 'SIGINT'].includes(await first.closed!), first.output);
    assert.match(first.output, /stopped; nothing left running/);
    // The control plane outlived the operator and agent: nothing waited on a dead API server.
    const log = await readFile(join(repoRoot, '.imp', 'imp.log'), 'utf8');
    assert.doesNotMatch(log, /lost leadership|leader election attempt failed/);
    assert.match(log, /"msg":"VMM exited"/);
    assert.doesNotMatch(log, /"(how|exit)":"SIGKILL"/, 'the guest was shut down, not killed');
  } finally {
    try {
      process.kill(-first.child.pid!, 'SIGKILL');
    } catch {
      // already gone, as it should be
    }
  }
  const namespaces = (await runTool('ip', ['netns', 'list'], { timeoutMs: 10_000 })).stdout;
  assert.doesNotMatch(namespaces.toString(), /^imp-local\b/m, 'the VM network namespace is gone');
  await assert.rejects(access(join(repoRoot, '.imp', 'local.pid')));
});

it('stops the VM and everything else when interrupted while the VM boots', async () => {
  const run = startInTerminal();
  try {
    const deadline = Date.now() + 300_000;
    while (!/quick-vm: Provisioning/.test(run.output)) {
      assert.ok(Date.now() < deadline, `the VM never started provisioning:\n${run.output}`);
      assert.equal(run.child.exitCode, null, `npm start ended:\n${run.output}`);
      await sleep(100);
    }
    process.kill(-run.child.pid!, 'SIGINT');
    assert.ok([0, 'SIGINT'].includes(await run.closed!), run.output);
    assert.match(run.output, /stopped; nothing left running/);
    assert.doesNotMatch(run.output, /answered on/, 'interrupted before the VM answered');
  } finally {
    try {
      process.kill(-run.child.pid!, 'SIGKILL');
    } catch {
      // already gone, as it should be
    }
  }
  const vmms = await runTool('pgrep', ['-f', join(repoRoot, '.imp', 'state')], {
    timeoutMs: 10_000,
  }).catch(() => ({ stdout: Buffer.from('') }));
  assert.equal(vmms.stdout.toString().trim(), '', 'no VMM of this clone is left running');
  const namespaces = (await runTool('ip', ['netns', 'list'], { timeoutMs: 10_000 })).stdout;
  assert.doesNotMatch(namespaces.toString(), /^imp-local\b/m, 'the VM network namespace is gone');
});
