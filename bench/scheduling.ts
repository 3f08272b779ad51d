/**
 * Scheduling benchmark: 1,000 VMs created against a real API server and an operator running
 * as its own process. Prints time until every VM is bound, p50/p99 of per-VM scheduling
 * latency (create acknowledged → binding observed through a watch), and the operator's peak
 * resident memory.
 *
 *   node bench/scheduling.ts [--vms 1000] [--nodes 4]
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { resources } from '../src/kube/resources.ts';
import { freePort } from '../src/local/ports.ts';
import type { ImpVM } from '../src/operator/context.ts';
import { startPlaneWithCrds } from '../test/support/cluster.ts';
import {
  clientFor,
  createNode,
  ensureNamespace,
  registerAgent,
  SYSTEM_NAMESPACE,
} from '../test/support/operator.ts';

const { values } = parseArgs({
  options: { vms: { type: 'string', default: '1000' }, nodes: { type: 'string', default: '4' } },
});
const count = Number(values.vms);
const nodeCount = Number(values.nodes);
const say = (line: string) => console.log(`[bench] ${line}`);

const plane = await startPlaneWithCrds();
const client = clientFor(plane);
await ensureNamespace(client, SYSTEM_NAMESPACE);
const heartbeats = [];
for (let i = 0; i < nodeCount; i++) {
  await createNode(client, `bench-node-${i}`);
  heartbeats.push(await registerAgent(client, `bench-node-${i}`));
}
await client.create(resources.ImpNetwork, {
  apiVersion: 'imp.dev/v1alpha1',
  kind: 'ImpNetwork',
  metadata: { name: 'bench-net', namespace: 'default' },
  spec: { subnet: '10.64.0.0/20' },
});

const metricsPort = await freePort();
const operator = spawn(
  process.execPath,
  [
    join(import.meta.dirname, '..', 'src', 'cli', 'main.ts'),
    'operator',
    '--kubeconfig',
    plane.kubeconfigPath,
    '--metrics-bind',
    `127.0.0.1:${metricsPort}`,
    '--webhook-cert-dir',
    '/nonexistent',
    '--log-level',
    'error',
  ],
  { stdio: ['ignore', 'inherit', 'inherit'] },
);
let peakKiB = 0;
const sampler = setInterval(async () => {
  const status = await readFile(`/proc/${operator.pid}/status`, 'utf8').catch(() => '');
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  peakKiB = Math.max(peakKiB, hwm);
}, 200);

// Wait for the operator to lead before starting the clock.
for (;;) {
  const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
    .then((r) => r.text())
    .catch(() => '');
  if (/^imp_operator_leader 1$/m.test(text)) break;
  await new Promise((r) => setTimeout(r, 200));
}
say(`operator pid ${operator.pid} leads; creating ${count} VMs on ${nodeCount} nodes`);

const created = new Map<string, number>();
const bound = new Map<string, number>();
const abort = new AbortController();
const watching = client
  .watch<ImpVM>(resources.ImpVM, { namespace: 'default', signal: abort.signal }, (event) => {
    const name = event.object.metadata.name;
    if (event.object.status?.nodeName && !bound.has(name)) bound.set(name, performance.now());
  })
  .catch(() => {});

const start = performance.now();
const names = Array.from({ length: count }, (_, i) => `bench-${i}`);
for (let i = 0; i < names.length; i += 50) {
  await Promise.all(
    names.slice(i, i + 50).map(async (name) => {
      await client.create(resources.ImpVM, {
        apiVersion: 'imp.dev/v1alpha1',
        kind: 'ImpVM',
        metadata: { name, namespace: 'default' },
        spec: { image: 'docker.io/library/nginx:1.27-alpine', networkRef: { name: 'bench-net' } },
      });
      created.set(name, performance.now());
    }),
  );
}
const createdAll = performance.now();
while (bound.size < count) await new Promise((r) => setTimeout(r, 50));
const allBound = performance.now();

const latencies = names.map((n) => bound.get(n)! - created.get(n)!).sort((a, b) => a - b);
const pct = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
say(`VMs: ${count}, nodes: ${nodeCount}`);
say(`creating all: ${((createdAll - start) / 1000).toFixed(2)} s`);
say(`time to all scheduled: ${((allBound - start) / 1000).toFixed(2)} s`);
say(`scheduling latency p50: ${pct(0.5).toFixed(0)} ms, p99: ${pct(0.99).toFixed(0)} ms`);
say(`operator peak RSS: ${(peakKiB / 1024).toFixed(1)} MiB`);

abort.abort();
await watching;
clearInterval(sampler);
operator.kill('SIGTERM');
await new Promise((r) => operator.once('exit', r));
for (const h of heartbeats) await h.stop();
client.close();
await plane.stop();
