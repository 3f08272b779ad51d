/**
 * Names of everything Imp creates on a node's network. Each name carries an Imp prefix and
 * a short hash, so the agent can recognise its own devices and rules after a crash and
 * remove whatever no ImpNetwork or VM still claims, without keeping a list anywhere.
 *
 * Linux limits interface names to 15 characters, which leaves room for a 7-character prefix
 * and 8 hex digits (32 bits of a SHA-256). Two VMs on one node collide with a chance of
 * about n²/2³³, so a thousand VMs on a node share a name with odds near one in ten thousand.
 */
import { createHash } from 'node:crypto';

/** Prefix of an ImpNetwork's bridge: `imp-br-1a2b3c4d`. */
export const bridgePrefix = 'imp-br-';
/** Prefix of a VM's TAP device: `imp-vm-5e6f7a8b`. */
export const tapPrefix = 'imp-vm-';

const idPattern = /^[0-9a-f]{8}$/;

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 8);
}

/** The node-local id of an ImpNetwork: stable for its namespace and name. */
export function networkId(namespace: string, name: string): string {
  return shortHash(`network:${namespace}/${name}`);
}

/**
 * The node-local id of a VM, from its uid rather than its name: a VM deleted and created
 * again under the same name gets a fresh TAP, never the half-torn-down one of its
 * predecessor.
 */
export function vmId(uid: string): string {
  return shortHash(`vm:${uid}`);
}

/** Throws unless `id` looks like one `networkId` or `vmId` returns. */
export function assertId(kind: 'network' | 'VM', id: string): void {
  if (!idPattern.test(id)) {
    throw new Error(`"${id}" is not an Imp ${kind} id (8 lowercase hex digits)`);
  }
}

export function bridgeName(networkId: string): string {
  assertId('network', networkId);
  return bridgePrefix + networkId;
}

export function tapName(vmId: string): string {
  assertId('VM', vmId);
  return tapPrefix + vmId;
}

/** The TAP a VM with this uid is wired to. */
export function vmTapName(uid: string): string {
  return tapName(vmId(uid));
}

/** The network id an interface name belongs to, if it is an Imp bridge name. */
export function networkIdOfBridge(ifname: string): string | undefined {
  return idAfter(bridgePrefix, ifname);
}

/** The VM id an interface name belongs to, if it is an Imp TAP name. */
export function vmIdOfTap(ifname: string): string | undefined {
  return idAfter(tapPrefix, ifname);
}

function idAfter(prefix: string, name: string): string | undefined {
  if (!name.startsWith(prefix)) return undefined;
  const id = name.slice(prefix.length);
  return idPattern.test(id) ? id : undefined;
}

/**
 * The bridge's own MAC address, fixed rather than left to the kernel: a Linux bridge
 * otherwise takes the lowest MAC among its ports, so attaching a VM could change the
 * gateway's MAC under the feet of guests that have it cached. The `02:1b` prefix is locally
 * administered and differs from the `02:1d` the operator gives VMs.
 */
export function bridgeMac(networkId: string): string {
  assertId('network', networkId);
  const pairs = networkId.match(/../g)!;
  return ['02', '1b', ...pairs].join(':');
}
