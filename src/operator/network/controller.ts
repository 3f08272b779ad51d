/**
 * The ImpNetwork controller: keeps the allocation summary and conditions current, frees
 * addresses whose VMs are gone, decides between Cilium and the VXLAN overlay, and holds
 * deletion back while VMs still use the network.
 */

import { FIELD_MANAGER_OPERATOR } from '../../api/agentlease.ts';
import { setCondition } from '../../api/conditions.ts';
import type { ImpNetworkStatus } from '../../api/network.ts';
import { isNotFound } from '../../kube/client.ts';
import type { Result } from '../../kube/controller.ts';
import { addFinalizer, removeFinalizers } from '../../kube/finalizers.ts';
import { resources } from '../../kube/resources.ts';
import { updateWithRetry } from '../../kube/update.ts';
import type { ImpNetwork, OperatorContext } from '../context.ts';
import { holderOf, summarise } from '../ipam/allocator.ts';

export const FINALIZER_NETWORK = 'imp.dev/network-protection';

const CILIUM_CRD = 'ciliumendpoints.cilium.io';

export class NetworkController {
  private readonly ctx: OperatorContext;
  private ciliumCache: { present: boolean; at: number } | undefined;

  constructor(ctx: OperatorContext) {
    this.ctx = ctx;
  }

  reconcile = async (key: string): Promise<Result> => {
    const network = this.ctx.informers.networks.get(key);
    if (!network) return undefined;
    const users = this.usersOf(network);
    if (network.metadata.deletionTimestamp) return await this.finalize(network, users);
    const cilium = await this.overlay(network);
    const name = network.metadata.name;
    const namespace = network.metadata.namespace;
    // The finalizer goes on first, from the cached object (one request), so a network whose
    // status shows it in use is always protected.
    await addFinalizer(this.ctx.client, resources.ImpNetwork, network, FINALIZER_NETWORK);
    let changedOverlay = false;
    const fresh = await updateWithRetry<ImpNetwork>(
      this.ctx.client,
      resources.ImpNetwork,
      name,
      namespace,
      (net) => {
        const before = JSON.stringify(net.status ?? {});
        const status = this.nextStatus(net, cilium);
        changedOverlay = net.status?.overlay !== status.overlay;
        net.status = status;
        return JSON.stringify(status) !== before;
      },
      { subresource: 'status', statusManager: FIELD_MANAGER_OPERATOR },
    );
    if (changedOverlay) {
      const message =
        fresh.status?.overlay === 'cilium'
          ? 'Cilium detected: VMs join it as external workloads'
          : 'Cilium not in use: cross-node VM traffic uses the VXLAN overlay';
      await this.ctx.events.record(
        network,
        'Normal',
        fresh.status?.overlay === 'cilium' ? 'CiliumDetected' : 'OverlayFallback',
        message,
      );
    }
    if ((fresh.status?.free ?? 1) === 0) {
      await this.ctx.events.record(network, 'Warning', 'SubnetFull', 'every address is allocated');
    }
    // Cilium can be installed later; look again now and then.
    return { requeueAfterMs: Math.max(this.ctx.ciliumCheckIntervalMs, 1_000) * 2 };
  };

  /** VMs (in the cache) that name this network or hold an address on it. */
  private usersOf(network: ImpNetwork): Set<string> {
    const key = `${network.metadata.namespace}/${network.metadata.name}`;
    return new Set(this.ctx.informers.vms.byIndex('network', key).map((vm) => holderOf(vm)));
  }

  private nextStatus(
    net: ImpNetwork,
    cilium: { overlay: 'cilium' | 'vxlan'; detected: boolean },
  ): ImpNetworkStatus {
    const status: ImpNetworkStatus = { ...net.status };
    // Free addresses whose VM no longer exists (it vanished without its finalizer running,
    // e.g. its namespace was force-cleaned). The VM cache is complete once synced.
    const existing = new Set(
      this.ctx.informers.vms
        .byIndex('namespace', net.metadata.namespace ?? '')
        .map((vm) => holderOf(vm)),
    );
    const allocations = { ...status.allocations };
    for (const [ip, holder] of Object.entries(allocations)) {
      if (!existing.has(holder)) delete allocations[ip];
    }
    const summary = summarise(net, { ...status, allocations });
    const now = this.ctx.clock.now();
    const full = summary.free === 0;
    summary.conditions = setCondition(
      status.conditions,
      {
        type: 'Ready',
        status: full ? 'False' : 'True',
        reason: full ? 'SubnetFull' : 'Available',
        message: full
          ? `all ${summary.total} addresses are allocated`
          : `${summary.free} of ${summary.total} addresses free`,
        observedGeneration: net.metadata.generation,
      },
      now,
    );
    return {
      ...summary,
      overlay: cilium.overlay,
      ciliumDetected: cilium.detected,
      observedGeneration: net.metadata.generation,
    };
  }

  private async overlay(network: ImpNetwork) {
    const mode =
      network.spec?.cilium?.mode ??
      this.ctx.informers.configs.get('default')?.spec?.cilium?.detection ??
      'Auto';
    const detected = await this.ciliumPresent();
    const useCilium = mode === 'Enabled' || (mode === 'Auto' && detected);
    return { overlay: useCilium ? ('cilium' as const) : ('vxlan' as const), detected };
  }

  private async ciliumPresent(): Promise<boolean> {
    const now = Date.now();
    if (this.ciliumCache && now - this.ciliumCache.at < this.ctx.ciliumCheckIntervalMs) {
      return this.ciliumCache.present;
    }
    let present = false;
    try {
      await this.ctx.client.get(resources.CustomResourceDefinition, CILIUM_CRD);
      present = true;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    this.ciliumCache = { present, at: now };
    return present;
  }

  /** A network in use stays until its last VM is gone, so no VM loses its address. */
  private async finalize(network: ImpNetwork, users: Set<string>): Promise<Result> {
    if (users.size > 0) {
      await this.ctx.events.record(
        network,
        'Warning',
        'InUse',
        `deletion waits for ${users.size} VM(s) still attached to this network`,
      );
      return { requeueAfterMs: 10_000 };
    }
    await removeFinalizers(this.ctx.client, resources.ImpNetwork, network, [FINALIZER_NETWORK]);
    return undefined;
  }
}
