/**
 * The chart's RBAC and admission policy on a real kube-apiserver (RBAC authorization on):
 * the operator and the agent run their own code under their service accounts' tokens, and
 * what lies outside their roles is refused, by RBAC or by the policy binding an agent to
 * its node. Tokens come from the TokenRequest API; the agent's is bound to a pod on its
 * node, so the API server itself says which node it speaks for.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { FIELD_MANAGER_AGENT, FIELD_MANAGER_OPERATOR } from '../../src/api/agentlease.ts';
import { type ApiError, isNotFound, KubeClient } from '../../src/kube/client.ts';
import { EventRecorder } from '../../src/kube/events.ts';
import { Informer } from '../../src/kube/informer.ts';
import { resources } from '../../src/kube/resources.ts';
import { updateWithRetry } from '../../src/kube/update.ts';
import type { ControlPlane } from '../../src/local/controlplane.ts';
import type { ImpNetwork, ImpVM } from '../../src/operator/context.ts';
import { Operator } from '../../src/operator/operator.ts';
import {
  type CommandResult,
  kubectl,
  kubectlOk,
  repoRoot,
  startPlaneWithCrds,
} from '../support/cluster.ts';
import { clientFor, eventually, registerAgent, testLogger } from '../support/operator.ts';

const system = 'imp-system';
const operatorUser = `system:serviceaccount:${system}:imp-operator`;
const agentUser = `system:serviceaccount:${system}:imp-agent`;
/** The kinds the RBAC test installs from the chart: identities, roles and the policy. */
const rbacKinds = new Set([
  'ServiceAccount',
  'ClusterRole',
  'ClusterRoleBinding',
  'Role',
  'RoleBinding',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionPolicyBinding',
]);

let plane: ControlPlane;
let admin: KubeClient;
let operatorClient: KubeClient;
/** Agents' clients by node, each with a token bound to an agent pod on that node. */
const agents = new Map<string, KubeClient>();

before(async () => {
  plane = await startPlaneWithCrds();
  admin = clientFor(plane);
  for (const ns of [system, 'team-a', 'ci-runners', 'other']) {
    await kubectlOk(plane, ['create', 'namespace', ns]);
  }
  await kubectlOk(plane, ['apply', '-f', '-'], await chartRbac());
  for (const node of ['node-a', 'node-b']) {
    await kubectlOk(plane, ['apply', '-f', '-'], nodeAndAgentPod(node));
    agents.set(
      node,
      await clientWithToken([
        'imp-agent',
        '--bound-object-kind=Pod',
        `--bound-object-name=${agentPod(node)}`,
      ]),
    );
  }
  operatorClient = await clientWithToken(['imp-operator']);
  await kubectlOk(plane, ['apply', '-f', '-'], secrets);
  await untilPolicyActive();
});

after(async () => {
  for (const client of [operatorClient, admin, ...agents.values()]) client?.close();
  await plane?.stop();
});

describe('the operator under its service account', () => {
  it('schedules, addresses and deletes a VM, leading through its Lease', async () => {
    const operator = new Operator({
      client: operatorClient,
      log: testLogger('operator'),
      namespace: system,
      identity: 'operator-0',
      leaderElection: { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 },
    });
    // The agent's own heartbeat code, under the agent's token.
    const heartbeat = await registerAgent(agents.get('node-a')!, 'node-a');
    await operator.start();
    try {
      await admin.create(resources.ImpNetwork, network('net-1'));
      await admin.create(resources.ImpVM, vm('vm-1', { networkRef: { name: 'net-1' } }));
      const bound = await eventually('vm-1 bound with an address', async () => {
        const v = await admin.get<ImpVM>(resources.ImpVM, 'vm-1', 'default');
        return v.status?.ip ? v : undefined;
      });
      assert.equal(bound.status?.nodeName, 'node-a');
      assert.ok(bound.metadata.finalizers?.includes('imp.dev/operator'));
      const net = await eventually('net-1 ready with its overlay', async () => {
        const n = await admin.get<ImpNetwork>(resources.ImpNetwork, 'net-1', 'default');
        return n.status?.overlay ? n : undefined;
      });
      assert.equal(net.status?.allocated, 1);
      assert.equal(net.status?.overlay, 'vxlan', 'Cilium looked up, and found absent');
      assert.ok(net.metadata.finalizers?.length, 'the network finalizer');
      const lease = await admin.get(resources.Lease, 'imp-operator', system);
      assert.equal(
        (lease as { spec?: { holderIdentity?: string } }).spec?.holderIdentity,
        'operator-0',
      );
      await eventually('a Scheduled event', async () => {
        const events = await admin.list(resources.Event, 'default');
        return events.items.some((e) => (e as { reason?: string }).reason === 'Scheduled')
          ? true
          : undefined;
      });

      await admin.delete(resources.ImpVM, 'vm-1', 'default');
      await eventually('vm-1 deleted through the finalizer', async () => {
        try {
          await admin.get(resources.ImpVM, 'vm-1', 'default');
          return undefined;
        } catch (err) {
          return isNotFound(err) ? true : undefined;
        }
      });
    } finally {
      await operator.stop();
      await heartbeat.stop();
    }
  });
});

describe('the agent under its service account', () => {
  it('watches, finalizes and reports on the VMs of its node, reading what they name', async () => {
    const agent = agents.get('node-a')!;
    await createBoundVM('vm-a', 'node-a');
    await createBoundVM('vm-b', 'node-b');
    const informer = new Informer<ImpVM>({
      client: agent,
      resource: resources.ImpVM,
      log: testLogger('informer'),
      fieldSelector: 'status.nodeName=node-a',
    });
    informer.start();
    try {
      await informer.synced;
      assert.deepEqual(
        informer.list().map((v) => v.metadata.name),
        ['vm-a'],
      );
      // A change seen through the watch proves the agent may watch, too.
      const patch = { metadata: { labels: { seen: 'yes' } } };
      await admin.mergePatch(resources.ImpVM, 'vm-a', 'default', patch);
      await eventually('the label through the watch', () =>
        informer.get('default/vm-a')?.metadata.labels?.seen === 'yes' ? true : undefined,
      );
    } finally {
      await informer.stop();
    }

    await setAgentFinalizer(agent, 'vm-a', true);
    await agent.apply(
      resources.ImpVM,
      { metadata: { name: 'vm-a', namespace: 'default' }, status: { vmmPid: 4242 } },
      FIELD_MANAGER_AGENT,
      'status',
    );
    const vmA = await admin.get<ImpVM>(resources.ImpVM, 'vm-a', 'default');
    assert.equal(vmA.status?.vmmPid, 4242);
    assert.equal(vmA.status?.nodeName, 'node-a', "the operator's fields are kept");
    assert.ok(vmA.metadata.finalizers?.includes('imp.dev/agent'));

    const events = new EventRecorder({
      client: agent,
      log: testLogger('events'),
      controller: 'imp.dev/agent',
      instance: 'node-a',
    });
    await events.record(vmA, 'Normal', 'Provisioned', 'disk built');
    const recorded = await admin.list(resources.Event, 'default');
    assert.ok(recorded.items.some((e) => (e as { reason?: string }).reason === 'Provisioned'));

    await agent.get(resources.Secret, 'pull', 'team-a');
    await agent.get(resources.ConfigMap, 'kube-root-ca.crt', 'default').catch((err) => {
      if (!isNotFound(err)) throw err; // allowed, merely absent without a controller manager
    });
    await setAgentFinalizer(agent, 'vm-a', false);
  });

  it('is refused changes to VMs and Leases of other nodes, by the admission policy', async () => {
    const agent = agents.get('node-a')!;
    await createBoundVM('vm-free', undefined);
    const cases: [string, () => Promise<unknown>, RegExp][] = [
      [
        'status of a VM on another node',
        () => applyAgentStatus(agent, 'vm-b', { vmmPid: 1 }),
        /node-a may change only ImpVMs bound to it; default\/vm-b is bound to node node-b/,
      ],
      [
        'finalizers of a VM on another node',
        () => setAgentFinalizer(agent, 'vm-b', true),
        /default\/vm-b is bound to node node-b/,
      ],
      [
        'a VM bound to no node',
        () => applyAgentStatus(agent, 'vm-free', { vmmPid: 1 }),
        /default\/vm-free is bound to no node/,
      ],
      [
        'moving its own VM to another node',
        () => applyAgentStatus(agent, 'vm-a', { nodeName: 'node-b' }),
        /may change only ImpVMs bound to it/,
      ],
      [
        'the spec of its own VM',
        () =>
          updateWithRetry<ImpVM>(agent, resources.ImpVM, 'vm-a', 'default', (fresh) => {
            fresh.spec!.image = 'example.com/other:1';
            return true;
          }),
        /may change the finalizers and status of ImpVMs, never their spec/,
      ],
      [
        "another node's heartbeat Lease",
        () => registerAgent(agent, 'node-b'),
        /may change only its own Lease imp-agent-node-a, not imp-agent-node-b/,
      ],
    ];
    for (const [what, attempt, message] of cases) {
      await assert.rejects(attempt, (err: ApiError) => {
        assert.equal(err.status, 403, `${what}: ${err.message}`);
        assert.match(err.message, message, what);
        return true;
      });
    }
    // The agent of node-b may: the policy binds agents to nodes, it does not lock VMs.
    await applyAgentStatus(agents.get('node-b')!, 'vm-b', { vmmPid: 7 });
  });
});

describe('impersonating the service accounts', () => {
  it('RBAC grants each its own flow and the runner credentials to the operator only', async () => {
    const allowed: [string, string[]][] = [
      [operatorUser, ['patch', 'impvms', '--subresource=status', '-n', 'default']],
      [operatorUser, ['update', 'leases', '-n', system]],
      [operatorUser, ['create', 'events.events.k8s.io', '-n', 'default']],
      [operatorUser, ['get', 'secrets', '-n', 'ci-runners']],
      [agentUser, ['patch', 'impvms', '--subresource=status', '-n', 'default']],
      [agentUser, ['create', 'leases', '-n', system]],
      [agentUser, ['get', 'secrets', '-n', 'team-a']],
    ];
    for (const [user, args] of allowed)
      assert.equal(await canI(user, args), 'yes', `${user} ${args}`);
    const denied: [string, string[]][] = [
      [operatorUser, ['get', 'secrets', '-n', 'team-a']],
      [operatorUser, ['list', 'secrets', '-n', 'ci-runners']],
      [operatorUser, ['create', 'leases', '-n', 'default']],
      [operatorUser, ['delete', 'impnetworks', '-n', 'default']],
      [agentUser, ['get', 'secrets', '-n', 'ci-runners']],
      [agentUser, ['get', 'secrets', '-n', system]],
      [agentUser, ['list', 'secrets', '-n', 'team-a']],
      [agentUser, ['delete', 'impvms', '-n', 'default']],
      [agentUser, ['update', 'impnetworks', '-n', 'default']],
      [agentUser, ['delete', 'leases', '-n', system]],
    ];
    for (const [user, args] of denied)
      assert.equal(await canI(user, args), 'no', `${user} ${args}`);
  });

  it('denies reading Secrets of other namespaces and deleting Nodes', async () => {
    for (const user of [operatorUser, agentUser]) {
      for (const args of [
        ['get', 'secret', 'pull', '-n', 'other'],
        ['get', 'secrets', '-n', 'kube-system'],
        ['delete', 'node', 'node-b'],
      ]) {
        const result = await as(user, [], args);
        assert.notEqual(result.code, 0, `${user} ${args}`);
        assert.match(result.stderr, /forbidden/i);
      }
    }
    await kubectlOk(plane, ['get', 'node', 'node-b']);
  });

  it('lets an agent change only VMs of the node named in its user extra', async () => {
    const extra = (node: string) => [
      `--as-user-extra=authentication.kubernetes.io/node-name=${node}`,
    ];
    const refused = await as(agentUser, extra('node-a'), applyStatus, statusManifest('vm-b'));
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /ValidatingAdmissionPolicy 'imp-agent-node-binding'/);
    assert.match(refused.stderr, /default\/vm-b is bound to node node-b/);

    const accepted = await as(agentUser, extra('node-b'), applyStatus, statusManifest('vm-b'));
    assert.equal(accepted.code, 0, accepted.stderr);

    const anonymous = await as(agentUser, [], applyStatus, statusManifest('vm-b'));
    assert.match(anonymous.stderr, /credentials name no node/);
  });
});

/** The chart's RBAC objects and admission policy, with secret namespaces set. */
async function chartRbac(): Promise<string> {
  const helm = await run('bash', [join(repoRoot, 'hack', 'helm.sh')]);
  assert.equal(helm.code, 0, `hack/helm.sh failed:\n${helm.stderr.slice(-4000)}`);
  const helmBin = join(helm.stdout.trim().split('\n').at(-1) ?? '', 'helm');
  const rendered = await run(helmBin, [
    ...['template', 'imp', join(repoRoot, 'charts', 'imp'), '-n', system],
    ...[
      '--set',
      'rbac.agentSecretNamespaces={team-a}',
      '--set',
      'rbac.runnerNamespaces={ci-runners}',
    ],
  ]);
  assert.equal(rendered.code, 0, rendered.stderr);
  const docs = parseAllDocuments(rendered.stdout).filter((d) =>
    rbacKinds.has(d.get('kind') as string),
  );
  assert.equal(docs.length, 16, 'identities, roles, bindings and the policy');
  return docs.map((d) => d.toString()).join('---\n');
}

const agentPod = (node: string) => `imp-agent-${node}`;

/** A Node and an agent pod bound to it (no kubelet runs it; it anchors the token). */
function nodeAndAgentPod(node: string): string {
  return `apiVersion: v1
kind: Node
metadata: { name: ${node} }
---
apiVersion: v1
kind: Pod
metadata: { name: ${agentPod(node)}, namespace: ${system} }
spec:
  nodeName: ${node}
  serviceAccountName: imp-agent
  containers: [{ name: agent, image: example.com/imp-agent:test }]
`;
}

const secrets = `apiVersion: v1
kind: Secret
metadata: { name: pull, namespace: team-a }
stringData: { token: team-a }
---
apiVersion: v1
kind: Secret
metadata: { name: pull, namespace: other }
stringData: { token: other }
---
apiVersion: v1
kind: Secret
metadata: { name: github-app, namespace: ci-runners }
stringData: { privateKey: runner }
`;

/** A client authenticating with a token from `kubectl create token <args>`. */
async function clientWithToken(args: string[]): Promise<KubeClient> {
  const token = (await kubectlOk(plane, ['create', 'token', '-n', system, ...args])).trim();
  const adminConfig = new KubeConfig();
  adminConfig.loadFromFile(plane.kubeconfigPath);
  const cluster = adminConfig.getCurrentCluster()!;
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [cluster],
    users: [{ name: 'service-account', token }],
    contexts: [{ name: 'service-account', cluster: cluster.name, user: 'service-account' }],
    currentContext: 'service-account',
  });
  return new KubeClient(config);
}

/** Waits until the API server enforces the freshly created admission policy. */
async function untilPolicyActive(): Promise<void> {
  const agent = agents.get('node-a')!;
  await eventually('the admission policy in force', async () => {
    try {
      await agent.create(resources.Lease, {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: 'probe', namespace: system },
      });
      await admin.delete(resources.Lease, 'probe', system);
      return undefined;
    } catch (err) {
      return (err as ApiError).status === 403 ? true : undefined;
    }
  });
}

const network = (name: string): ImpNetwork => ({
  apiVersion: 'imp.dev/v1alpha1',
  kind: 'ImpNetwork',
  metadata: { name, namespace: 'default' },
  spec: { subnet: '192.168.50.0/24', nat: { enabled: true } },
});

const vm = (name: string, spec: ImpVM['spec'] = {}): ImpVM => ({
  apiVersion: 'imp.dev/v1alpha1',
  kind: 'ImpVM',
  metadata: { name, namespace: 'default' },
  spec: { image: 'docker.io/library/nginx:1.27-alpine', ...spec },
});

/** A VM the admin binds to `node` the way the operator does (its field manager). */
async function createBoundVM(name: string, node: string | undefined): Promise<void> {
  await admin.create(resources.ImpVM, vm(name));
  if (!node) return;
  await admin.apply(
    resources.ImpVM,
    { metadata: { name, namespace: 'default' }, status: { nodeName: node } },
    FIELD_MANAGER_OPERATOR,
    'status',
  );
}

function applyAgentStatus(client: KubeClient, name: string, status: ImpVM['status']) {
  return client.apply(
    resources.ImpVM,
    { metadata: { name, namespace: 'default' }, status },
    FIELD_MANAGER_AGENT,
    'status',
  );
}

/** Adds or removes the agent's finalizer the way the agent does. */
function setAgentFinalizer(client: KubeClient, name: string, present: boolean) {
  return updateWithRetry<ImpVM>(client, resources.ImpVM, name, 'default', (fresh) => {
    const others = (fresh.metadata.finalizers ?? []).filter((f) => f !== 'imp.dev/agent');
    fresh.metadata.finalizers = present ? [...others, 'imp.dev/agent'] : others;
    return true;
  });
}

/** Server-side apply of a VM's status from stdin, as the agent's field manager. */
const applyStatus = [
  ...['apply', '--server-side', '--subresource=status', '--field-manager', FIELD_MANAGER_AGENT],
  ...['--force-conflicts', '-n', 'default', '-f', '-'],
];

const statusManifest = (name: string) =>
  `apiVersion: imp.dev/v1alpha1\nkind: ImpVM\nmetadata: { name: ${name} }\nstatus: { vmmPid: 9 }\n`;

/** kubectl as a service account (impersonation by the admin). */
function as(user: string, extra: string[], args: string[], input?: string): Promise<CommandResult> {
  return kubectl(
    plane,
    [`--as=${user}`, '--as-group=system:serviceaccounts', ...extra, ...args],
    input,
  );
}

async function canI(user: string, args: string[]): Promise<string> {
  const result = await as(user, [], ['auth', 'can-i', ...args]);
  return result.stdout.trim();
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
