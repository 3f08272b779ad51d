/**
 * The ImpVM controller: resolves the effective spec, binds the VM to a node, gives it an
 * address, expires it, and summarises its phase. Deletion releases what the VM held.
 */

import {
  FIELD_MANAGER_OPERATOR,
  FINALIZER_AGENT,
  FINALIZER_OPERATOR,
} from '../../api/agentlease.ts';
import { type EffectiveSpec, expireAfterMs, resolveSpec } from '../../api/effective.ts';
import { isNotFound } from '../../kube/client.ts';
import type { Result } from '../../kube/controller.ts';
import { addFinalizer, removeFinalizers } from '../../kube/finalizers.ts';
import { keyOf } from '../../kube/object.ts';
import { resources } from '../../kube/resources.ts';
import { apiTime } from '../../kube/time.ts';
import type { ImpVM, ImpVMTemplate, OperatorContext } from '../context.ts';
import { AddressRefusedError, holderOf } from '../ipam/allocator.ts';
import { macFor } from '../ipam/subnet.ts';
import { FINALIZER_NETWORK } from '../network/controller.ts';
import type { Placer } from '../scheduler/placement.ts';
import {
  condition,
  type OperatorStatus,
  ownedStatus,
  sameStatus,
  summarisePhase,
} from './status.ts';

const RETRY_MS = 15_000;

interface Inputs {
  spec: EffectiveSpec;
  template: ImpVMTemplate | undefined;
  poolExpireAfter: string | number | undefined;
}

/** What keeps the spec from resolving; the template, when found, still gives expiry. */
type InputProblem = { reason: string; message: string; template?: ImpVMTemplate };

export class VMController {
  private readonly ctx: OperatorContext;
  private readonly placer: Placer;
  /** When the operator first saw each unscheduled VM, for the scheduling latency metric. */
  private readonly firstSeen = new Map<string, number>();

  constructor(ctx: OperatorContext, placer: Placer) {
    this.ctx = ctx;
    this.placer = placer;
  }

  /**
   * Notes a VM as the cache shows it: an unscheduled one starts its scheduling clock, a bound
   * or deleted one drops it, so the map holds only VMs waiting, on every replica.
   */
  seen(key: string, vm: ImpVM | undefined): void {
    if (!vm || vm.status?.nodeName) this.firstSeen.delete(key);
    else if (!this.firstSeen.has(key)) this.firstSeen.set(key, performance.now());
  }

  reconcile = async (key: string): Promise<Result> => {
    const vm = this.ctx.informers.vms.get(key);
    if (!vm) {
      this.placer.forget(key);
      this.seen(key, undefined);
      return undefined;
    }
    // Once the cache shows the binding, the node's usage counts the VM from there.
    if (vm.status?.nodeName) this.placer.forget(key);
    if (vm.metadata.deletionTimestamp) return await this.finalize(vm);
    // Before anything is held for the VM, make sure its deletion will release it.
    await addFinalizer(this.ctx.client, resources.ImpVM, vm, FINALIZER_OPERATOR);

    const now = this.ctx.clock.now();
    const status = ownedStatus(vm);
    const inputs = this.inputs(vm);
    let requeue: number | undefined;
    if ('reason' in inputs) {
      // Its own condition, so the summary below cannot hide it and the warning is not
      // repeated; a VM already running keeps its expiry, from what can still be read.
      condition(status, vm, 'SpecResolved', false, inputs.reason, inputs.message, now);
      await this.warnOnce(vm, inputs.reason, inputs.message);
      const partial = { template: inputs.template, poolExpireAfter: this.poolExpireAfter(vm) };
      requeue = minDelay(RETRY_MS, await this.expire(vm, partial, status, now));
      if (requeue === -1) return undefined; // expired and deleted
    } else {
      const resolved = 'template, class and cluster defaults resolved';
      condition(status, vm, 'SpecResolved', true, 'Resolved', resolved, now);
      requeue = minDelay(
        await this.schedule(vm, inputs.spec, status, now),
        await this.allocateAddress(vm, inputs.spec, status, now),
        await this.expire(vm, inputs, status, now),
      );
      if (requeue === -1) return undefined; // expired and deleted
    }
    this.summarise(vm, status, now);
    await this.writeStatus(vm, status);
    return requeue === undefined ? undefined : { requeueAfterMs: requeue };
  };

  /** Reads template, class, pool and cluster config; reports what is missing. */
  private inputs(vm: ImpVM): Inputs | InputProblem {
    const { informers } = this.ctx;
    const ns = vm.metadata.namespace;
    const templateName = vm.spec?.templateRef?.name;
    const template = templateName ? informers.templates.get(`${ns}/${templateName}`) : undefined;
    if (templateName && !template) {
      return {
        reason: 'TemplateNotFound',
        message: `ImpVMTemplate ${templateName} does not exist in namespace ${ns}`,
      };
    }
    const config = informers.configs.get('default')?.spec;
    const className =
      vm.spec?.classRef?.name ?? template?.spec?.classRef?.name ?? config?.defaults?.classRef?.name;
    const vmClass = className ? informers.classes.get(className) : undefined;
    if (className && !vmClass) {
      return {
        reason: 'ClassNotFound',
        message: `ImpVMClass ${className} does not exist`,
        template,
      };
    }
    let spec: EffectiveSpec;
    try {
      spec = resolveSpec({
        vm: vm.spec ?? {},
        template: template?.spec,
        vmClass: vmClass?.spec,
        config,
      });
    } catch (err) {
      return { reason: 'InvalidSpec', message: (err as Error).message, template };
    }
    if (!spec.image && !vm.spec?.restoreFrom) {
      const message = 'neither spec.image nor the template names an image';
      return { reason: 'NoImage', message, template };
    }
    return { spec, template, poolExpireAfter: this.poolExpireAfter(vm) };
  }

  private poolExpireAfter(vm: ImpVM): string | number | undefined {
    const owner = vm.metadata.ownerReferences?.find((o) => o.controller);
    const key = `${vm.metadata.namespace}/${owner?.name}`;
    if (owner?.kind === 'ImpWarmPool') {
      return this.ctx.informers.warmPools.get(key)?.spec?.expireAfter;
    }
    if (owner?.kind === 'ImpVMRunnerPool') {
      return this.ctx.informers.runnerPools.get(key)?.spec?.expireAfter;
    }
    return undefined;
  }

  /** Binds the VM to a node, or explains why none fits. */
  private async schedule(vm: ImpVM, spec: EffectiveSpec, status: OperatorStatus, now: Date) {
    if (status.nodeName) return undefined;
    const key = keyOf(vm.metadata);
    this.seen(key, vm);
    const policy = this.ctx.informers.configs.get('default')?.spec?.scheduling?.policy ?? 'Spread';
    const sizing = { vcpus: spec.vcpus, memoryMiB: spec.memoryMiB, diskMiB: spec.diskMiB };
    // The binding is written with the rest of this reconcile's status, address included,
    // in one request; the placer counts the VM against the node from this moment.
    const placement = await this.placer.place(vm, spec, policy, async (node) => {
      status.nodeName = node;
      status.resources = sizing;
      condition(status, vm, 'Scheduled', true, 'Scheduled', `bound to node ${node}`, now);
    });
    if (placement.message === undefined) {
      const started = this.firstSeen.get(key);
      if (started !== undefined) {
        this.ctx.metrics.schedulingSeconds.observe((performance.now() - started) / 1000);
        this.firstSeen.delete(key);
      }
      await this.ctx.events.record(vm, 'Normal', 'Scheduled', `bound to node ${placement.node}`);
      return undefined;
    }
    condition(status, vm, 'Scheduled', false, 'Unschedulable', placement.message, now);
    await this.ctx.events.record(vm, 'Warning', 'FailedScheduling', placement.message);
    return RETRY_MS;
  }

  /** Gives the VM an address on its network. */
  private async allocateAddress(vm: ImpVM, spec: EffectiveSpec, status: OperatorStatus, now: Date) {
    const network = spec.networkName;
    // Only bound VMs hold addresses, so a VM waiting for capacity keeps none from others.
    // An address once given stays with the VM: the agent has plumbed it, and a changed
    // template must not make the VM hold a second one.
    if (!network || !status.nodeName || status.ip) return undefined;
    const ns = vm.metadata.namespace!;
    const cached = this.ctx.informers.networks.get(`${ns}/${network}`);
    if (!cached) {
      const message = `ImpNetwork ${network} does not exist in namespace ${ns}`;
      condition(status, vm, 'AddressAllocated', false, 'NetworkNotFound', message, now);
      await this.warnOnce(vm, 'NetworkNotFound', message);
      return RETRY_MS;
    }
    // A network must be protected before it holds an address, even if its own controller
    // has not got to it yet, so deleting it cannot strand the VM.
    await addFinalizer(this.ctx.client, resources.ImpNetwork, cached, FINALIZER_NETWORK);
    try {
      const ip = await this.ctx.allocator.allocate(ns, network, holderOf(vm));
      Object.assign(status, { ip, mac: macFor(ip), network });
      condition(status, vm, 'AddressAllocated', true, 'Allocated', `${ip} from ${network}`, now);
      return undefined;
    } catch (err) {
      if (!(err instanceof AddressRefusedError)) throw err;
      condition(status, vm, 'AddressAllocated', false, err.reason, err.message, now);
      await this.ctx.events.record(vm, 'Warning', err.reason, err.message);
      return RETRY_MS;
    }
  }

  /** Deletes the VM once its expiry time has passed; -1 means it was deleted. */
  private async expire(
    vm: ImpVM,
    inputs: Pick<Inputs, 'template' | 'poolExpireAfter'>,
    status: OperatorStatus,
    now: Date,
  ) {
    const ms = expireAfterMs({
      vm: vm.spec ?? {},
      pool: inputs.poolExpireAfter,
      template: inputs.template?.spec,
    });
    const runningAt = vm.status?.runningAt;
    if (!ms || !runningAt) {
      status.expiresAt = undefined;
      return undefined;
    }
    const at = Date.parse(runningAt) + ms;
    status.expiresAt = apiTime(new Date(at));
    const remaining = at - now.getTime();
    if (remaining > 0) return Math.min(remaining, 60_000);
    await this.ctx.events.record(
      vm,
      'Normal',
      'Expired',
      `expired ${Math.round(ms / 1000)}s after it first ran at ${runningAt}; deleting`,
    );
    await this.ctx.client.delete(resources.ImpVM, vm.metadata.name, vm.metadata.namespace);
    return -1;
  }

  private summarise(vm: ImpVM, status: OperatorStatus, now: Date): void {
    status.phase = summarisePhase(vm, status);
    status.observedGeneration = vm.metadata.generation;
    const ready = status.phase === 'Running';
    const blocking = status.conditions.find((c) => c.type !== 'Ready' && c.status === 'False');
    if (ready) condition(status, vm, 'Ready', true, 'GuestReady', 'the guest is up', now);
    else if (blocking)
      condition(status, vm, 'Ready', false, blocking.reason, blocking.message, now);
    else if (status.phase !== 'Pending' || !status.conditions.some((c) => c.type === 'Ready')) {
      condition(status, vm, 'Ready', false, status.phase, `the VM is ${status.phase}`, now);
    }
  }

  private async writeStatus(vm: ImpVM, status: OperatorStatus): Promise<void> {
    if (sameStatus(status, ownedStatus(vm))) return;
    const body = Object.fromEntries(Object.entries(status).filter(([, v]) => v !== undefined));
    await this.ctx.client.apply<ImpVM>(
      resources.ImpVM,
      {
        metadata: { name: vm.metadata.name, namespace: vm.metadata.namespace },
        status: body,
      },
      FIELD_MANAGER_OPERATOR,
      'status',
    );
  }

  /** Records a warning the first time a condition turns False for this reason. */
  private async warnOnce(vm: ImpVM, reason: string, message: string) {
    const before = ownedStatus(vm).conditions.find((c) => c.reason === reason);
    if (!before) await this.ctx.events.record(vm, 'Warning', reason, message);
  }

  /** Releases what the VM holds, in order, then lets the API server delete it. */
  private async finalize(vm: ImpVM): Promise<Result> {
    const { ctx } = this;
    const finalizers = vm.metadata.finalizers ?? [];

    // The agent stops the VMM and frees node resources; wait for it unless its node is lost.
    if (finalizers.includes(FINALIZER_AGENT)) {
      await this.showStopping(vm);
      const wait = await this.waitForAgent(vm);
      if (wait !== undefined) return { requeueAfterMs: wait };
    }

    // Free the address.
    if (vm.status?.network) {
      try {
        const holder = holderOf(vm);
        await ctx.allocator.release(vm.metadata.namespace!, vm.status.network, (h) => h === holder);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }

    // Let the deletion finish.
    this.placer.forget(keyOf(vm.metadata));
    await removeFinalizers(this.ctx.client, resources.ImpVM, vm, [FINALIZER_OPERATOR]);
    return undefined;
  }

  /** Shows the VM as Stopping (and not Ready) while its agent shuts it down. */
  private async showStopping(vm: ImpVM): Promise<void> {
    if (vm.status?.phase === 'Stopping') return;
    const status = ownedStatus(vm);
    this.summarise(vm, status, this.ctx.clock.now());
    try {
      await this.writeStatus(vm, status);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /** Milliseconds to wait for the node's agent, or undefined once it may be bypassed. */
  private async waitForAgent(vm: ImpVM): Promise<number | undefined> {
    const node = vm.status?.nodeName;
    const lease = node
      ? this.ctx.informers.agentLeases.get(`${this.ctx.namespace}/imp-agent-${node}`)
      : undefined;
    if (node && this.placer.leaseAlive(lease)) return 5_000;
    // The grace runs from the agent's last sign of life: an agent silent for an hour before
    // the delete does not hold it up, one that fell silent just now gets the full grace.
    const renewed = lease?.spec?.renewTime;
    const since = Date.parse(renewed ?? vm.metadata.deletionTimestamp!);
    const waited = this.ctx.clock.now().getTime() - since;
    if (waited < this.ctx.lostNodeGraceMs) return this.ctx.lostNodeGraceMs - waited;
    await this.ctx.events.record(
      vm,
      'Warning',
      'AgentUnreachable',
      `no live agent on node ${node ?? '(none)'} for ${Math.round(waited / 1000)}s; ` +
        'completing deletion without it (anything left on the node is cleaned by its agent ' +
        'when it returns)',
    );
    await removeFinalizers(this.ctx.client, resources.ImpVM, vm, [FINALIZER_AGENT]);
    return undefined;
  }
}

/** The smallest defined delay, -1 (stop) winning over everything. */
function minDelay(...delays: (number | undefined)[]): number | undefined {
  if (delays.includes(-1)) return -1;
  const defined = delays.filter((d): d is number => d !== undefined);
  return defined.length ? Math.min(...defined) : undefined;
}
