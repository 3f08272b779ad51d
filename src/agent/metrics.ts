/** The agent's Prometheus metrics: VMs on this node, boot times, per-VM resource use. */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { ControllerMetrics } from '../kube/controller.ts';

export interface VMUsage {
  namespace: string;
  name: string;
  phase: string;
  cpuSeconds?: number;
  rssBytes?: number;
  memoryTotalBytes?: number;
  memoryAvailableBytes?: number;
  diskBytes?: number;
}

export class AgentMetrics {
  readonly registry = new Registry();
  readonly controllers: ControllerMetrics;
  readonly bootSeconds: Histogram;
  readonly exits: Counter<'kind'>;
  /** Collects per-VM figures at scrape time; set by the agent. */
  usage: (() => Promise<VMUsage[]>) | undefined;

  constructor(node: string) {
    this.registry.setDefaultLabels({ node });
    collectDefaultMetrics({ register: this.registry, prefix: 'imp_agent_' });
    this.controllers = new ControllerMetrics(this.registry);
    this.bootSeconds = new Histogram({
      name: 'imp_vm_boot_duration_seconds',
      help: 'From VMM start to the guest reporting ready.',
      buckets: [0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60],
      registers: [this.registry],
    });
    this.exits = new Counter({
      name: 'imp_vm_exits_total',
      help: 'VMM exits: workload exits and crashes.',
      labelNames: ['kind'],
      registers: [this.registry],
    });
    const vmGauge = (name: string, help: string) =>
      new Gauge({ name, help, labelNames: ['namespace', 'vm'], registers: [this.registry] });
    const cpu = vmGauge('imp_vm_cpu_seconds', 'CPU time used by the VM (its VMM process).');
    const rss = vmGauge('imp_vm_memory_rss_bytes', 'Host memory resident for the VM.');
    const memTotal = vmGauge(
      'imp_vm_guest_memory_total_bytes',
      'Guest memory, as the guest sees it.',
    );
    const memFree = vmGauge('imp_vm_guest_memory_available_bytes', 'Guest memory available.');
    const disk = vmGauge('imp_vm_disk_allocated_bytes', 'Host disk used by the VM root disk.');
    // One collector fills every per-VM gauge, so a scrape reads each VM once.
    const collect = async (): Promise<void> => {
      const list = (await this.usage?.()) ?? [];
      for (const g of [phases, cpu, rss, memTotal, memFree, disk]) g.reset();
      const byPhase = new Map<string, number>();
      for (const u of list) {
        byPhase.set(u.phase, (byPhase.get(u.phase) ?? 0) + 1);
        const labels = { namespace: u.namespace, vm: u.name };
        if (u.cpuSeconds !== undefined) cpu.set(labels, u.cpuSeconds);
        if (u.rssBytes !== undefined) rss.set(labels, u.rssBytes);
        if (u.memoryTotalBytes !== undefined) memTotal.set(labels, u.memoryTotalBytes);
        if (u.memoryAvailableBytes !== undefined) memFree.set(labels, u.memoryAvailableBytes);
        if (u.diskBytes !== undefined) disk.set(labels, u.diskBytes);
      }
      for (const [phase, count] of byPhase) phases.set({ phase }, count);
    };
    const phases: Gauge<'phase'> = new Gauge({
      name: 'imp_node_vms',
      help: 'VMs bound to this node by phase.',
      labelNames: ['phase'],
      registers: [this.registry],
      collect,
    });
  }
}
