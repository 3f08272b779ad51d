/**
 * The node's side of VM networking: a Linux bridge per ImpNetwork holding the gateway
 * address, a TAP per VM enslaved to it, IPv4 forwarding, and the network's nftables chains.
 * Every call converges (running it again changes nothing), so the agent can simply repeat
 * it on each reconcile and after a restart. See docs/networking.md.
 */
import type { Logger } from '../../log.ts';
import type { KeepSets } from '../ports.ts';
import { type Link, NodeCommands } from './commands.ts';
import {
  bridgeMac,
  bridgeName,
  bridgePrefix,
  networkIdOfBridge,
  tapName,
  tapPrefix,
  vmIdOfTap,
} from './names.ts';
import {
  type ChainState,
  ensureScript,
  networkChains,
  parseTable,
  removeScript,
  tableFamily,
  tableName,
} from './rules.ts';
import { addressRange, type NetworkSpec, type ResolvedNetwork, resolveNetwork } from './spec.ts';

export interface HostNetworkOptions {
  log: Logger;
  /** Build everything inside this existing network namespace; unset means the host's. */
  netns?: string;
  /** Limit for each `ip`/`nft`/`sysctl` call (default 15 s). */
  commandTimeoutMs?: number;
}

export interface AttachVMParams {
  networkId: string;
  vmId: string;
  /**
   * Owner of the TAP, for a VMM that runs without CAP_NET_ADMIN (Firecracker under the
   * jailer). Applied only when the TAP is created.
   */
  owner?: { uid: number; gid: number };
}

export interface BridgeState {
  name: string;
  networkId?: string;
  mac: string;
  up: boolean;
  /** IPv4 addresses as `a.b.c.d/prefix`. */
  addresses: string[];
  /** Interfaces enslaved to the bridge. */
  ports: string[];
}

export interface TapState {
  name: string;
  vmId?: string;
  bridge?: string;
  up: boolean;
}

/** What Imp has on the node right now. */
export interface HostNetworkState {
  bridges: BridgeState[];
  taps: TapState[];
  /** Whether the `inet imp` table exists (it may be empty). */
  table: boolean;
  chains: ChainState[];
}

export class HostNetwork {
  private readonly log: Logger;
  private readonly commands: NodeCommands;
  /** Every operation runs alone: they read the node's state, then change it. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: HostNetworkOptions) {
    this.commands = new NodeCommands({
      ...(options.netns !== undefined ? { netns: options.netns } : {}),
      timeoutMs: options.commandTimeoutMs ?? 15_000,
    });
    this.log =
      options.netns === undefined ? options.log : options.log.child({ netns: options.netns });
  }

  /**
   * Creates or repairs network `spec.id`: its bridge with the gateway address, up; IPv4
   * forwarding; its nftables chains. Refuses a subnet that overlaps another Imp network on
   * this node, since the node could route to only one of them.
   */
  ensureNetwork(spec: NetworkSpec): Promise<{ bridge: string }> {
    return this.serial(`ensure network ${spec.id}`, async () => {
      const net = resolveNetwork(spec);
      const links = await this.commands.links();
      checkOverlap(net, links);

      await this.ensureBridge(net, links);
      await step('enable IPv4 forwarding', () => this.commands.sysctl('net.ipv4.ip_forward', '1'));
      await step('load nftables rules', () => this.commands.nft(ensureScript(net)));
      return { bridge: net.bridge };
    });
  }

  /** Removes network `id`'s bridge and chains; TAPs left on it are the VMs' to remove. */
  removeNetwork(id: string): Promise<void> {
    return this.serial(`remove network ${id}`, async () => {
      const bridge = bridgeName(id);
      const links = await this.commands.links();
      if (links.some((link) => link.name === bridge)) {
        await step(`delete bridge ${bridge}`, () =>
          this.commands.ip(['link', 'del', 'dev', bridge]),
        );
        this.log.info({ network: id, bridge }, 'removed network bridge');
      }
      await this.removeChains(new Set(networkChains(id)));
    });
  }

  /** Creates VM `vmId`'s TAP if needed and plugs it into the network's bridge, up. */
  attachVM(params: AttachVMParams): Promise<{ tap: string }> {
    return this.serial(`attach VM ${params.vmId} to network ${params.networkId}`, async () => {
      const tap = tapName(params.vmId);
      const links = await this.commands.links();
      const bridge = requireBridge(params.networkId, links);
      const existing = links.find((link) => link.name === tap);
      if (existing && !(existing.kind === 'tun' && existing.tunType === 'tap')) {
        throw new Error(`${tap} exists but is not a TAP device (kind ${existing.kind ?? 'none'})`);
      }
      if (!existing) {
        const owner = params.owner
          ? ['user', String(params.owner.uid), 'group', String(params.owner.gid)]
          : [];
        await step(`create TAP ${tap}`, () =>
          this.commands.ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap', ...owner]),
        );
        this.log.info({ vm: params.vmId, network: params.networkId, tap }, 'created VM TAP');
      }
      if (existing?.master !== bridge || !existing.up) {
        await step(`plug ${tap} into ${bridge}`, () =>
          this.commands.ip(['link', 'set', 'dev', tap, 'master', bridge, 'up']),
        );
      }
      return { tap };
    });
  }

  /**
   * Plugs an existing interface into a network's bridge, up. Tests use a veth pair in place
   * of a TAP, since a TAP carries no traffic until a VMM opens it; an overlay device joins
   * a network the same way.
   */
  attachInterface(params: { networkId: string; device: string }): Promise<void> {
    return this.serial(`attach ${params.device} to network ${params.networkId}`, async () => {
      const bridge = requireBridge(params.networkId, await this.commands.links());
      await this.commands.ip(['link', 'set', 'dev', params.device, 'master', bridge, 'up']);
    });
  }

  /** Deletes VM `vmId`'s TAP; nothing to do when it is already gone. */
  detachVM(vmId: string): Promise<void> {
    return this.serial(`detach VM ${vmId}`, async () => {
      const tap = tapName(vmId);
      const links = await this.commands.links();
      if (!links.some((link) => link.name === tap)) return;
      await this.commands.ip(['link', 'del', 'dev', tap]);
      this.log.info({ vm: vmId, tap }, 'removed VM TAP');
    });
  }

  /**
   * Removes Imp's TAPs, bridges and chains that belong to no network in `keep.networks` and
   * no VM in `keep.vms`: what a crash or a missed deletion left behind. The keep sets are
   * checked first, since one malformed id would otherwise doom devices still in use. Given
   * a function, the sets are read inside the serialised section, so a VM whose network is
   * being built in the meantime cannot be missed.
   */
  cleanup(keepSets: KeepSets | (() => Promise<KeepSets>)): Promise<void> {
    return this.serial('clean up stale networking', async () => {
      const keep = typeof keepSets === 'function' ? await keepSets() : keepSets;
      const keepBridges = new Set([...keep.networks].map(bridgeName));
      const keepTaps = new Set([...keep.vms].map(tapName));
      const removed: { taps: string[]; bridges: string[]; chains: string[] } = {
        taps: [],
        bridges: [],
        chains: [],
      };

      // TAPs first, so no stale TAP is left hanging off a bridge between the two steps.
      const links = await this.commands.links();
      for (const link of links) {
        if (!link.name.startsWith(tapPrefix) || keepTaps.has(link.name)) continue;
        if (link.kind !== 'tun') continue;
        await step(`delete TAP ${link.name}`, () => this.commands.ip(['link', 'del', link.name]));
        removed.taps.push(link.name);
      }

      for (const link of links) {
        if (!link.name.startsWith(bridgePrefix) || keepBridges.has(link.name)) continue;
        if (link.kind !== 'bridge') continue;
        await step(`delete bridge ${link.name}`, () =>
          this.commands.ip(['link', 'del', link.name]),
        );
        removed.bridges.push(link.name);
      }

      const chains = (await this.readTable()) ?? [];
      const stale = chains.filter((chain) => !keep.networks.has(chain.networkId ?? ''));
      removed.chains = await this.removeChains(new Set(stale.map((chain) => chain.name)));

      if (removed.taps.length + removed.bridges.length + removed.chains.length > 0) {
        this.log.info(removed, 'removed stale networking');
      }
    });
  }

  /** Imp's bridges, TAPs and nftables chains as they are now, for tests and diagnostics. */
  inspect(): Promise<HostNetworkState> {
    return this.serial('inspect networking', async () => {
      const links = await this.commands.links();
      const bridges = links
        .filter((link) => link.name.startsWith(bridgePrefix) && link.kind === 'bridge')
        .map((link) => {
          const networkId = networkIdOfBridge(link.name);
          return {
            name: link.name,
            ...(networkId ? { networkId } : {}),
            mac: link.mac,
            up: link.up,
            addresses: link.ipv4,
            ports: links.filter((port) => port.master === link.name).map((port) => port.name),
          };
        });
      const taps = links
        .filter((link) => link.name.startsWith(tapPrefix) && link.kind === 'tun')
        .map((link) => {
          const vmId = vmIdOfTap(link.name);
          return {
            name: link.name,
            ...(vmId ? { vmId } : {}),
            ...(link.master ? { bridge: link.master } : {}),
            up: link.up,
          };
        });
      const chains = await this.readTable();
      return { bridges, taps, table: chains !== undefined, chains: chains ?? [] };
    });
  }

  private async ensureBridge(net: ResolvedNetwork, links: Link[]): Promise<void> {
    const mac = bridgeMac(net.id);
    const address = `${net.gateway}/${net.prefix}`;
    const existing = links.find((link) => link.name === net.bridge);
    if (existing && existing.kind !== 'bridge') {
      throw new Error(`${net.bridge} exists but is not a bridge (kind ${existing.kind ?? 'none'})`);
    }

    if (!existing) {
      await step(`create bridge ${net.bridge}`, () =>
        this.commands.ip(['link', 'add', 'name', net.bridge, 'address', mac, 'type', 'bridge']),
      );
      this.log.info({ network: net.id, bridge: net.bridge }, 'created network bridge');
    } else if (existing.mac !== mac) {
      await step(`set the MAC address of ${net.bridge}`, () =>
        this.commands.ip(['link', 'set', 'dev', net.bridge, 'address', mac]),
      );
    }

    // A changed gateway leaves the old address behind unless it is removed.
    for (const old of existing?.ipv4 ?? []) {
      if (old === address) continue;
      await step(`remove old address ${old} from ${net.bridge}`, () =>
        this.commands.ip(['addr', 'del', old, 'dev', net.bridge]),
      );
    }
    if (!existing?.ipv4.includes(address)) {
      await step(`add gateway ${address} to ${net.bridge}`, () =>
        this.commands.ip(['addr', 'add', address, 'dev', net.bridge]),
      );
    }
    if (!existing?.up) {
      await step(`bring up ${net.bridge}`, () =>
        this.commands.ip(['link', 'set', 'dev', net.bridge, 'up']),
      );
    }
  }

  /** The chains in Imp's table, or undefined when there is no table. */
  private async readTable(): Promise<ChainState[] | undefined> {
    const tables = (await this.commands.nftJson(['list', 'tables'])) as {
      nftables?: { table?: { family?: string; name?: string } }[];
    };
    const exists = (tables.nftables ?? []).some(
      (item) => item.table?.family === tableFamily && item.table.name === tableName,
    );
    if (!exists) return undefined;
    return parseTable(await this.commands.nftJson(['list', 'table', tableFamily, tableName]));
  }

  /** Deletes `names` from Imp's table, and the table itself once nothing else is in it. */
  private async removeChains(names: Set<string>): Promise<string[]> {
    const chains = await this.readTable();
    if (!chains) return [];
    const present = chains.filter((chain) => names.has(chain.name)).map((chain) => chain.name);
    const dropTable = chains.every((chain) => names.has(chain.name));
    if (present.length === 0 && !dropTable) return [];
    await step('remove nftables rules', () => this.commands.nft(removeScript(present, dropTable)));
    return present;
  }

  /** Runs `task` after every earlier operation has settled; its error names `attempt`. */
  private serial<T>(attempt: string, task: () => Promise<T>): Promise<T> {
    const run = () => step(attempt, task);
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => {});
    return next;
  }
}

/** Runs one step of an operation, naming it in the error when it fails. */
async function step<T>(attempt: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (err) {
    throw new Error(`${attempt}: ${(err as Error).message}`, { cause: err });
  }
}

function requireBridge(networkId: string, links: Link[]): string {
  const bridge = bridgeName(networkId);
  if (!links.some((link) => link.name === bridge && link.kind === 'bridge')) {
    throw new Error(`network ${networkId} has no bridge ${bridge} on this node (ensure it first)`);
  }
  return bridge;
}

/** Two bridges holding overlapping subnets would leave the node routing to only one. */
function checkOverlap(net: ResolvedNetwork, links: Link[]): void {
  for (const link of links) {
    if (link.kind !== 'bridge' || !link.name.startsWith(bridgePrefix)) continue;
    if (link.name === net.bridge) continue;
    for (const cidr of link.ipv4) {
      const [address, prefix] = cidr.split('/');
      const other = addressRange(address!, Number(prefix));
      if (other.first <= net.last && net.first <= other.last) {
        throw new Error(
          `subnet ${net.subnet} overlaps ${cidr} of ${link.name} ` +
            `(network ${networkIdOfBridge(link.name) ?? 'unknown'}) on this node`,
        );
      }
    }
  }
}
