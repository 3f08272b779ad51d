/**
 * Hands out VM addresses from an ImpNetwork. Allocations live in the network's
 * `status.allocations` (address → holder), written with optimistic concurrency, so an
 * operator restart or a second writer can never give one address to two VMs. Allocation is
 * idempotent per holder: asking again returns the address already held, which makes a crash
 * between allocating and recording the address on the VM harmless.
 */
import type { ImpNetworkSpec, ImpNetworkStatus } from '../../api/network.ts';
import type { KubeClient } from '../../kube/client.ts';
import type { KubeObject } from '../../kube/object.ts';
import { resources } from '../../kube/resources.ts';
import { updateWithRetry } from '../../kube/update.ts';
import { firstFree, intToIp, parseSubnet, usableCount } from './subnet.ts';

export type ImpNetwork = KubeObject<ImpNetworkSpec, ImpNetworkStatus>;

/** The VM an allocation belongs to: `name/uid`, so a recreated VM is a new holder. */
export const holderOf = (vm: { metadata: { name: string; uid?: string } }) =>
  `${vm.metadata.name}/${vm.metadata.uid ?? ''}`;

export class SubnetFullError extends Error {
  constructor(network: string, total: number) {
    super(`network ${network} has no free address (all ${total} are allocated)`);
    this.name = 'SubnetFullError';
  }
}

/** Recomputes the counters that summarise allocations. */
export function summarise(network: ImpNetwork, status: ImpNetworkStatus): ImpNetworkStatus {
  const subnet = parseSubnet(network.spec!.subnet, network.spec!.gateway);
  const total = usableCount(subnet);
  const allocated = Object.keys(status.allocations ?? {}).length;
  return { ...status, gateway: intToIp(subnet.gateway), total, allocated, free: total - allocated };
}

export class Allocator {
  private readonly client: KubeClient;
  /** One chain per network, so this process never races itself on a network's status. */
  private readonly chains = new Map<string, Promise<unknown>>();

  constructor(client: KubeClient) {
    this.client = client;
  }

  private serial<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(key) ?? Promise.resolve();
    const next = previous.then(task, task);
    const settled = next.catch(() => {});
    this.chains.set(key, settled);
    void settled.then(() => {
      if (this.chains.get(key) === settled) this.chains.delete(key);
    });
    return next;
  }

  /** Returns the address `holder` holds on the network, allocating one if needed. */
  allocate(namespace: string, networkName: string, holder: string): Promise<string> {
    return this.serial(`${namespace}/${networkName}`, async () => {
      let address: string | undefined;
      await updateWithRetry<ImpNetwork>(
        this.client,
        resources.ImpNetwork,
        networkName,
        namespace,
        (network) => {
          const status = network.status ?? {};
          const allocations = { ...status.allocations };
          address = Object.keys(allocations).find((ip) => allocations[ip] === holder);
          if (address) return false;
          const subnet = parseSubnet(network.spec!.subnet, network.spec!.gateway);
          address = firstFree(subnet, new Set(Object.keys(allocations)));
          if (!address) throw new SubnetFullError(networkName, usableCount(subnet));
          allocations[address] = holder;
          network.status = summarise(network, { ...status, allocations });
          return true;
        },
        { subresource: 'status' },
      );
      return address!;
    });
  }

  /** Frees whatever `isStale` says about: one holder, or holders that no longer exist. */
  release(
    namespace: string,
    networkName: string,
    isStale: (holder: string) => boolean,
  ): Promise<number> {
    return this.serial(`${namespace}/${networkName}`, async () => {
      let freed = 0;
      await updateWithRetry<ImpNetwork>(
        this.client,
        resources.ImpNetwork,
        networkName,
        namespace,
        (network) => {
          const status = network.status ?? {};
          const allocations = { ...status.allocations };
          freed = 0;
          for (const [ip, holder] of Object.entries(allocations)) {
            if (isStale(holder)) {
              delete allocations[ip];
              freed++;
            }
          }
          if (freed === 0) return false;
          network.status = summarise(network, { ...status, allocations });
          return true;
        },
        { subresource: 'status' },
      );
      return freed;
    });
  }
}
