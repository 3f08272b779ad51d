/**
 * The generated CRDs against a real kube-apiserver: they install, the seed's examples apply,
 * printer columns show, and bad input is refused with a message naming the field.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { allKinds } from '../../src/api/kinds.ts';
import type { ControlPlane } from '../../src/local/controlplane.ts';
import { crdDir, kubectl, kubectlOk, repoRoot, startPlaneWithCrds } from '../support/cluster.ts';

let plane: ControlPlane;

before(async () => {
  plane = await startPlaneWithCrds();
});

after(async () => {
  await plane?.stop();
});

describe('generated CRDs', () => {
  it('installs every kind and the API server serves it', async () => {
    const files = await readdir(crdDir);
    assert.equal(files.length, allKinds.length);
    const resources = await kubectlOk(plane, [
      'api-resources',
      '--api-group=imp.dev',
      '-o',
      'name',
    ]);
    for (const info of allKinds) {
      assert.match(resources, new RegExp(`^${info.plural}\\.imp\\.dev$`, 'm'), info.kind);
    }
  });

  it('groups every kind under the imp category', async () => {
    const out = await kubectlOk(plane, ['get', 'imp', '-A', '-o', 'name']);
    assert.equal(out.trim(), '');
  });
});

describe('seed examples', () => {
  it('applies the quick-start network and VM', async () => {
    const out = await kubectlOk(plane, ['apply', '-f', join(repoRoot, 'examples/quickstart.yaml')]);
    assert.match(out, /impnetwork.imp.dev\/quick-net created/);
    assert.match(out, /impvm.imp.dev\/quick-vm created/);
  });

  it('applies the runner-pool example (class, template and pool)', async () => {
    const out = await kubectlOk(plane, [
      'apply',
      '-f',
      join(repoRoot, 'examples/runner-pool-expiration'),
    ]);
    assert.match(out, /impvmtemplate.imp.dev\/ci-runner-template created/);
    assert.match(out, /impvmrunnerpool.imp.dev\/ci-runner-pool created/);
  });

  it('shows phase, node, IP and age columns for VMs', async () => {
    const out = await kubectlOk(plane, ['get', 'impvm', '-n', 'default']);
    const [header, row] = out.trim().split('\n');
    assert.deepEqual(header?.split(/\s+/), ['NAME', 'PHASE', 'NODE', 'IP', 'AGE']);
    assert.match(row ?? '', /^quick-vm\s/);
  });

  it('resolves short names', async () => {
    const out = await kubectlOk(plane, ['get', 'ivm,inet', '-n', 'default', '-o', 'name']);
    assert.match(out, /impvm.imp.dev\/quick-vm/);
    assert.match(out, /impnetwork.imp.dev\/quick-net/);
  });
});

/** Applies `manifest` expecting refusal; returns kubectl's error text. */
async function rejected(manifest: string): Promise<string> {
  const result = await kubectl(plane, ['apply', '-f', '-'], manifest);
  assert.notEqual(result.code, 0, `expected the API server to refuse:\n${manifest}`);
  return result.stderr;
}

const vm = (spec: string) => `apiVersion: imp.dev/v1alpha1
kind: ImpVM
metadata: {name: bad-vm, namespace: default}
spec:
${spec}`;

const runnerPool = (scaling: string) => `apiVersion: imp.dev/v1alpha1
kind: ImpVMRunnerPool
metadata: {name: bad-pool, namespace: default}
spec:
  templateName: ci-runner-template
  platform:
    type: github-actions
    scope: {repo: your-org/your-repo}
    credentialsSecret: gh-runner-token
  scaling:
${scaling}`;

describe('validation', () => {
  it('refuses an expireAfter under 60s, naming the field', async () => {
    const err = await rejected(vm('  image: busybox\n  expireAfter: 30s'));
    assert.match(err, /spec\.expireAfter/);
    assert.match(err, /at least 60s/);
  });

  it('accepts expireAfter 0 and 60s', async () => {
    for (const value of ['0', '"0"', '60s', '1h30m']) {
      const manifest = vm(`  image: busybox\n  expireAfter: ${value}`);
      const result = await kubectl(plane, ['apply', '--dry-run=server', '-f', '-'], manifest);
      assert.equal(result.code, 0, `${value}: ${result.stderr}`);
    }
  });

  it('refuses a subnet that is not an IPv4 CIDR, naming the field', async () => {
    const err = await rejected(`apiVersion: imp.dev/v1alpha1
kind: ImpNetwork
metadata: {name: bad-net, namespace: default}
spec:
  subnet: 300.1.1.0/24`);
    assert.match(err, /spec\.subnet/);
    assert.match(err, /valid IPv4 CIDR/);
  });

  it('refuses a gateway outside the subnet', async () => {
    const err = await rejected(`apiVersion: imp.dev/v1alpha1
kind: ImpNetwork
metadata: {name: bad-gw, namespace: default}
spec:
  subnet: 10.1.0.0/24
  gateway: 10.2.0.1`);
    assert.match(err, /spec\.gateway/);
  });

  it('refuses a runner pool without scaling.minIdle, naming the field', async () => {
    const err = await rejected(
      runnerPool(
        '    mode: webhook\n    maxConcurrent: 5\n    scaleUpStep: 1\n    cooldownSeconds: 60',
      ),
    );
    assert.match(err, /spec\.scaling\.minIdle: Required value/);
  });

  it('refuses a scaling mode outside webhook, polling and hybrid', async () => {
    const err = await rejected(
      runnerPool(
        '    mode: manual\n    minIdle: 1\n    maxConcurrent: 5\n    scaleUpStep: 1\n' +
          '    cooldownSeconds: 60',
      ),
    );
    assert.match(err, /spec\.scaling\.mode: Unsupported value: "manual"/);
  });

  it('refuses minIdle above maxConcurrent', async () => {
    const err = await rejected(
      runnerPool(
        '    mode: polling\n    minIdle: 9\n    maxConcurrent: 5\n    scaleUpStep: 1\n' +
          '    cooldownSeconds: 60',
      ),
    );
    assert.match(err, /spec\.scaling\.minIdle/);
  });

  it('refuses a VM with neither image nor template', async () => {
    const err = await rejected(vm('  networkRef: {name: quick-net}'));
    assert.match(err, /spec\.image/);
  });

  it('refuses a ClusterImpConfig not named default', async () => {
    const err = await rejected(`apiVersion: imp.dev/v1alpha1
kind: ClusterImpConfig
metadata: {name: other}
spec: {}`);
    assert.match(err, /must be named default/);
  });
});
