/**
 * The operator process: informers on every replica (so a standby takes over warm),
 * controllers only on the leader, metrics and health on every replica.
 */

import type { KubeClient } from '../kube/client.ts';
import { Controller } from '../kube/controller.ts';
import { EventRecorder } from '../kube/events.ts';
import { Informer } from '../kube/informer.ts';
import { LeaderElector } from '../kube/leader.ts';
import { type KubeObject, keyOf } from '../kube/object.ts';
import { type Resource, resources } from '../kube/resources.ts';
import type { Logger } from '../log.ts';
import {
  type Clock,
  type ImpVM,
  type Informers,
  type LeaseObject,
  type OperatorContext,
  systemClock,
} from './context.ts';
import { Allocator } from './ipam/allocator.ts';
import { OperatorMetrics } from './metrics.ts';
import { NetworkController } from './network/controller.ts';
import { Placer } from './scheduler/placement.ts';
import { VMController } from './vm/controller.ts';

export interface OperatorOptions {
  client: KubeClient;
  log: Logger;
  /** Namespace of the leader Lease and the agents' Leases. */
  namespace: string;
  /** This replica's name in the leader Lease. */
  identity: string;
  clock?: Clock;
  workers?: number;
  lostNodeGraceMs?: number;
  ciliumCheckIntervalMs?: number;
  leaderElection?: { leaseDurationMs?: number; renewDeadlineMs?: number; retryPeriodMs?: number };
  metrics?: OperatorMetrics;
}

export class Operator {
  readonly metrics: OperatorMetrics;
  readonly informers: Informers;
  private readonly opts: OperatorOptions;
  private readonly ctx: OperatorContext;
  private readonly controllers: Controller[];
  private readonly elector: LeaderElector;
  private readonly vmController: VMController;
  private leading = false;

  constructor(options: OperatorOptions) {
    this.opts = options;
    const { client, log, namespace } = options;
    this.metrics = options.metrics ?? new OperatorMetrics();
    this.informers = createInformers(client, log, namespace);
    this.ctx = {
      client,
      log,
      namespace,
      clock: options.clock ?? systemClock,
      events: new EventRecorder({
        client,
        log,
        controller: 'imp.dev/operator',
        instance: options.identity,
      }),
      metrics: this.metrics,
      informers: this.informers,
      allocator: new Allocator(client),
      lostNodeGraceMs: options.lostNodeGraceMs ?? 300_000,
      ciliumCheckIntervalMs: options.ciliumCheckIntervalMs ?? 60_000,
    };
    const placer = new Placer(this.ctx);
    this.vmController = new VMController(this.ctx, placer);
    const networkController = new NetworkController(this.ctx);
    const make = (
      name: string,
      reconcile: (key: string) => Promise<undefined | { requeueAfterMs: number }>,
    ) =>
      new Controller({
        name,
        log: log.child({ controller: name }),
        metrics: this.metrics.controllers,
        reconcile,
        workers: options.workers ?? 8,
      });
    const vms = make('vm', this.vmController.reconcile);
    const networks = make('network', networkController.reconcile);
    this.controllers = [vms, networks];
    this.wireEvents(vms, networks);
    this.metrics.countPhases = () => this.countPhases();
    this.metrics.freeAddresses = () =>
      this.informers.networks.list().map((n) => ({
        namespace: n.metadata.namespace ?? '',
        network: n.metadata.name,
        free: n.status?.free ?? 0,
      }));
    this.elector = new LeaderElector({
      client,
      log: log.child({ component: 'leader-election' }),
      namespace,
      name: 'imp-operator',
      identity: options.identity,
      ...options.leaderElection,
      onStartedLeading: () => this.startLeading(),
      onStoppedLeading: () => this.stopLeading(),
    });
  }

  get isLeader(): boolean {
    return this.leading;
  }

  async start(): Promise<void> {
    for (const informer of Object.values(this.informers)) informer.start();
    await Promise.all(Object.values(this.informers).map((i) => i.synced));
    this.opts.log.info({ identity: this.opts.identity }, 'caches synced, campaigning for leader');
    this.elector.start();
  }

  async stop(): Promise<void> {
    // Stop acting before handing the lease over, so two replicas never act at once.
    this.leading = false;
    await Promise.all(this.controllers.map((c) => c.stop()));
    await this.elector.release();
    await Promise.all(Object.values(this.informers).map((i) => i.stop()));
  }

  private startLeading(): void {
    this.leading = true;
    this.metrics.leader.set(1);
    for (const c of this.controllers) c.start();
    // Everything is looked at once on taking over; events keep it current afterwards.
    for (const vm of this.informers.vms.list()) this.controllers[0]!.enqueue(keyOf(vm.metadata));
    for (const net of this.informers.networks.list()) {
      this.controllers[1]!.enqueue(keyOf(net.metadata));
    }
  }

  private stopLeading(): void {
    this.metrics.leader.set(0);
    if (!this.leading) return;
    this.leading = false;
    // A replica that lost the lease must not act on stale beliefs; it stops reconciling.
    for (const c of this.controllers) void c.stop();
  }

  private wireEvents(vms: Controller, networks: Controller): void {
    const enqueue = (c: Controller, o: KubeObject) => {
      if (this.leading) c.enqueue(keyOf(o.metadata));
    };
    const vmChanged = (vm: ImpVM) => {
      this.vmController.seen(keyOf(vm.metadata), vm);
      enqueue(vms, vm);
    };
    this.informers.vms.on({
      added: vmChanged,
      updated: vmChanged,
      deleted: (vm) => {
        this.vmController.seen(keyOf(vm.metadata), undefined);
        enqueue(vms, vm);
        const network = vm.status?.network;
        if (network && this.leading) networks.enqueue(`${vm.metadata.namespace}/${network}`);
      },
    });
    this.informers.networks.on({
      added: (n) => {
        enqueue(networks, n);
        this.retryPending(vms);
      },
      updated: (n, old) => {
        if (n.metadata.generation !== old.metadata.generation || n.metadata.deletionTimestamp) {
          enqueue(networks, n);
        }
      },
      deleted: () => this.retryPending(vms),
    });
    // Capacity or references changed: pending VMs may now fit or resolve.
    const pending = { added: () => this.retryPending(vms), updated: () => this.retryPending(vms) };
    this.informers.nodes.on(pending);
    this.informers.profiles.on(pending);
    // A template or class that changes or goes affects VMs already bound, too: their
    // conditions and expiry. Templates are indexed; class changes are rare, so all VMs.
    const templateUsers = (t: KubeObject) => {
      this.retryPending(vms);
      for (const vm of this.informers.vms.byIndex('template', keyOf(t.metadata))) enqueue(vms, vm);
    };
    this.informers.templates.on({
      added: templateUsers,
      updated: templateUsers,
      deleted: templateUsers,
    });
    const everyVM = () => {
      for (const vm of this.informers.vms.list()) enqueue(vms, vm);
    };
    this.informers.classes.on({ added: everyVM, updated: everyVM, deleted: everyVM });
    this.informers.configs.on(pending);
    this.informers.agentLeases.on({
      added: () => this.retryPending(vms),
      updated: (lease, old) => {
        // Renewals arrive every few seconds; only a change of holder matters here.
        if (lease.spec?.holderIdentity !== old.spec?.holderIdentity) {
          this.retryPending(vms);
        }
      },
    });
  }

  private retryPending(vms: Controller): void {
    if (!this.leading) return;
    for (const vm of this.informers.vms.byIndex('node', '')) vms.enqueue(keyOf(vm.metadata));
  }

  private countPhases(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const vm of this.informers.vms.list()) {
      const phase = vm.status?.phase ?? 'Pending';
      counts.set(phase, (counts.get(phase) ?? 0) + 1);
    }
    return counts;
  }
}

function createInformers(client: KubeClient, log: Logger, namespace: string): Informers {
  const make = <T extends KubeObject>(
    resource: Resource,
    extra: Partial<ConstructorParameters<typeof Informer<T>>[0]> = {},
  ) =>
    new Informer<T>({
      client,
      resource,
      log: log.child({ informer: resource.kind }),
      ...extra,
    });
  return {
    vms: make<ImpVM>(resources.ImpVM, {
      indexes: {
        node: (vm) => [vm.status?.nodeName ?? ''],
        network: (vm) => {
          const ns = vm.metadata.namespace;
          const names = new Set([vm.spec?.networkRef?.name, vm.status?.network]);
          return [...names].filter(Boolean).map((n) => `${ns}/${n}`);
        },
        namespace: (vm) => [vm.metadata.namespace ?? ''],
        template: (vm) =>
          vm.spec?.templateRef ? [`${vm.metadata.namespace}/${vm.spec.templateRef.name}`] : [],
      },
    }),
    networks: make(resources.ImpNetwork),
    classes: make(resources.ImpVMClass),
    templates: make(resources.ImpVMTemplate),
    configs: make(resources.ClusterImpConfig),
    profiles: make(resources.ClusterImpNodeProfile),
    nodes: make(resources.Node),
    agentLeases: make<LeaseObject>(resources.Lease, {
      namespace,
      labelSelector: 'imp.dev/agent=true',
    }),
    warmPools: make(resources.ImpWarmPool),
    runnerPools: make(resources.ImpVMRunnerPool),
  };
}
