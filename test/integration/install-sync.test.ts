/**
 * What the install paths copy from elsewhere stays equal to its source: the chart's CRDs
 * (the generator), its webhooks (src/operator/webhooks/config.ts), the kustomize bases (the
 * chart with default values), and the metrics its alerts and dashboard query (the code).
 * Needs helm (hack/helm.sh) and kubectl's kustomize (hack/kube-binaries.sh), no API server.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import {
  CHART_CRD_DIR,
  CRD_KUSTOMIZATION,
  renderCrdFiles,
  renderCrdKustomization,
} from '../../src/api/manifests.ts';
import { agentHelp } from '../../src/cli/agent.ts';
import { operatorHelp } from '../../src/cli/operator.ts';
import { kubeBinaries } from '../../src/local/binaries.ts';
import { validatingWebhookConfiguration } from '../../src/operator/webhooks/config.ts';
import { type CommandResult, repoRoot } from '../support/cluster.ts';

const chart = join(repoRoot, 'charts', 'imp');
const monitoring = ['metrics.serviceMonitor.enabled=true', 'metrics.prometheusRule.enabled=true'];

let helmBin: string;
let kubectlBin: string;

before(async () => {
  const helm = await run('bash', [join(repoRoot, 'hack', 'helm.sh')]);
  assert.equal(helm.code, 0, `hack/helm.sh failed:\n${helm.stderr.slice(-4000)}`);
  helmBin = join(helm.stdout.trim().split('\n').at(-1) ?? '', 'helm');
  kubectlBin = (await kubeBinaries()).kubectl;
});

describe('install files in sync with their sources', () => {
  it('the chart CRDs and config/crd/kustomization.yaml match a fresh generation', async () => {
    const fresh = renderCrdFiles();
    const dir = join(repoRoot, CHART_CRD_DIR);
    const committed = (await readdir(dir)).filter((name) => name.endsWith('.yaml')).sort();
    assert.deepEqual(committed, [...fresh.keys()].sort(), 'run `npm run manifests`');
    for (const [name, text] of fresh) {
      assert.equal(await readFile(join(dir, name), 'utf8'), text, `${name} is stale`);
    }
    const kustomization = await readFile(join(repoRoot, CRD_KUSTOMIZATION), 'utf8');
    assert.equal(kustomization, renderCrdKustomization(fresh.keys()));
  });

  it("the chart's webhooks are the ones src/operator/webhooks/config.ts describes", async () => {
    const rendered = docs(await render([])).find(
      (d) => d.kind === 'ValidatingWebhookConfiguration',
    );
    const expected = validatingWebhookConfiguration({
      service: { namespace: 'imp-system', name: 'imp-webhook', port: 443 },
    });
    assert.equal(rendered?.metadata.name, expected.metadata.name);
    assert.deepEqual(rendered?.webhooks, expected.webhooks);
  });

  it('config/ holds the objects the chart renders with default values', async () => {
    const fromChart = byName(await render(monitoring.flatMap((v) => ['--set', v])));
    const fromConfig = byName(
      (
        await Promise.all(
          ['default', 'defaults', 'monitoring'].map((dir) =>
            kustomize(join(repoRoot, 'config', dir)),
          ),
        )
      ).join('\n---\n'),
    );
    // Only the kustomize bundle creates its namespace; Helm is told to (--create-namespace).
    fromConfig.delete('Namespace /imp-system');
    // The CRDs are compared with the generator above.
    for (const key of fromConfig.keys()) {
      if (key.startsWith('CustomResourceDefinition ')) fromConfig.delete(key);
    }
    assert.deepEqual([...fromConfig.keys()].sort(), [...fromChart.keys()].sort());
    for (const [key, object] of fromChart) {
      assert.deepEqual(fromConfig.get(key), object, `${key} differs between config/ and chart`);
    }
  });

  it('the alerts and the dashboard query only metrics that Imp exports', async () => {
    const exported = new Set<string>();
    for (const file of [
      'src/operator/metrics.ts',
      'src/agent/metrics.ts',
      'src/kube/controller.ts',
    ]) {
      const text = await readFile(join(repoRoot, file), 'utf8');
      for (const m of text.matchAll(/'(imp_[a-z_]*[a-z])'/g)) exported.add(m[1]!);
    }
    assert.ok(exported.has('imp_vms') && exported.has('imp_node_vms'), `found ${[...exported]}`);

    const rules = docs(await render(monitoring.flatMap((v) => ['--set', v]))).find(
      (d) => d.kind === 'PrometheusRule',
    );
    const dashboard = await readFile(join(chart, 'files', 'dashboard.json'), 'utf8');
    const queries = [
      ...rules.spec.groups.flatMap((g: { rules: { expr: string }[] }) =>
        g.rules.map((r) => r.expr),
      ),
      ...JSON.parse(dashboard).panels.flatMap((p: { targets: { expr: string }[] }) =>
        p.targets.map((t) => t.expr),
      ),
    ];
    const used = new Set(
      queries
        .flatMap((q: string) => [...q.matchAll(/\bimp_[a-z_]+/g)].map((m) => m[0]))
        .map((name) => name.replace(/_(bucket|sum|count)$/, '')),
    );
    assert.ok(used.size >= 10, `the rules and dashboard use ${[...used]}`);
    for (const name of used) assert.ok(exported.has(name), `${name} is not exported by Imp`);
  });

  it('the chart passes only flags that `imp operator` and `imp agent` take', async () => {
    const manifest = await render(['--set', 'agent.hypervisor=firecracker']);
    const help = { Deployment: operatorHelp, DaemonSet: agentHelp } as Record<string, string>;
    let checked = 0;
    for (const object of docs(manifest)) {
      const usage = help[object.kind];
      if (!usage) continue;
      const [command, ...args] = object.spec.template.spec.containers[0].args as string[];
      assert.equal(command, object.kind === 'Deployment' ? 'operator' : 'agent');
      for (const arg of args) {
        const flag = arg.split('=')[0]!;
        assert.match(usage, new RegExp(`^\\s+${flag}\\b`, 'm'), `${command} takes ${flag}`);
        checked++;
      }
    }
    assert.ok(checked >= 15, `checked ${checked} flags`);
  });

  it("the chart's appVersion is the package version", async () => {
    const chartYaml = await readFile(join(chart, 'Chart.yaml'), 'utf8');
    const pkg = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8'));
    assert.match(chartYaml, new RegExp(`^appVersion: "${pkg.version}"$`, 'm'));
  });
});

async function render(args: string[]): Promise<string> {
  const result = await run(helmBin, ['template', 'imp', chart, '-n', 'imp-system', ...args]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout;
}

async function kustomize(dir: string): Promise<string> {
  const result = await run(kubectlBin, ['kustomize', dir]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout;
}

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML
function docs(manifest: string): any[] {
  return parseAllDocuments(manifest)
    .map((doc) => doc.toJS())
    .filter(Boolean);
}

/** Labels only one install path sets: Helm's bookkeeping and the chart version. */
const pathLabels = ['app.kubernetes.io/managed-by', 'app.kubernetes.io/version', 'helm.sh/chart'];

/**
 * Objects by `Kind namespace/name`, without what legitimately differs: Helm's labels and the
 * images (placeholders that `make deploy IMG=...` and the chart's values replace).
 */
// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML
function byName(manifest: string): Map<string, any> {
  const objects = new Map();
  for (const object of docs(manifest)) {
    const { kind, metadata } = object;
    for (const labels of [metadata.labels, object.spec?.template?.metadata?.labels]) {
      for (const label of pathLabels) if (labels) delete labels[label];
    }
    for (const container of object.spec?.template?.spec?.containers ?? []) {
      container.image = '(image)';
    }
    objects.set(`${kind} ${metadata.namespace ?? ''}/${metadata.name}`, object);
  }
  return objects;
}

function run(command: string, args: string[]): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
