/**
 * `npm start` as a new user runs it, non-interactively: IMP_LOCAL_CHECK=1 makes
 * `imp local up` exit once the quick-start VM answered through its loopback port-forward.
 * Afterwards nothing it started may be left: no network namespace, no VMM, no kubeconfig.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'node:test';
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
