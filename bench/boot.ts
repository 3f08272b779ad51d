/**
 * Boot benchmark on this host: VMs created one after another through the real stack (local
 * mode: control plane, operator, agent, QEMU), each timed from create to the guest
 * reporting ready. Prints p50/p90 boot time, the agent's memory growth per running VM
 * (operator and agent share this process in local mode) and the VMM's resident memory.
 *
 *   node bench/boot.ts [--vms 20]
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ImpVMSpec, ImpVMStatus } from '../src/api/vm.ts';
import type { KubeObject } from '../src/kube/object.ts';
import { resources } from '../src/kube/resources.ts';
import { LocalStack } from '../src/local/stack.ts';

const { values } = parseArgs({ options: { vms: { type: 'string', default: '20' } } });
const count = Number(values.vms);
const say = (line: string) => console.log(`[bench] ${line}`);
type VM = KubeObject<ImpVMSpec, ImpVMStatus>;

const rssKiB = async (pid: number | string) =>
  Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

const root = await mkdtemp(join(tmpdir(), 'imp-bench-'));
const stack = await LocalStack.start({ root, progress: (l) => say(l), netns: 'imp-bench' });
// VMMs outlive an agent by design; an interrupted benchmark must still stop its VMs.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, async () => {
    say(`${signal}: stopping the VMs and the stack`);
    await stack.stop();
    await rm(root, { recursive: true, force: true });
    process.exit(130);
  });
}
try {
  // This host has few cores and every VM takes one vCPU: overcommit CPU so all the VMs fit
  // at once, as a node profile would for mostly idle sandboxes.
  await stack.client.create(resources.ClusterImpNodeProfile, {
    apiVersion: 'imp.dev/v1alpha1',
    kind: 'ClusterImpNodeProfile',
    metadata: { name: 'bench' },
    spec: { overcommit: { cpuPercent: 1600 } },
  });
  await stack.client.create(resources.ImpNetwork, {
    apiVersion: 'imp.dev/v1alpha1',
    kind: 'ImpNetwork',
    metadata: { name: 'bench-net', namespace: 'default' },
    spec: { subnet: '10.77.0.0/24' },
  });
  // One warm-up VM so the kernel, initramfs, image and base disk caches are filled.
  const boot = async (name: string): Promise<{ ms: number; vm: VM }> => {
    const start = performance.now();
    await stack.client.create(resources.ImpVM, {
      apiVersion: 'imp.dev/v1alpha1',
      kind: 'ImpVM',
      metadata: { name, namespace: 'default' },
      spec: {
        image: 'docker.io/library/nginx:1.27-alpine',
        networkRef: { name: 'bench-net' },
        resources: { memory: '256Mi' },
      },
    });
    for (;;) {
      const vm = await stack.client.get<VM>(resources.ImpVM, name, 'default');
      const ready = vm.status?.conditions?.find((c) => c.type === 'GuestReady');
      if (ready?.status === 'True') return { ms: performance.now() - start, vm };
      if (vm.status?.phase === 'Failed') throw new Error(`${name} failed`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await boot('bench-warmup');
  await stack.client.delete(resources.ImpVM, 'bench-warmup', 'default');
  global.gc?.();
  const baseline = await rssKiB('self');
  const times: number[] = [];
  const vmmPids: number[] = [];
  for (let i = 0; i < count; i++) {
    const { ms, vm } = await boot(`bench-${i}`);
    times.push(ms);
    if (vm.status?.vmmPid) vmmPids.push(vm.status.vmmPid);
    say(`bench-${i}: ready in ${(ms / 1000).toFixed(2)} s`);
  }
  const withVMs = await rssKiB('self');
  const vmmRss = await Promise.all(vmmPids.map((p) => rssKiB(p).catch(() => 0)));
  times.sort((a, b) => a - b);
  const pct = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!;
  say(`hypervisor: ${stack.hypervisor.type} (${stack.hypervisor.accel})`);
  say(`boot (create → guest ready), ${count} VMs one at a time:`);
  say(`  p50 ${(pct(0.5) / 1000).toFixed(2)} s, p90 ${(pct(0.9) / 1000).toFixed(2)} s`);
  say(
    `agent+operator process RSS: ${(baseline / 1024).toFixed(1)} MiB idle, ` +
      `${(withVMs / 1024).toFixed(1)} MiB with ${count} VMs ` +
      `(${((withVMs - baseline) / count).toFixed(0)} KiB per running VM)`,
  );
  const avgVmm = vmmRss.reduce((a, b) => a + b, 0) / Math.max(1, vmmRss.length);
  say(`VMM (QEMU) RSS per VM: ${(avgVmm / 1024).toFixed(1)} MiB on average`);
} finally {
  await stack.stop();
  await rm(root, { recursive: true, force: true });
}
