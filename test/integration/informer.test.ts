/**
 * The informer against a real kube-apiserver, with network faults put between them by a
 * TCP relay: dropped connections, a watch that goes silent, and a resourceVersion that the
 * server has compacted away (410 Gone). In every case the cache must end up exactly as the
 * server has it, and the informer must say how it got there (resumed or relisted).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { isGone, KubeClient, type ListOptions } from '../../src/kube/client.ts';
import { Informer } from '../../src/kube/informer.ts';
import type { KubeList, KubeObject } from '../../src/kube/object.ts';
import { type Resource, resources } from '../../src/kube/resources.ts';
import { ControlPlane } from '../../src/local/controlplane.ts';
import { FaultProxy } from '../support/faultproxy.ts';
import { clientFor, eventually, testLogger } from '../support/operator.ts';

type ConfigMap = KubeObject & { data?: Record<string, string> };

/** A real client that counts its list calls, so a resumed watch is told from a relist. */
class CountingClient extends KubeClient {
  lists = 0;
  override list<T extends KubeObject>(
    r: Resource,
    namespace?: string,
    options?: ListOptions,
  ): Promise<KubeList<T>> {
    this.lists++;
    return super.list<T>(r, namespace, options);
  }
}

/** A client of `plane` whose requests go through `proxy`. */
function clientThrough(plane: ControlPlane, proxy: FaultProxy): CountingClient {
  const config = new KubeConfig();
  config.loadFromFile(plane.kubeconfigPath);
  const cluster = config.getCurrentCluster()!;
  config.loadFromOptions({
    clusters: [{ ...cluster, server: proxy.url() }],
    users: config.users,
    contexts: config.contexts,
    currentContext: config.currentContext,
  });
  return new CountingClient(config);
}

const configMap = (name: string, value: string): ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: 'default' },
  data: { value },
});

/** The cache as name → value, sorted, to compare with the server's view. */
function cacheOf(informer: Informer<ConfigMap>): string {
  return JSON.stringify(
    informer
      .list()
      .map((c) => [c.metadata.name, c.data?.value])
      .sort(),
  );
}

async function serverView(admin: KubeClient): Promise<string> {
  const list = await admin.list<ConfigMap>(resources.ConfigMap, 'default', {
    labelSelector: 'test=informer',
  });
  return JSON.stringify(list.items.map((c) => [c.metadata.name, c.data?.value]).sort());
}

/** What a scenario's `meanwhile` step can look at. */
interface Meanwhile {
  admin: KubeClient;
  /** The cache when the fault began, and as it is now. */
  atFault: string;
  cache: () => string;
  /** The last resourceVersion the informer saw before the fault. */
  resourceVersion: string;
}

/** Resolves once a watch from `resourceVersion` is refused with 410 Gone. */
async function untilCompacted(admin: KubeClient, resourceVersion: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const attempt = new AbortController();
    const timer = setTimeout(() => attempt.abort(), 500);
    try {
      await admin.watch(
        resources.ConfigMap,
        { namespace: 'default', resourceVersion, signal: attempt.signal },
        () => {},
      );
    } catch (err) {
      if (isGone(err)) return;
    } finally {
      clearTimeout(timer);
    }
    assert.ok(Date.now() < deadline, `resourceVersion ${resourceVersion} was never compacted`);
    await sleep(250);
  }
}

/**
 * Runs one fault scenario: an informer through a relay, three objects, a fault applied,
 * changes made while it lasts (one added, one changed, one deleted), then the fault healed.
 */
async function scenario(
  plane: ControlPlane,
  steps: {
    fault: (proxy: FaultProxy) => void;
    /** Runs after the changes, before the fault is healed. */
    meanwhile?: (seen: Meanwhile) => Promise<void>;
    stallMs?: number;
  },
) {
  const admin = clientFor(plane);
  const proxy = await FaultProxy.start(plane.server);
  const client = clientThrough(plane, proxy);
  const prefix = `cm-${Math.random().toString(36).slice(2, 7)}`;
  const labelled = (name: string, value: string) => {
    const object = configMap(`${prefix}-${name}`, value);
    object.metadata.labels = { test: 'informer' };
    return object;
  };
  const informer = new Informer<ConfigMap>({
    client,
    resource: resources.ConfigMap,
    log: testLogger('informer'),
    namespace: 'default',
    labelSelector: 'test=informer',
    ...(steps.stallMs ? { stallMs: steps.stallMs } : {}),
  });
  try {
    for (const name of ['a', 'b', 'c'])
      await admin.create(resources.ConfigMap, labelled(name, '1'));
    informer.start();
    await informer.synced;
    await eventually('the three objects in the cache', () =>
      informer.list().filter((c) => c.metadata.name.startsWith(prefix)).length === 3
        ? true
        : undefined,
    );
    // A change seen in the cache proves the watch is open before the fault hits it.
    const warm = await admin.update(resources.ConfigMap, { ...labelled('c', '0') });
    await eventually('a change through the watch', () =>
      informer.get(`default/${prefix}-c`)?.data?.value === '0' ? true : undefined,
    );
    const listsBefore = client.lists;
    const connectionsBefore = proxy.connections;

    steps.fault(proxy);
    const atFault = cacheOf(informer);
    await admin.create(resources.ConfigMap, labelled('d', '1'));
    await admin.update(resources.ConfigMap, labelled('a', '2'));
    await admin.delete(resources.ConfigMap, `${prefix}-b`, 'default');
    await steps.meanwhile?.({
      admin,
      atFault,
      cache: () => cacheOf(informer),
      resourceVersion: warm.metadata.resourceVersion!,
    });
    proxy.heal();

    const expected = await serverView(admin);
    await eventually(
      'the cache to match the server',
      () => (cacheOf(informer) === expected ? true : undefined),
      20_000,
    );
    return {
      relists: client.lists - listsBefore,
      newConnections: proxy.connections - connectionsBefore,
    };
  } finally {
    await informer.stop();
    client.close();
    await proxy.stop();
    const left = await admin.list<ConfigMap>(resources.ConfigMap, 'default', {
      labelSelector: 'test=informer',
    });
    for (const c of left.items) await admin.delete(resources.ConfigMap, c.metadata.name, 'default');
    admin.close();
  }
}

describe('informer against faults on the way to the API server', () => {
  let plane: ControlPlane;
  before(async () => {
    plane = await ControlPlane.start({ onProgress: (line) => console.error(line) });
  });
  after(async () => {
    await plane?.stop();
  });

  it('resumes from its resourceVersion after the connection drops, missing nothing', async () => {
    const { relists, newConnections } = await scenario(plane, {
      fault: (proxy) => proxy.cut(),
      meanwhile: () => sleep(1_000),
    });
    assert.equal(relists, 0, 'the watch resumed from its resourceVersion, without a relist');
    assert.ok(newConnections >= 1, 'a new connection was opened after the cut');
  });

  it('restarts a watch that has gone silent without closing', async () => {
    let seenWhileSilent = '';
    let atFault = '';
    const { relists, newConnections } = await scenario(plane, {
      fault: (proxy) => proxy.silence(),
      meanwhile: async (seen) => {
        atFault = seen.atFault;
        await sleep(500);
        seenWhileSilent = seen.cache();
      },
      // Long enough that the silent watch is still held while the changes are made.
      stallMs: 5_000,
    });
    assert.equal(seenWhileSilent, atFault, 'nothing reached the informer while it was silent');
    assert.equal(relists, 0, 'the restarted watch resumed, without a relist');
    assert.ok(newConnections >= 1, 'the silent connection was given up for a new one');
  });
});

describe('informer whose resourceVersion the server has compacted', () => {
  let plane: ControlPlane;
  before(async () => {
    // Without the watch cache, watches are served by etcd, whose history the API server
    // compacts every second here: a watch resumed from before the compaction gets 410 Gone.
    plane = await ControlPlane.start({
      onProgress: (line) => console.error(line),
      apiServerArgs: ['--watch-cache=false', '--etcd-compaction-interval=1s'],
    });
  });
  after(async () => {
    await plane?.stop();
  });

  it('relists on 410 Gone and ends with the server state', async () => {
    const { relists } = await scenario(plane, {
      fault: (proxy) => proxy.cut(),
      // Keep the relay closed until compaction has passed the informer's resourceVersion.
      meanwhile: (seen) => untilCompacted(seen.admin, seen.resourceVersion),
    });
    assert.equal(relists, 1, 'exactly one relist, after the watch was refused with 410');
  });
});
