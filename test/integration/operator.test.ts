/**
 * The operator against a real kube-apiserver: binding, addresses, capacity, expiry and
 * leader election. Nodes register with the agent's own heartbeat code; no VMs boot here.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Heartbeat } from '../../src/agent/heartbeat.ts';
import { FIELD_MANAGER_AGENT } from '../../src/api/agentlease.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { isNotFound } from '../../src/kube/client.ts';
import type { KubeObject } from '../../src/kube/object.ts';
import { resources } from '../../src/kube/resources.ts';
import type { ControlPlane } from '../../src/local/controlplane.ts';
import type { ImpNetwork, ImpVM } from '../../src/operator/context.ts';
import type { Operator } from '../../src/operator/operator.ts';
import { startPlaneWithCrds } from '../support/cluster.ts';
import {
  createNode,
  eventually,
  ManualClock,
  registerAgent,
  SYSTEM_NAMESPACE,
  startOperator,
  testLogger,
} from '../support/operator.ts';

let plane: ControlPlane;
let client: KubeClient;
let operator: Operator;
let heartbeat: Heartbeat;
const clock = new ManualClock();
const ns = 'default';

before(async () => {
  plane = await startPlaneWithCrds();
  ({ operator, client } = await startOperator(plane, { clock }));
  await createNode(client, 'node-a', { pool: 'general' });
  await createNode(client, 'node-b', { pool: 'general' }); // no agent: never schedulable
  heartbeat = await registerAgent(client, 'node-a');
});

after(async () => {
  await heartbeat?.stop();
  await operator?.stop();
  client?.close();
  await plane?.stop();
});

const network = (name: string, subnet: string): ImpNetwork => ({
  apiVersion: 'imp.dev/v1alpha1',
  kind: 'ImpNetwork',
  metadata: { name, namespace: ns },
  spec: { subnet, nat: { enabled: true } },
});

const vm = (name: string, spec: ImpVM['spec'] = {}): ImpVM => ({
  apiVersion: 'imp.dev/v1alpha1',
  kind: 'ImpVM',
  metadata: { name, namespace: ns },
  spec: { image: 'docker.io/library/nginx:1.27-alpine', ...spec },
});

const getVM = (name: string) => client.get<ImpVM>(resources.ImpVM, name, ns);

async function gone(name: string): Promise<boolean> {
  try {
    await getVM(name);
    return false;
  } catch (err) {
    if (isNotFound(err)) return true;
    throw err;
  }
}

describe('scheduling and addresses', () => {
  it('binds a VM to the registered node and gives it an address', async () => {
    await client.create(resources.ImpNetwork, network('quick-net', '192.168.100.0/24'));
    await client.create(resources.ImpVM, vm('quick-vm', { networkRef: { name: 'quick-net' } }));
    const bound = await eventually('quick-vm bound with an address', async () => {
      const v = await getVM('quick-vm');
      return v.status?.ip ? v : undefined;
    });
    assert.equal(bound.status?.nodeName, 'node-a');
    assert.equal(bound.status?.ip, '192.168.100.2');
    assert.equal(bound.status?.mac, '02:1d:c0:a8:64:02');
    assert.equal(bound.status?.phase, 'Scheduled');
    const scheduled = bound.status?.conditions?.find((c) => c.type === 'Scheduled');
    assert.equal(scheduled?.status, 'True');
    assert.deepEqual(bound.status?.resources, { vcpus: 1, memoryMiB: 256, diskMiB: 1024 });
    assert.ok(bound.metadata.finalizers?.includes('imp.dev/operator'));
    const net = await client.get<ImpNetwork>(resources.ImpNetwork, 'quick-net', ns);
    assert.equal(net.status?.allocations?.['192.168.100.2'], `quick-vm/${bound.metadata.uid}`);
  });

  it('gives 200 VMs created at once 200 distinct addresses and frees them all', async () => {
    await client.create(resources.ImpNetwork, network('bulk-net', '10.20.0.0/24'));
    const names = Array.from({ length: 200 }, (_, i) => `bulk-${i}`);
    await Promise.all(
      names.map((name) =>
        client.create(resources.ImpVM, vm(name, { networkRef: { name: 'bulk-net' } })),
      ),
    );
    const ips = await eventually(
      'all 200 VMs addressed',
      async () => {
        const list = await client.list<ImpVM>(resources.ImpVM, ns);
        const bulk = list.items.filter((v) => v.metadata.name.startsWith('bulk-'));
        const addressed = bulk.filter((v) => v.status?.ip);
        return addressed.length === 200 ? addressed.map((v) => v.status!.ip!) : undefined;
      },
      120_000,
    );
    assert.equal(new Set(ips).size, 200, 'no address handed out twice');
    const net = await client.get<ImpNetwork>(resources.ImpNetwork, 'bulk-net', ns);
    assert.equal(net.status?.allocated, 200);
    assert.equal(net.status?.free, 53);

    await Promise.all(names.map((name) => client.delete(resources.ImpVM, name, ns)));
    await eventually(
      'all bulk VMs gone',
      async () => {
        const list = await client.list<ImpVM>(resources.ImpVM, ns);
        return list.items.some((v) => v.metadata.name.startsWith('bulk-')) ? undefined : true;
      },
      120_000,
    );
    const after = await client.get<ImpNetwork>(resources.ImpNetwork, 'bulk-net', ns);
    assert.equal(after.status?.allocated, 0);
    assert.deepEqual(after.status?.allocations ?? {}, {});
  });

  it('keeps an unschedulable VM Pending and counts why nodes were rejected', async () => {
    await client.create(resources.ImpVM, vm('picky-vm', { nodeSelector: { pool: 'gpu' } }));
    const pending = await eventually('picky-vm marked unschedulable', async () => {
      const v = await getVM('picky-vm');
      const c = v.status?.conditions?.find((x) => x.type === 'Scheduled');
      return c?.status === 'False' ? v : undefined;
    });
    assert.equal(pending.status?.phase, 'Pending');
    assert.equal(pending.status?.nodeName, undefined);
    const scheduled = pending.status?.conditions?.find((c) => c.type === 'Scheduled');
    assert.equal(scheduled?.reason, 'Unschedulable');
    const expected = '0/2 nodes available: 1 agent not ready, 1 node selector mismatch';
    assert.equal(scheduled?.message, expected);
    const events = await client.list<{ reason?: string; note?: string } & ImpVM>(
      resources.Event,
      ns,
      { fieldSelector: 'regarding.name=picky-vm' },
    );
    const failed = events.items.find((e) => e.reason === 'FailedScheduling');
    assert.equal(failed?.note, expected);
  });

  it('schedules a pending VM once a matching node registers', async () => {
    await createNode(client, 'node-gpu', { pool: 'gpu' });
    const hb = await registerAgent(client, 'node-gpu');
    try {
      const bound = await eventually('picky-vm bound', async () => {
        const v = await getVM('picky-vm');
        return v.status?.nodeName ? v : undefined;
      });
      assert.equal(bound.status?.nodeName, 'node-gpu');
    } finally {
      await hb.stop();
    }
  });

  it('refuses to overbook a node', async () => {
    await createNode(client, 'node-small', { pool: 'small' });
    const hb = await registerAgent(client, 'node-small', {
      hypervisor: 'qemu',
      vcpus: 8,
      memoryMiB: 1024,
    });
    try {
      const spec = { nodeSelector: { pool: 'small' }, resources: { vcpus: 1, memory: '512Mi' } };
      await Promise.all(['s1', 's2', 's3'].map((n) => client.create(resources.ImpVM, vm(n, spec))));
      const states = await eventually('two bound, one refused', async () => {
        const vms = await Promise.all(['s1', 's2', 's3'].map(getVM));
        const bound = vms.filter((v) => v.status?.nodeName === 'node-small');
        const refused = vms.filter(
          (v) => v.status?.conditions?.find((c) => c.type === 'Scheduled')?.status === 'False',
        );
        return bound.length === 2 && refused.length === 1 ? refused : undefined;
      });
      const message = states[0]?.status?.conditions?.find((c) => c.type === 'Scheduled')?.message;
      assert.match(message ?? '', /1 insufficient memory/);
    } finally {
      await hb.stop();
    }
  });

  it('counts the VMs its agent reports running against the node profile', async () => {
    await createNode(client, 'node-busy', { pool: 'busy' });
    await client.create(resources.ClusterImpNodeProfile, {
      apiVersion: 'imp.dev/v1alpha1',
      kind: 'ClusterImpNodeProfile',
      metadata: { name: 'busy' },
      spec: { nodeSelector: { pool: 'busy' }, capacity: { maxVMs: 1 } },
    });
    // One VM still runs there (its object already gone, its VMM being stopped).
    const hb = new Heartbeat({
      client,
      log: testLogger('heartbeat'),
      namespace: SYSTEM_NAMESPACE,
      node: 'node-busy',
      capacity: { hypervisor: 'qemu', vcpus: 8, memoryMiB: 8192 },
      runningVMs: () => 1,
    });
    await hb.start();
    try {
      await client.create(resources.ImpVM, vm('busy-1', { nodeSelector: { pool: 'busy' } }));
      const refused = await eventually('busy-1 refused', async () => {
        const c = (await getVM('busy-1')).status?.conditions?.find((x) => x.type === 'Scheduled');
        return c?.status === 'False' ? c : undefined;
      });
      assert.match(refused.message ?? '', /1 too many VMs/);
    } finally {
      await hb.stop();
      await client.delete(resources.ImpVM, 'busy-1', ns);
      await client.delete(resources.ClusterImpNodeProfile, 'busy');
    }
  });

  it('reports a missing network on the VM instead of failing', async () => {
    await client.create(resources.ImpVM, vm('lost-vm', { networkRef: { name: 'no-such-net' } }));
    const v = await eventually('lost-vm reports the missing network', async () => {
      const got = await getVM('lost-vm');
      const c = got.status?.conditions?.find((x) => x.type === 'AddressAllocated');
      return c?.reason === 'NetworkNotFound' ? got : undefined;
    });
    const ready = v.status?.conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.status, 'False');
    assert.match(ready?.message ?? '', /no-such-net does not exist/);
  });
});

describe('a network being deleted', () => {
  it('gives no new address while its VMs hold it back, then goes', async () => {
    await client.create(resources.ImpNetwork, network('closing-net', '10.31.0.0/24'));
    await client.create(resources.ImpVM, vm('closing-a', { networkRef: { name: 'closing-net' } }));
    await eventually('closing-a addressed', async () =>
      (await getVM('closing-a')).status?.ip ? true : undefined,
    );
    await client.delete(resources.ImpNetwork, 'closing-net', ns);
    await client.create(resources.ImpVM, vm('closing-b', { networkRef: { name: 'closing-net' } }));
    const refused = await eventually('closing-b refused an address', async () => {
      const got = await getVM('closing-b');
      const c = got.status?.conditions?.find((x) => x.type === 'AddressAllocated');
      return c?.reason === 'NetworkTerminating' ? c : undefined;
    });
    assert.match(refused.message ?? '', /closing-net is being deleted/);
    const net = await client.get<ImpNetwork>(resources.ImpNetwork, 'closing-net', ns);
    assert.equal(net.status?.allocated, 1, 'only the address held before the deletion');

    for (const name of ['closing-a', 'closing-b']) await client.delete(resources.ImpVM, name, ns);
    await eventually('closing-net gone with its last VM', async () => {
      try {
        await client.get(resources.ImpNetwork, 'closing-net', ns);
        return undefined;
      } catch (err) {
        return isNotFound(err) ? true : undefined;
      }
    });
  });
});

describe('Cilium detection', () => {
  it('falls back to the overlay without Cilium, and records Cilium when its CRDs appear', async () => {
    await client.create(resources.ImpNetwork, network('overlay-net', '10.30.0.0/24'));
    const fallback = await eventually('overlay chosen', async () => {
      const n = await client.get<ImpNetwork>(resources.ImpNetwork, 'overlay-net', ns);
      return n.status?.overlay ? n : undefined;
    });
    assert.equal(fallback.status?.overlay, 'vxlan');
    assert.equal(fallback.status?.ciliumDetected, false);

    // Cilium's CRDs, as its installation creates them (only the name matters here).
    await client.create(resources.CustomResourceDefinition, {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'ciliumendpoints.cilium.io' },
      spec: {
        group: 'cilium.io',
        names: {
          kind: 'CiliumEndpoint',
          plural: 'ciliumendpoints',
          listKind: 'CiliumEndpointList',
        },
        scope: 'Namespaced',
        versions: [
          {
            name: 'v2',
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
            },
          },
        ],
      },
    } as KubeObject);
    const detected = await eventually('Cilium recorded', async () => {
      const n = await client.get<ImpNetwork>(resources.ImpNetwork, 'overlay-net', ns);
      return n.status?.overlay === 'cilium' ? n : undefined;
    });
    assert.equal(detected.status?.ciliumDetected, true);
    const events = await client.list<ImpVM & { reason?: string }>(resources.Event, ns, {
      fieldSelector: 'regarding.name=overlay-net',
    });
    const reasons = events.items.map((e) => e.reason);
    assert.ok(
      reasons.includes('OverlayFallback') && reasons.includes('CiliumDetected'),
      `${reasons}`,
    );
  });
});

describe('deletion and metrics', () => {
  it('completes deletion after the grace period when the node agent is gone', async () => {
    await createNode(client, 'node-lost', { pool: 'lost' });
    const hb = await registerAgent(client, 'node-lost');
    await client.create(resources.ImpVM, vm('orphan-vm', { nodeSelector: { pool: 'lost' } }));
    await eventually('orphan-vm bound', async () => {
      const v = await getVM('orphan-vm');
      return v.status?.nodeName === 'node-lost' ? v : undefined;
    });
    // The agent holds its finalizer while the VM has resources on the node...
    await client.mergePatch(resources.ImpVM, 'orphan-vm', ns, {
      metadata: { finalizers: ['imp.dev/operator', 'imp.dev/agent'] },
    });
    // ...and then the node goes away for good.
    await hb.stop();
    await client.delete(resources.ImpVM, 'orphan-vm', ns);
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(await gone('orphan-vm'), false, 'waits while the agent might come back');
    await eventually('orphan-vm shown as Stopping', async () => {
      const v = await getVM('orphan-vm');
      return v.status?.phase === 'Stopping' ? v : undefined;
    });
    clock.advance(10 * 60_000);
    await client.mergePatch(resources.ImpVM, 'orphan-vm', ns, {
      metadata: { labels: { tick: '1' } },
    });
    await eventually('orphan-vm deleted', async () =>
      (await gone('orphan-vm')) ? true : undefined,
    );
    const events = await client.list<ImpVM & { reason?: string }>(resources.Event, ns, {
      fieldSelector: 'regarding.name=orphan-vm',
    });
    assert.ok(events.items.some((e) => e.reason === 'AgentUnreachable'));
    clock.advance(-10 * 60_000);
  });

  it('exports VM, scheduling, reconcile and leader metrics', async () => {
    const text = await operator.metrics.registry.metrics();
    assert.match(text, /^imp_operator_leader 1$/m);
    assert.match(text, /^imp_vms\{phase="Scheduled"\} \d+$/m);
    const count = Number(/^imp_vm_scheduling_duration_seconds_count (\d+)$/m.exec(text)?.[1]);
    assert.ok(count >= 200, `scheduling observations: ${count}`);
    assert.match(text, /^imp_reconcile_total\{controller="vm",result="success"\} \d+$/m);
    assert.match(text, /^imp_reconcile_duration_seconds_bucket\{le="0\.1",controller="vm"\}/m);
    assert.match(text, /^imp_workqueue_depth\{controller="vm"\} \d+$/m);
    assert.match(
      text,
      /^imp_network_free_addresses\{namespace="default",network="quick-net"\} 252$/m,
    );
  });
});

describe('expiry', () => {
  /** Writes runningAt as the agent does (its own field manager). */
  async function markRunning(name: string, at: Date) {
    await client.apply(
      resources.ImpVM,
      {
        metadata: { name, namespace: ns },
        status: { runningAt: at.toISOString().replace(/\.\d+Z$/, 'Z') },
      },
      FIELD_MANAGER_AGENT,
      'status',
    );
  }

  const expiresAt = (name: string, expected: Date) =>
    eventually(`${name} expiresAt`, async () => {
      const v = await getVM(name);
      return v.status?.expiresAt === expected.toISOString().replace(/\.\d+Z$/, 'Z') ? v : undefined;
    });

  it('takes the VM value, then the creating pool, then the template', async () => {
    await client.create(resources.ImpVMTemplate, {
      apiVersion: 'imp.dev/v1alpha1',
      kind: 'ImpVMTemplate',
      metadata: { name: 'runner-tpl', namespace: ns },
      spec: { image: 'docker.io/library/nginx:1.27-alpine', expireAfter: '2h' },
    });
    const pool = await client.create<KubeObject>(resources.ImpVMRunnerPool, {
      apiVersion: 'imp.dev/v1alpha1',
      kind: 'ImpVMRunnerPool',
      metadata: { name: 'runners', namespace: ns },
      spec: {
        templateName: 'runner-tpl',
        expireAfter: '45m',
        platform: {
          type: 'github-actions',
          scope: { repo: 'o/r' },
          credentialsSecret: 'gh',
        },
        scaling: {
          mode: 'polling',
          minIdle: 0,
          maxConcurrent: 1,
          scaleUpStep: 1,
          cooldownSeconds: 0,
        },
      },
    });
    const tplOnly = vm('exp-template', { templateRef: { name: 'runner-tpl' } });
    const own = vm('exp-own', { templateRef: { name: 'runner-tpl' }, expireAfter: '90s' });
    const fromPool = vm('exp-pool', { templateRef: { name: 'runner-tpl' } });
    fromPool.metadata.ownerReferences = [
      {
        apiVersion: 'imp.dev/v1alpha1',
        kind: 'ImpVMRunnerPool',
        name: 'runners',
        uid: pool.metadata.uid!,
        controller: true,
      },
    ];
    const disabled = vm('exp-off', { templateRef: { name: 'runner-tpl' }, expireAfter: '0' });
    for (const v of [tplOnly, own, fromPool, disabled]) await client.create(resources.ImpVM, v);

    const start = new Date(Math.floor(clock.now().getTime() / 1000) * 1000);
    for (const name of ['exp-template', 'exp-own', 'exp-pool', 'exp-off']) {
      await markRunning(name, start);
    }
    await expiresAt('exp-template', new Date(start.getTime() + 2 * 3600_000));
    await expiresAt('exp-own', new Date(start.getTime() + 90_000));
    await expiresAt('exp-pool', new Date(start.getTime() + 45 * 60_000));
    await eventually('exp-off has been looked at without expiry', async () => {
      const v = await getVM('exp-off');
      return v.status?.nodeName && v.status.expiresAt === undefined ? v : undefined;
    });
  });

  it('still expires a running VM whose template was deleted, and says so once', async () => {
    await client.create(resources.ImpVMTemplate, {
      apiVersion: 'imp.dev/v1alpha1',
      kind: 'ImpVMTemplate',
      metadata: { name: 'short-lived-tpl', namespace: ns },
      spec: { image: 'docker.io/library/nginx:1.27-alpine' },
    });
    const orphan = vm('exp-orphan', {
      templateRef: { name: 'short-lived-tpl' },
      expireAfter: '2m',
    });
    await client.create(resources.ImpVM, orphan);
    const start = new Date(Math.floor(clock.now().getTime() / 1000) * 1000);
    await markRunning('exp-orphan', start);
    await expiresAt('exp-orphan', new Date(start.getTime() + 120_000));

    await client.delete(resources.ImpVMTemplate, 'short-lived-tpl', ns);
    const missing = await eventually('the missing template reported', async () => {
      const got = await getVM('exp-orphan');
      const c = got.status?.conditions?.find((x) => x.type === 'SpecResolved');
      return c?.reason === 'TemplateNotFound' ? got : undefined;
    });
    assert.equal(
      missing.status?.expiresAt,
      new Date(start.getTime() + 120_000).toISOString().replace(/\.\d+Z$/, 'Z'),
    );
    // More reconciles (a label change each) do not repeat the warning.
    for (const tick of ['1', '2']) {
      await client.mergePatch(resources.ImpVM, 'exp-orphan', ns, {
        metadata: { labels: { tick } },
      });
    }
    await eventually('label seen', async () =>
      (await getVM('exp-orphan')).metadata.labels?.tick === '2' ? true : undefined,
    );
    await sleep(1_000); // time for those reconciles, which must not warn again
    const events = await client.list<ImpVM & { reason?: string; series?: { count: number } }>(
      resources.Event,
      ns,
      { fieldSelector: 'regarding.name=exp-orphan' },
    );
    // Repeats fold into one Event's series, so count occurrences, not objects.
    const warnings = events.items
      .filter((e) => e.reason === 'TemplateNotFound')
      .reduce((sum, e) => sum + (e.series?.count ?? 1), 0);
    assert.equal(warnings, 1);

    clock.advance(121_000);
    await client.mergePatch(resources.ImpVM, 'exp-orphan', ns, {
      metadata: { labels: { tick: '3' } },
    });
    await eventually('exp-orphan deleted by expiry', async () =>
      (await gone('exp-orphan')) ? true : undefined,
    );
  });

  it('anchors to the first runningAt and deletes the VM once the time has passed', async () => {
    const before = await getVM('exp-own');
    const deadline = before.status!.expiresAt!;
    // Another write to the VM does not move the expiry.
    await client.mergePatch(resources.ImpVM, 'exp-own', ns, {
      metadata: { labels: { touched: 'yes' } },
    });
    const touched = await eventually('label seen', async () => {
      const v = await getVM('exp-own');
      return v.metadata.labels?.touched ? v : undefined;
    });
    assert.equal(touched.status?.expiresAt, deadline);
    assert.equal(await gone('exp-own'), false, 'not expired before its time');

    clock.advance(91_000);
    await client.mergePatch(resources.ImpVM, 'exp-own', ns, {
      metadata: { labels: { tick: '1' } },
    });
    await eventually('exp-own deleted by expiry', async () =>
      (await gone('exp-own')) ? true : undefined,
    );
    assert.equal(await gone('exp-pool'), false, 'the pool VM has 45 minutes');
    const events = await client.list<ImpVM & { reason?: string }>(resources.Event, ns, {
      fieldSelector: 'regarding.name=exp-own',
    });
    assert.ok(events.items.some((e) => e.reason === 'Expired'));
  });
});
