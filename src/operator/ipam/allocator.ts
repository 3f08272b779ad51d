/**
 * Hands out VM addresses from an ImpNetwork. Allocations live in the network's
 * `status.allocations` (address → holder), written with optimistic concurrency, so an
 * operator restart or a second writer can never give one address to two VMs. Allocation is
 * idempotent per holder: asking again returns the address already held, which makes a crash
 * between allocating and recording the address on the VM harmless.
 */

import { FIELD_MANAGER_OPERATOR } from '../../api/agentlease.ts';
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

/** The network gives no address now; `reason` is the condition reason to show. */
export class AddressRefusedError extends Error {
  readonly reason: 'SubnetFull' | 'NetworkTerminating';
  constructor(reason: AddressRefusedError['reason'], message: string) {
    super(message);
    this.name = 'AddressRefusedError';
    this.reason = reason;
  }
}

const subnetFull = (network: string, total: number) =>
  new AddressRefusedError(
    'SubnetFull',
    `network ${network} has no free address (all ${total} are allocated)`,
  );

/** A network being deleted waits for its VMs to go; it must not gain new ones meanwhile. */
const terminating = (network: string) =>
  new AddressRefusedError(
    'NetworkTerminating',
    `network ${network} is being deleted and gives out no new addresses`,
  );

/** Recomputes the counters that summarise allocations. */
export function summarise(network: ImpNetwork, status: ImpNetworkStatus): ImpNetworkStatus {
  const subnet = parseSubnet(network.spec!.subnet, network.spec!.gateway);
  const total = usableCount(subnet);
  const allocated = Object.keys(status.allocations ?? {}).length;
  return { ...status, gateway: intToIp(subnet.gateway), total, allocated, free: total - allocated };
}

interface Request {
  kind: 'allocate' | 'release';
  /** For allocate: the holder; for release: which holders to free. */
  holder?: string;
  isStale?: (holder: string) => boolean;
  resolve: (value: string | number) => void;
  reject: (err: unknown) => void;
}

/**
 * Requests for one network are batched: while one write is in flight, new requests queue,
 * and the next write settles all of them at once. Under a burst of VMs this turns one
 * read-modify-write per VM into one per batch, while each write still carries the
 * resourceVersion it read, so no address is ever handed out twice.
 */
export class Allocator {
  private readonly client: KubeClient;
  private readonly pending = new Map<string, Request[]>();
  private readonly flushing = new Set<string>();

  constructor(client: KubeClient) {
    this.client = client;
  }

  /** Returns the address `holder` holds on the network, allocating one if needed. */
  allocate(namespace: string, networkName: string, holder: string): Promise<string> {
    return this.enqueue(namespace, networkName, { kind: 'allocate', holder }) as Promise<string>;
  }

  /** Frees the addresses of holders `isStale` picks; resolves with how many were freed. */
  release(
    namespace: string,
    networkName: string,
    isStale: (holder: string) => boolean,
  ): Promise<number> {
    return this.enqueue(namespace, networkName, { kind: 'release', isStale }) as Promise<number>;
  }

  private enqueue(
    namespace: string,
    networkName: string,
    request: Omit<Request, 'resolve' | 'reject'>,
  ): Promise<string | number> {
    const key = `${namespace}/${networkName}`;
    return new Promise((resolve, reject) => {
      const queue = this.pending.get(key) ?? [];
      queue.push({ ...request, resolve, reject });
      this.pending.set(key, queue);
      if (!this.flushing.has(key)) void this.flush(namespace, networkName);
    });
  }

  private async flush(namespace: string, networkName: string): Promise<void> {
    const key = `${namespace}/${networkName}`;
    this.flushing.add(key);
    try {
      for (let batch = this.take(key); batch.length > 0; batch = this.take(key)) {
        await this.settle(namespace, networkName, batch);
      }
    } finally {
      this.flushing.delete(key);
    }
  }

  private take(key: string): Request[] {
    const batch = this.pending.get(key) ?? [];
    this.pending.delete(key);
    return batch;
  }

  /** One read-modify-write of the network's status for a whole batch. */
  private async settle(namespace: string, networkName: string, batch: Request[]) {
    const results = new Map<Request, string | number | Error>();
    try {
      await updateWithRetry<ImpNetwork>(
        this.client,
        resources.ImpNetwork,
        networkName,
        namespace,
        (network) => {
          results.clear();
          const status = network.status ?? {};
          const allocations = { ...status.allocations };
          const subnet = parseSubnet(network.spec!.subnet, network.spec!.gateway);
          let changed = false;
          for (const request of batch) {
            if (request.kind === 'release') {
              let freed = 0;
              for (const [ip, holder] of Object.entries(allocations)) {
                if (request.isStale!(holder)) {
                  delete allocations[ip];
                  freed++;
                }
              }
              changed ||= freed > 0;
              results.set(request, freed);
              continue;
            }
            const held = Object.keys(allocations).find((ip) => allocations[ip] === request.holder);
            if (held) {
              results.set(request, held);
              continue;
            }
            if (network.metadata.deletionTimestamp) {
              results.set(request, terminating(networkName));
              continue;
            }
            const address = firstFree(subnet, new Set(Object.keys(allocations)));
            if (!address) {
              results.set(request, subnetFull(networkName, usableCount(subnet)));
              continue;
            }
            allocations[address] = request.holder!;
            results.set(request, address);
            changed = true;
          }
          if (!changed) return false;
          network.status = summarise(network, { ...status, allocations });
          return true;
        },
        { subresource: 'status', statusManager: FIELD_MANAGER_OPERATOR },
      );
    } catch (cause) {
      const error = new Error(`update the addresses of network ${namespace}/${networkName}`, {
        cause,
      });
      for (const request of batch) request.reject(error);
      return;
    }
    for (const request of batch) {
      const result = results.get(request);
      if (result instanceof Error) request.reject(result);
      else request.resolve(result ?? 0);
    }
  }
}
