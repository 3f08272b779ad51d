/**
 * What the agent asks of a node's network for one ImpNetwork, and its validation. The
 * address arithmetic is the operator's (`operator/ipam/subnet.ts`), so the gateway the node
 * configures is always the one the operator reports and keeps out of VM allocations.
 */
import type { ImpNetworkSpec } from '../../api/network.ts';
import { intToIp, ipToInt, parseSubnet } from '../../operator/ipam/subnet.ts';
import { assertId, bridgeName, networkId } from './names.ts';

/** One ImpNetwork as the node sees it. */
export interface NetworkSpec {
  /** From `networkId(namespace, name)`. */
  id: string;
  /** IPv4 CIDR with the host bits zero, e.g. `192.168.100.0/24`. */
  subnet: string;
  /** The bridge's address; empty or absent means the subnet's first host address. */
  gateway?: string;
  /** Masquerade guest traffic that leaves the node through any other interface. */
  nat: boolean;
  /** Drop guest traffic to 169.254.169.254 (default true). */
  blockMetadata?: boolean;
  /** Drop guest traffic to the node itself, except ping to the gateway (default true). */
  blockNode?: boolean;
  /**
   * A DNS proxy serves guests on the gateway address, so DNS (port 53, UDP and TCP) to the
   * gateway is let through even with `blockNode`. Imp runs no such proxy yet: default false.
   */
  dnsOnGateway?: boolean;
}

/** A validated `NetworkSpec` with every default applied. */
export interface ResolvedNetwork {
  id: string;
  bridge: string;
  /** Normalised CIDR. */
  subnet: string;
  prefix: number;
  /** First and last address of the subnet, as integers, for overlap checks. */
  first: number;
  last: number;
  gateway: string;
  nat: boolean;
  blockMetadata: boolean;
  blockNode: boolean;
  dnsOnGateway: boolean;
}

/** Reads an ImpNetwork's spec the way the node applies it. */
export function fromImpNetwork(namespace: string, name: string, spec: ImpNetworkSpec): NetworkSpec {
  return {
    id: networkId(namespace, name),
    subnet: spec.subnet,
    ...(spec.gateway ? { gateway: spec.gateway } : {}),
    nat: spec.nat?.enabled ?? false,
    blockMetadata: spec.isolation?.blockMetadata ?? true,
    blockNode: spec.isolation?.blockNode ?? true,
  };
}

/** Validates `spec` and fills in defaults; errors name the bad value. */
export function resolveNetwork(spec: NetworkSpec): ResolvedNetwork {
  assertId('network', spec.id);
  let subnet: ReturnType<typeof parseSubnet>;
  try {
    subnet = parseSubnet(spec.subnet);
  } catch (err) {
    throw new Error(`invalid subnet "${spec.subnet}": ${message(err)}`, {
      cause: err,
    });
  }
  const address = spec.subnet.split('/')[0]!;
  if (ipToInt(address) !== subnet.network) {
    throw new Error(
      `invalid subnet "${spec.subnet}": host bits are set ` +
        `(the network is ${intToIp(subnet.network)}/${subnet.prefix})`,
    );
  }
  const gateway = spec.gateway || undefined;
  if (gateway !== undefined) {
    try {
      subnet = parseSubnet(spec.subnet, gateway);
    } catch (err) {
      throw new Error(`invalid gateway "${gateway}": ${message(err)}`, {
        cause: err,
      });
    }
  }
  return {
    id: spec.id,
    bridge: bridgeName(spec.id),
    subnet: `${intToIp(subnet.network)}/${subnet.prefix}`,
    prefix: subnet.prefix,
    first: subnet.network,
    last: subnet.broadcast,
    gateway: intToIp(subnet.gateway),
    nat: spec.nat,
    blockMetadata: spec.blockMetadata ?? true,
    blockNode: spec.blockNode ?? true,
    dnsOnGateway: spec.dnsOnGateway ?? false,
  };
}

/** The first and last address of `address/prefix`, as integers. */
export function addressRange(address: string, prefix: number): { first: number; last: number } {
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const first = (ipToInt(address) & mask) >>> 0;
  return { first, last: (first | (~mask >>> 0)) >>> 0 };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
