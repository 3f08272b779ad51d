/** The operator's Prometheus metrics (prefix imp_, base units, bounded labels). */
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { ControllerMetrics } from '../kube/controller.ts';

export class OperatorMetrics {
  readonly registry: Registry;
  readonly controllers: ControllerMetrics;
  readonly vmsByPhase: Gauge<'phase'>;
  readonly schedulingSeconds: Histogram;
  readonly leader: Gauge;
  readonly networkFree: Gauge<'namespace' | 'network'>;
  /** Fills imp_vms at scrape time; set by the operator once its caches exist. */
  countPhases: (() => Map<string, number>) | undefined;
  /** Fills imp_network_free_addresses at scrape time from the networks' status. */
  freeAddresses: (() => { namespace: string; network: string; free: number }[]) | undefined;

  constructor() {
    this.registry = new Registry();
    collectDefaultMetrics({ register: this.registry, prefix: 'imp_operator_' });
    this.controllers = new ControllerMetrics(this.registry);
    this.vmsByPhase = new Gauge({
      name: 'imp_vms',
      help: 'VMs by phase, as the operator sees them.',
      labelNames: ['phase'],
      registers: [this.registry],
      collect: () => {
        const counts = this.countPhases?.();
        if (!counts) return;
        this.vmsByPhase.reset();
        for (const [phase, count] of counts) this.vmsByPhase.set({ phase }, count);
      },
    });
    this.schedulingSeconds = new Histogram({
      name: 'imp_vm_scheduling_duration_seconds',
      help: 'From the operator first seeing a VM to binding it to a node.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [this.registry],
    });
    this.leader = new Gauge({
      name: 'imp_operator_leader',
      help: '1 while this replica holds the leader lease.',
      registers: [this.registry],
    });
    this.networkFree = new Gauge({
      name: 'imp_network_free_addresses',
      help: 'Unallocated addresses per ImpNetwork.',
      labelNames: ['namespace', 'network'],
      registers: [this.registry],
      collect: () => {
        const list = this.freeAddresses?.();
        if (!list) return;
        this.networkFree.reset();
        for (const { namespace, network, free } of list) {
          this.networkFree.set({ namespace, network }, free);
        }
      },
    });
  }
}
