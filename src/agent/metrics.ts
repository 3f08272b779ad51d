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
    // Gauges are collected concurrently at scrape time; they share one reading of the VMs,
    // taken at most once a second, so a scrape reads each VMM's /proc files once.
    let reading: { at: number; list: Promise<VMUsage[]> } | undefined;
    const snapshot = () => {
      if (!reading || Date.now() - reading.at > 1000) {
        reading = { at: Date.now(), list: this.usage?.() ?? Promise.resolve([]) };
      }
      return reading.list;
    };
    type PerVM = Gauge<'namespace' | 'vm'> | Counter<'namespace' | 'vm'>;
    /** Refills a per-VM metric from one reading of the VMs; a counter takes the total. */
    const refill = async (metric: PerVM, value: (u: VMUsage) => number | undefined) => {
      const list = await snapshot();
      metric.reset();
      for (const u of list) {
        const v = value(u);
        if (v === undefined) continue;
        const labels = { namespace: u.namespace, vm: u.name };
        if (metric instanceof Gauge) metric.set(labels, v);
        else metric.inc(labels, v);
      }
    };
    const vmGauge = (name: string, help: string, value: (u: VMUsage) => number | undefined) => {
      const gauge: Gauge<'namespace' | 'vm'> = new Gauge({
        name,
        help,
        labelNames: ['namespace', 'vm'],
        registers: [this.registry],
        collect: () => refill(gauge, value),
      });
      return gauge;
    };
    const phases: Gauge<'phase'> = new Gauge({
      name: 'imp_node_vms',
      help: 'VMs bound to this node by phase.',
      labelNames: ['phase'],
      registers: [this.registry],
      collect: async () => {
        const counts = new Map<string, number>();
        for (const u of await snapshot()) counts.set(u.phase, (counts.get(u.phase) ?? 0) + 1);
        phases.reset();
        for (const [phase, count] of counts) phases.set({ phase }, count);
      },
    });
    // CPU time only grows, so it is a counter; its value is read from /proc at scrape time.
    const cpu: Counter<'namespace' | 'vm'> = new Counter({
      name: 'imp_vm_cpu_seconds_total',
      help: 'CPU time used by the VM (its VMM process).',
      labelNames: ['namespace', 'vm'],
      registers: [this.registry],
      collect: () => refill(cpu, (u) => u.cpuSeconds),
    });
    vmGauge('imp_vm_memory_rss_bytes', 'Host memory resident for the VM.', (u) => u.rssBytes);
    vmGauge(
      'imp_vm_guest_memory_total_bytes',
      'Guest memory, as the guest sees it.',
      (u) => u.memoryTotalBytes,
    );
    vmGauge(
      'imp_vm_guest_memory_available_bytes',
      'Guest memory available.',
      (u) => u.memoryAvailableBytes,
    );
    vmGauge(
      'imp_vm_disk_allocated_bytes',
      'Host disk used by the VM root disk.',
      (u) => u.diskBytes,
    );
  }
}
