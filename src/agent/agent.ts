/**
 * The node agent: registers the node, watches the VMs bound to it, and drives each through
 * its lifecycle. On start it re-adopts VMMs that survived a restart (same pid) and removes
 * what belongs to VMs that no longer exist.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { agentLeaseName } from '../api/agentlease.ts';
import type { KubeClient } from '../kube/client.ts';
import { Controller } from '../kube/controller.ts';
import { EventRecorder } from '../kube/events.ts';
import { keyOf } from '../kube/object.ts';
import type { Logger } from '../log.ts';
import { Heartbeat, type NodeCapacity } from './heartbeat.ts';
import type { RegistryMirror } from './image/sources.ts';
import type { ImageStore } from './image/store.ts';
import { AgentMetrics, type VMUsage } from './metrics.ts';
import { vmId } from './network/names.ts';
import type { KernelSource, VMNetworking } from './ports.ts';
import { StateStore } from './state.ts';
import { createInformers, type Informers } from './vm/informers.ts';
import { diskPath, runDir } from './vm/provision.ts';
import { VMReconciler } from './vm/reconciler.ts';
import type { ImpVM } from './vm/status.ts';
import type { Driver, MachineSpec } from './vmm/types.ts';

export interface AgentOptions {
  client: KubeClient;
  log: Logger;
  node: string;
  /** Namespace of the heartbeat Lease (the operator's). */
  namespace: string;
  stateDir: string;
  capacity: NodeCapacity;
  driver: Driver;
  /** Makes the image store for a set of registry mirrors (ClusterImpConfig). */
  imageStore: (mirrors: RegistryMirror[]) => ImageStore;
  networking: VMNetworking;
  kernel: KernelSource;
  netns?: string;
  /** Where this agent's HTTP server answers (host:port), published on its Lease. */
  endpoint?: string;
  workers?: number;
  stopTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  /** How often to look for leftovers of vanished VMs (default 60 s). */
  sweepIntervalMs?: number;
}

export class Agent {
  readonly metrics: AgentMetrics;
  readonly informers: Informers;
  readonly reconciler: VMReconciler;
  private readonly opts: AgentOptions;
  private readonly state: StateStore;
  private readonly controller: Controller;
  private readonly heartbeat: Heartbeat;
  private sweepTimer: NodeJS.Timeout | undefined;
  private store: { key: string; images: ImageStore } | undefined;
  private started = false;

  constructor(options: AgentOptions) {
    this.opts = options;
    const { client, log, node } = options;
    this.metrics = new AgentMetrics(node);
    this.state = new StateStore(options.stateDir);
    this.informers = createInformers(client, log, node);
    this.controller = new Controller({
      name: 'agent-vm',
      log: log.child({ controller: 'agent-vm', node }),
      metrics: this.metrics.controllers,
      reconcile: (key) => this.reconciler.reconcile(key),
      workers: options.workers ?? 4,
    });
    this.reconciler = new VMReconciler({
      client,
      log: log.child({ node }),
      node,
      informers: this.informers,
      state: this.state,
      driver: options.driver,
      images: (mirrors) => this.imagesFor(mirrors),
      networking: options.networking,
      kernel: options.kernel,
      events: new EventRecorder({ client, log, controller: 'imp.dev/agent', instance: node }),
      metrics: this.metrics,
      netns: options.netns,
      stopTimeoutMs: options.stopTimeoutMs,
      enqueue: (key) => this.controller.enqueue(key),
    });
    this.heartbeat = new Heartbeat({
      client,
      log,
      namespace: options.namespace,
      node,
      capacity: options.capacity,
      runningVMs: () => this.reconciler.running,
      endpoint: options.endpoint,
      intervalMs: options.heartbeatIntervalMs,
    });
    this.metrics.usage = () => this.usage();
  }

  get ready(): boolean {
    return this.started;
  }

  /** A VM bound to this node, from the cache. */
  vm(namespace: string, name: string): ImpVM | undefined {
    return this.informers.vms.get(`${namespace}/${name}`);
  }

  /** The serial console log of a VM's current (or last) VMM on this node. */
  consolePath(vm: ImpVM): string | undefined {
    const uid = vm.metadata.uid;
    if (!uid) return undefined;
    return (
      this.reconciler.machine(uid)?.consoleLogPath ??
      join(runDir(this.state.vmDir(uid)), 'console.log')
    );
  }

  async start(): Promise<void> {
    const { log, node } = this.opts;
    await this.state.init();
    for (const informer of Object.values(this.informers)) informer.start();
    await Promise.all(Object.values(this.informers).map((i) => i.synced));
    await this.adopt();
    await this.sweep();
    this.informers.vms.on({
      added: (vm) => this.controller.enqueue(keyOf(vm.metadata)),
      updated: (vm) => this.controller.enqueue(keyOf(vm.metadata)),
      deleted: (vm) =>
        void this.reconciler
          .teardown(vm.metadata.uid!)
          .catch((err) =>
            log.error({ err, vm: keyOf(vm.metadata) }, 'tearing down a deleted VM failed'),
          ),
    });
    for (const vm of this.informers.vms.list()) this.controller.enqueue(keyOf(vm.metadata));
    this.controller.start();
    await this.heartbeat.start();
    this.sweepTimer = setInterval(
      () => void this.sweep().catch((err) => log.warn({ err }, 'sweep failed')),
      this.opts.sweepIntervalMs ?? 60_000,
    );
    this.sweepTimer.unref();
    this.started = true;
    log.info({ node, lease: agentLeaseName(node) }, 'agent started');
  }

  /**
   * Stops watching and heart-beating. VMMs keep running (a restarted agent adopts them);
   * pass `stopVMs` to shut them down too, as `imp local down` does.
   */
  async stop(options: { stopVMs?: boolean } = {}): Promise<void> {
    clearInterval(this.sweepTimer);
    await this.controller.stop();
    await this.heartbeat.stop(options.stopVMs);
    if (options.stopVMs) {
      for (const record of await this.state.list()) await this.reconciler.teardown(record.uid);
    } else {
      this.reconciler.detachAll();
    }
    await Promise.all(Object.values(this.informers).map((i) => i.stop()));
    this.started = false;
  }

  /** One store at a time owns the cache; it is replaced when the mirror settings change. */
  private imagesFor(mirrors: RegistryMirror[]): ImageStore {
    const key = JSON.stringify(mirrors);
    if (this.store?.key !== key) this.store = { key, images: this.opts.imageStore(mirrors) };
    return this.store.images;
  }

  /** Re-attaches to VMMs recorded in the state dir that are still running. */
  private async adopt(): Promise<void> {
    const { driver, log } = this.opts;
    for (const record of await this.state.list()) {
      if (!record.pid || !record.machine) continue;
      try {
        const machine = await driver.adopt(record.machine as MachineSpec, record.pid);
        const vm = { metadata: { name: record.name, namespace: record.namespace } };
        await this.reconciler.track(vm, record, machine, false);
        log.info({ vm: `${record.namespace}/${record.name}`, pid: record.pid }, 'adopted VMM');
      } catch (err) {
        log.warn(
          { err, vm: `${record.namespace}/${record.name}`, pid: record.pid },
          'could not adopt the VMM; treating it as exited',
        );
      }
    }
  }

  /** Removes VMs (and network leftovers) whose objects are gone or moved elsewhere. */
  private async sweep(): Promise<void> {
    // The records first: one written meanwhile belongs to a VM the cache already holds.
    const records = await this.state.list();
    const present = new Set(this.informers.vms.list().map((vm) => vm.metadata.uid!));
    for (const record of records) {
      if (present.has(record.uid)) continue;
      this.opts.log.info({ vm: `${record.namespace}/${record.name}` }, 'cleaning up a vanished VM');
      await this.reconciler.teardown(record.uid);
    }
    // What to keep is read once networking is serialised for the cleanup: a VM records its
    // network and TAP before building them, so one provisioned meanwhile is kept too.
    await this.opts.networking.cleanup(async () => {
      const keep = { networks: new Set<string>(), vms: new Set<string>() };
      for (const record of await this.state.list()) {
        if (record.networkId) keep.networks.add(record.networkId);
        if (record.tap) keep.vms.add(vmId(record.uid));
      }
      return keep;
    });
  }

  private async usage(): Promise<VMUsage[]> {
    const out: VMUsage[] = [];
    for (const vm of this.informers.vms.list()) {
      const uid = vm.metadata.uid!;
      const usage: VMUsage = {
        namespace: vm.metadata.namespace ?? '',
        name: vm.metadata.name,
        phase: vm.status?.phase ?? 'Pending',
      };
      const machine = this.reconciler.machine(uid);
      if (machine) Object.assign(usage, await machine.stats().catch(() => ({})));
      const disk = await stat(diskPath(this.state.vmDir(uid))).catch(() => undefined);
      if (disk) usage.diskBytes = disk.blocks * 512;
      out.push(usage);
    }
    return out;
  }
}
