/**
 * Installing Imp on a real kube-apiserver: the Helm chart (lint, server-side dry runs of
 * its renderings, install and uninstall) and the kustomize path (`make build-installer`,
 * `make deploy`, `make undeploy`). helm comes from hack/helm.sh, which builds it from the
 * Go module proxy on a cold cache (minutes, once). No pod runs here: the test server has
 * no scheduler or kubelet, so what is proven is what the API server accepts and stores.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { ControlPlane } from '../../src/local/controlplane.ts';
import { type CommandResult, kubectl, kubectlOk, repoRoot } from '../support/cluster.ts';

const chart = join(repoRoot, 'charts', 'imp');
const fixtures = join(repoRoot, 'test', 'fixtures', 'crds');
const namespace = 'imp-system';
/** Values that switch on every optional object of the chart. */
const everything = [
  '--set',
  'metrics.serviceMonitor.enabled=true',
  '--set',
  'metrics.prometheusRule.enabled=true',
  '--set',
  'metrics.dashboard.enabled=true',
  '--set',
  'rbac.agentSecretNamespaces={team-a}',
  '--set',
  'rbac.runnerNamespaces={ci-runners}',
];
/** What a release leaves in the cluster besides CRDs, found by the release's label. */
const releaseKinds = [
  'deployments',
  'daemonsets',
  'services',
  'serviceaccounts',
  'configmaps',
  'roles',
  'rolebindings',
  'clusterroles',
  'clusterrolebindings',
  'validatingwebhookconfigurations',
  'validatingadmissionpolicies',
  'validatingadmissionpolicybindings',
  'certificates.cert-manager.io',
  'issuers.cert-manager.io',
].join(',');

let plane: ControlPlane;
let helmBin: string;
let helmHome: string;

before(async () => {
  helmBin = await helmBinary();
  helmHome = await mkdtemp(join(tmpdir(), 'imp-helm-'));
  plane = await ControlPlane.start({ onProgress: (line) => console.error(line) });
  await kubectlOk(plane, ['apply', '--server-side', '-f', fixtures]);
  await kubectlOk(plane, ['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
  for (const ns of [namespace, 'team-a', 'ci-runners']) {
    await kubectlOk(plane, ['create', 'namespace', ns]);
  }
});

after(async () => {
  await plane?.stop();
  if (helmHome) await rm(helmHome, { recursive: true, force: true });
});

describe('the Helm chart', () => {
  // First in this file: the server has no Imp CRDs yet, so Helm must install them.
  it('installs with helm (CRDs included) and uninstalls leaving only the CRDs', async () => {
    assert.deepEqual(await impCrds(), [], 'no Imp CRDs before the install');

    const install = await helm(['install', 'imp', chart, '-n', namespace]);
    assert.equal(install.code, 0, install.stderr);
    assert.equal((await impCrds()).length, 10);
    const installed = await releaseObjects();
    for (const expected of [
      'deployment.apps/imp-operator',
      'daemonset.apps/imp-agent',
      'validatingadmissionpolicy.admissionregistration.k8s.io/imp-agent-node-binding',
      'validatingwebhookconfiguration.admissionregistration.k8s.io/imp-validation',
      'certificate.cert-manager.io/imp-webhook',
    ]) {
      assert.ok(installed.includes(expected), `${expected} installed; got ${installed}`);
    }
    const impObjects = await kubectlOk(plane, ['get', 'imp', '-A', '-o', 'name']);
    assert.match(impObjects, /clusterimpconfig\.imp\.dev\/default/);
    assert.match(impObjects, /clusterimpnodeprofile\.imp\.dev\/default/);
    const replicas = await kubectlOk(plane, [
      ...['get', 'deployment', 'imp-operator', '-n', namespace],
      ...['-o', 'jsonpath={.spec.replicas}'],
    ]);
    assert.equal(replicas, '2');

    const uninstall = await helm(['uninstall', 'imp', '-n', namespace]);
    assert.equal(uninstall.code, 0, uninstall.stderr);
    assert.deepEqual(await releaseObjects(), [], 'nothing of the release is left');
    assert.equal(await kubectlOk(plane, ['get', 'imp', '-A', '-o', 'name']), '');
    assert.equal((await impCrds()).length, 10, 'the CRDs are kept');
  });

  it('passes helm lint with default values, every optional object, and none', async () => {
    const none = [
      'webhook.enabled',
      'admissionPolicy.enabled',
      'clusterConfig.create',
      'nodeProfile.create',
      'agent.requireKvm',
    ].flatMap((key) => ['--set', `${key}=false`]);
    for (const values of [[], everything, none]) {
      const result = await helm(['lint', chart, ...values]);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  it('renders default values that the API server accepts in a server-side dry run', async () => {
    await ensureImpCrds();
    const manifest = await render([]);
    assert.deepEqual(kindsOf(manifest), [
      'Certificate',
      'ClusterImpConfig',
      'ClusterImpNodeProfile',
      'ClusterRole',
      'ClusterRoleBinding',
      'DaemonSet',
      'Deployment',
      'Issuer',
      'Role',
      'RoleBinding',
      'Service',
      'ServiceAccount',
      'ValidatingAdmissionPolicy',
      'ValidatingAdmissionPolicyBinding',
      'ValidatingWebhookConfiguration',
    ]);
    await acceptedByDryRun(manifest);
  });

  it('renders every optional object, and the API server accepts them', async () => {
    await ensureImpCrds();
    const manifest = await render(everything);
    const names = objectsOf(manifest);
    for (const expected of [
      'ServiceMonitor imp-system/imp-operator',
      'ServiceMonitor imp-system/imp-agent',
      'PrometheusRule imp-system/imp',
      'ConfigMap imp-system/imp-dashboard',
      'RoleBinding team-a/imp-agent-secrets',
      'RoleBinding ci-runners/imp-operator-runner-credentials',
    ]) {
      assert.ok(names.includes(expected), `${expected} rendered`);
    }
    const dashboard = docsOf(manifest).find((d) => d.kind === 'ConfigMap');
    const panels = JSON.parse(dashboard?.data?.['imp.json'] ?? '{}').panels;
    assert.ok(panels?.length > 0, 'the dashboard ConfigMap holds the dashboard JSON');
    await acceptedByDryRun(manifest);
  });

  it('uses a given Secret and CA bundle instead of cert-manager', async () => {
    const off = ['--set', 'webhook.certManager.enabled=false'];
    const missing = await helm(['template', 'imp', chart, '-n', namespace, ...off]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /is required when webhook.certManager.enabled is false/);

    const caBundle = Buffer.from('-----BEGIN CERTIFICATE-----\n').toString('base64');
    const manifest = await render([
      ...off,
      ...['--set', 'webhook.secretName=my-webhook-tls', '--set', `webhook.caBundle=${caBundle}`],
    ]);
    const kinds = kindsOf(manifest);
    assert.ok(!kinds.includes('Certificate') && !kinds.includes('Issuer'));
    const docs = docsOf(manifest);
    const webhooks = docs.find((d) => d.kind === 'ValidatingWebhookConfiguration');
    assert.equal(webhooks?.metadata?.annotations, undefined, 'no cert-manager injection');
    for (const hook of webhooks?.webhooks ?? []) assert.equal(hook.clientConfig.caBundle, caBundle);
    const deployment = docs.find((d) => d.kind === 'Deployment');
    const volume = deployment?.spec.template.spec.volumes.find((v: { name: string }) =>
      v.name.startsWith('webhook'),
    );
    assert.equal(volume?.secret.secretName, 'my-webhook-tls');
    await ensureImpCrds();
    await acceptedByDryRun(manifest);
  });

  it('refuses values that would let the agent read runner credentials', async () => {
    const cases: [string[], RegExp][] = [
      [['rbac.agentSecretNamespaces={*}', 'rbac.runnerNamespaces={ci}'], /cannot be combined/],
      [['rbac.agentSecretNamespaces={ci}', 'rbac.runnerNamespaces={ci}'], /namespace ci is in/],
      [['rbac.agentSecretNamespaces={imp-system}'], /must not hold the release namespace/],
    ];
    for (const [sets, message] of cases) {
      const args = sets.flatMap((s) => ['--set', s]);
      const result = await helm(['template', 'imp', chart, '-n', namespace, ...args]);
      assert.notEqual(result.code, 0, `${sets} must not render`);
      assert.match(result.stderr, message);
    }
  });
});

describe('the kustomize path', () => {
  it('make build-installer writes a bundle with the given images for a dry run', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imp-installer-'));
    try {
      const file = join(dir, 'install.yaml');
      await make(['build-installer', 'IMG=example.com/imp:test', `INSTALLER=${file}`]);
      const manifest = await readFile(file, 'utf8');
      const images = [...manifest.matchAll(/^\s+image: (\S+)$/gm)].map((m) => m[1]).sort();
      assert.deepEqual(images, ['example.com/imp:test', 'example.com/imp:test-agent']);
      const crds = docsOf(manifest).filter((d) => d.kind === 'CustomResourceDefinition');
      assert.equal(crds.length, 10);
      await acceptedByDryRun(manifest);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  // Last in this file: undeploy deletes the namespace, which stays Terminating here because
  // no namespace controller runs.
  it('make deploy installs everything and make undeploy removes all but the CRDs', async () => {
    await make(['deploy', 'IMG=example.com/imp:test']);
    const deployed = await releaseObjects();
    assert.ok(deployed.includes('daemonset.apps/imp-agent'), `deployed: ${deployed}`);
    assert.match(await kubectlOk(plane, ['get', 'imp', '-A', '-o', 'name']), /clusterimpconfig/);

    await make(['undeploy', 'IMG=example.com/imp:test']);
    assert.deepEqual(await releaseObjects(), []);
    assert.equal(await kubectlOk(plane, ['get', 'imp', '-A', '-o', 'name']), '');
    assert.equal((await impCrds()).length, 10, 'the CRDs are kept');
  });
});

/** Builds or finds helm through hack/helm.sh; its last stdout line is the directory. */
async function helmBinary(): Promise<string> {
  const result = await run('bash', [join(repoRoot, 'hack', 'helm.sh')]);
  if (result.code !== 0) throw new Error(`hack/helm.sh failed:\n${result.stderr.slice(-4000)}`);
  return join(result.stdout.trim().split('\n').at(-1) ?? '', 'helm');
}

/** Runs helm against the test server, with its config and caches in a throwaway home. */
function helm(args: string[]): Promise<CommandResult> {
  return run(helmBin, ['--kubeconfig', plane.kubeconfigPath, ...args], {
    env: {
      ...process.env,
      HELM_CONFIG_HOME: join(helmHome, 'config'),
      HELM_CACHE_HOME: join(helmHome, 'cache'),
      HELM_DATA_HOME: join(helmHome, 'data'),
    },
  });
}

async function render(values: string[]): Promise<string> {
  const result = await helm(['template', 'imp', chart, '-n', namespace, ...values]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout;
}

/** Runs make in the repository against the test server, with the test's kubectl. */
async function make(args: string[]): Promise<string> {
  const result = await run('make', ['--no-print-directory', ...args, `KUBECTL=${kubectlPath()}`], {
    cwd: repoRoot,
    env: { ...process.env, KUBECONFIG: plane.kubeconfigPath },
  });
  assert.equal(result.code, 0, `make ${args.join(' ')}: ${result.stdout}${result.stderr}`);
  return result.stdout;
}

const kubectlPath = () => plane.binaries.kubectl;

async function acceptedByDryRun(manifest: string): Promise<void> {
  const result = await kubectl(
    plane,
    ['apply', '--server-side', '--dry-run=server', '-f', '-'],
    manifest,
  );
  assert.equal(result.code, 0, `server-side dry run refused:\n${result.stderr}`);
}

async function ensureImpCrds(): Promise<void> {
  await kubectlOk(plane, ['apply', '--server-side', '-f', join(chart, 'crds')]);
  await kubectlOk(plane, ['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
}

async function impCrds(): Promise<string[]> {
  const out = await kubectlOk(plane, ['get', 'crd', '-o', 'name']);
  return out.split('\n').filter((line) => line.endsWith('.imp.dev'));
}

/** Objects carrying Imp's labels, cluster-wide, as `kind.group/name`. */
async function releaseObjects(): Promise<string[]> {
  const out = await kubectlOk(plane, [
    ...['get', releaseKinds, '-A', '-o', 'name'],
    ...['-l', 'app.kubernetes.io/part-of=imp,app.kubernetes.io/instance=imp'],
  ]);
  return out.split('\n').filter(Boolean);
}

// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are untyped YAML
function docsOf(manifest: string): any[] {
  return parseAllDocuments(manifest)
    .map((doc) => doc.toJS())
    .filter(Boolean);
}

function kindsOf(manifest: string): string[] {
  return [...new Set(docsOf(manifest).map((d) => d.kind as string))].sort();
}

function objectsOf(manifest: string): string[] {
  return docsOf(manifest).map(
    (d) => `${d.kind} ${d.metadata.namespace ? `${d.metadata.namespace}/` : ''}${d.metadata.name}`,
  );
}

function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
