/**
 * End to end on this host: real control plane, operator, registry mirror and agent, with a
 * real Linux guest booted by QEMU inside a network namespace this test creates. The seed's
 * quick-start VM must serve its page on port 80, survive an agent restart with the same
 * VMM, be restarted after a VMM crash, and leave nothing behind when deleted.
 */
import assert from 'node:assert/strict';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runTool } from '../../src/agent/image/run.ts';
import { vmTapName } from '../../src/agent/network/names.ts';
import type { ImpVMSpec, ImpVMStatus } from '../../src/api/vm.ts';
import { startForward } from '../../src/cli/forward.ts';
import { isNotFound } from '../../src/kube/client.ts';
import type { KubeObject } from '../../src/kube/object.ts';
import { resources } from '../../src/kube/resources.ts';
import { nginxStandInMarker } from '../../src/local/images.ts';
import { LocalStack } from '../../src/local/stack.ts';
import { repoRoot } from '../support/cluster.ts';
import { eventually, testLogger } from '../support/operator.ts';

type VM = KubeObject<ImpVMSpec, ImpVMStatus>;

let stack: LocalStack;
let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'imp-e2e-'));
  stack = await LocalStack.start({
    root,
    progress: (line) => console.error(`# ${line}`),
    netns: `imp-e2e-${process.pid}`,
  });
});

after(async () => {
  await stack?.stop();
  await rm(root, { recursive: true, force: true });
});

const getVM = () => stack.client.get<VM>(resources.ImpVM, 'quick-vm', 'default');
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const links = async () =>
  (
    await runTool('ip', ['-n', stack.netns, '-o', 'link', 'show'], { timeoutMs: 10_000 })
  ).stdout.toString();

describe('the quick-start on a real guest', () => {
  let pid: number;

  it('reaches Running with an address and serves its page on port 80', async () => {
    await stack.applyFile(join(repoRoot, 'examples', 'quickstart.yaml'));
    const vm = await eventually(
      'quick-vm Running',
      async () => {
        const v = await getVM();
        return v.status?.phase === 'Running' ? v : undefined;
      },
      600_000,
    );
    assert.equal(vm.status?.ip, '192.168.100.2');
    assert.ok(vm.status?.runningAt, 'runningAt recorded');
    assert.ok((vm.status?.bootDurationSeconds ?? 0) > 0);
    assert.equal(vm.status?.hypervisor, 'qemu');
    pid = vm.status!.vmmPid!;
    assert.ok(alive(pid), 'the VMM process runs');

    // Straight to the guest address from inside the namespace. The guest reports ready just
    // before it starts the workload, so the server may need a moment to listen.
    const wget = ['netns', 'exec', stack.netns, 'timeout', '10', 'busybox', 'wget', '-qO-'];
    const direct = await eventually('the page from inside the namespace', async () => {
      const result = await runTool('ip', [...wget, 'http://192.168.100.2/'], {
        timeoutMs: 20_000,
      });
      return result.stdout.toString();
    });
    assert.match(direct, new RegExp(nginxStandInMarker));
    // ...and through a loopback port-forward, as a user would.
    const forward = await startForward({
      localPort: 0,
      endpoint: stack.agentEndpoint,
      namespace: 'default',
      vm: 'quick-vm',
      remotePort: 80,
      log: testLogger('forward'),
    });
    try {
      const page = await (await fetch(`http://127.0.0.1:${forward.port}/`)).text();
      assert.match(page, new RegExp(nginxStandInMarker));
    } finally {
      forward.server.close();
    }
  });

  it('streams the serial console and reports VM metrics from the agent', async () => {
    const consoleText = await (
      await fetch(`http://${stack.agentEndpoint}/console/default/quick-vm`)
    ).text();
    assert.match(consoleText, /^IMP_READY ip=192\.168\.100\.2\/24/m);
    const metrics = await stack.agent.metrics.registry.metrics();
    assert.match(metrics, /^imp_node_vms\{phase="Running",node="[^"]+"\} 1$/m);
    assert.match(metrics, /^imp_vm_boot_duration_seconds_count\{node="[^"]+"\} [1-9]/m);
    const cpu =
      /^imp_vm_cpu_seconds_total\{namespace="default",vm="quick-vm",node="[^"]+"\} (\S+)$/m;
    const vmLines = metrics.split('\n').filter((l) => l.includes('vm="quick-vm"'));
    assert.ok(Number(cpu.exec(metrics)?.[1]) > 0, `the VM used CPU time:\n${vmLines.join('\n')}`);
    const rss =
      /^imp_vm_memory_rss_bytes\{namespace="default",vm="quick-vm",node="[^"]+"\} (\S+)$/m;
    assert.ok(Number(rss.exec(metrics)?.[1]) > 1 << 20, 'the VMM holds memory');
    const disk =
      /^imp_vm_disk_allocated_bytes\{namespace="default",vm="quick-vm",node="[^"]+"\} (\S+)$/m;
    assert.ok(Number(disk.exec(metrics)?.[1]) > 0, 'the root disk takes space');
  });

  it('keeps the VM running with the same VMM pid across an agent restart', async () => {
    const runningAt = (await getVM()).status?.runningAt;
    await stack.restartAgent();
    const vm = await eventually('agent re-adopted the VM', async () => {
      const v = await getVM();
      const ready = v.status?.conditions?.find((c) => c.type === 'GuestReady');
      return stack.agent.reconciler.machine(v.metadata.uid!) && ready?.status === 'True'
        ? v
        : undefined;
    });
    assert.equal(vm.status?.vmmPid, pid, 'same VMM process');
    assert.equal(vm.status?.phase, 'Running');
    assert.equal(vm.status?.runningAt, runningAt, 'runningAt is never moved');
    assert.ok(alive(pid));
  });

  it('reports a killed VMM within 5 s and restarts it by policy', async () => {
    const crashes = async () => {
      const events = await stack.client.list<
        KubeObject & { reason?: string; series?: { count?: number } }
      >(resources.Event, 'default', { fieldSelector: 'regarding.name=quick-vm' });
      return events.items
        .filter((e) => e.reason === 'VMMExited')
        .reduce((n, e) => n + (e.series?.count ?? 1), 0);
    };
    const before = await crashes();
    const restartsBefore = (await getVM()).status?.restartCount ?? 0;
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    const reported = await eventually(
      'the crash reported',
      async () => ((await crashes()) > before ? Date.now() : undefined),
      5_000,
    );
    assert.ok(reported - killedAt <= 5_000);
    const restarted = await eventually(
      'a new VMM running',
      async () => {
        const v = await getVM();
        // The phase is the operator's summary and may lag the agent's conditions for a
        // moment, so the new VMM's guest must itself have reported ready.
        const ready = v.status?.conditions?.find((c) => c.type === 'GuestReady');
        const fresh = v.status?.vmmPid !== undefined && v.status.vmmPid !== pid;
        return v.status?.phase === 'Running' && fresh && ready?.status === 'True' ? v : undefined;
      },
      120_000,
    );
    assert.equal(restarted.status?.restartCount, restartsBefore + 1);
    pid = restarted.status!.vmmPid!;
  });

  it('leaves no process, TAP, disk or address behind when deleted', async () => {
    const vm = await getVM();
    const uid = vm.metadata.uid!;
    const tap = vmTapName(uid);
    assert.match(await links(), new RegExp(tap), 'the TAP exists before deletion');
    const vmDir = join(root, '.imp', 'state', 'vms', uid);
    await access(vmDir);

    await stack.client.delete(resources.ImpVM, 'quick-vm', 'default');
    await eventually(
      'quick-vm gone',
      async () => {
        try {
          await getVM();
          return undefined;
        } catch (err) {
          return isNotFound(err) ? true : undefined;
        }
      },
      60_000,
    );
    await sleep(200);
    assert.equal(alive(pid), false, 'the VMM process is gone');
    assert.doesNotMatch(await links(), new RegExp(tap), 'the TAP is gone');
    await assert.rejects(access(vmDir), 'the disk and state dir are gone');
    const net = await stack.client.get<KubeObject<unknown, { allocated?: number }>>(
      resources.ImpNetwork,
      'quick-net',
      'default',
    );
    assert.equal(net.status?.allocated, 0, 'the address is released');
  });
});
