/** IPv4 arithmetic for VM subnets. */

export function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`"${ip}" is not an IPv4 address`);
  }
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Subnet {
  cidr: string;
  network: number;
  prefix: number;
  broadcast: number;
  gateway: number;
}

/** Parses `a.b.c.d/n`; the gateway defaults to the first host address. */
export function parseSubnet(cidr: string, gateway?: string): Subnet {
  const [address, prefixText] = cidr.split('/');
  const prefix = Number(prefixText);
  if (!address || !Number.isInteger(prefix) || prefix < 8 || prefix > 29) {
    throw new Error(`"${cidr}" is not an IPv4 CIDR between /8 and /29`);
  }
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const network = (ipToInt(address) & mask) >>> 0;
  const broadcast = (network | (~mask >>> 0)) >>> 0;
  const gw = gateway ? ipToInt(gateway) : network + 1;
  if (gw <= network || gw >= broadcast) {
    throw new Error(`gateway ${gateway} is not a host address of ${cidr}`);
  }
  return { cidr, network, prefix, broadcast, gateway: gw };
}

/** Addresses VMs can get: all hosts but the gateway. */
export function usableCount(subnet: Subnet): number {
  return subnet.broadcast - subnet.network - 2;
}

/** The lowest host address that is neither the gateway nor taken, or undefined if full. */
export function firstFree(subnet: Subnet, taken: Set<string>): string | undefined {
  for (let n = subnet.network + 1; n < subnet.broadcast; n++) {
    if (n === subnet.gateway) continue;
    const ip = intToIp(n);
    if (!taken.has(ip)) return ip;
  }
  return undefined;
}

/**
 * A MAC address derived from the IP, in the locally administered range, so the same VM
 * keeps the same MAC across restarts without storing it.
 */
export function macFor(ip: string): string {
  const n = ipToInt(ip);
  const bytes = [0x02, 0x1d, n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}
