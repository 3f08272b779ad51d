/**
 * The guest kernel command line: the standard keys the initramfs reads and the `imp.*` keys
 * Imp's guest init reads (docs/guest.md, "Kernel command line").
 */

/** What the guest needs to know at boot. */
export interface GuestBootParams {
  /** `a.b.c.d/prefix` of `eth0`; without it the guest configures only `lo`. */
  address?: string;
  /** Default gateway. */
  gateway?: string;
  /** Nameservers for `/etc/resolv.conf`. */
  dns?: string[];
  /** DNS search domains. */
  search?: string[];
  hostname?: string;
  /** MTU of `eth0`. */
  mtu?: number;
  /**
   * The host's TSC rate in kHz. Set it when the guest runs under TCG: the guest then skips
   * calibrating against the emulated PIT, which hangs boots on a busy host. Leave it out
   * under KVM, where kvmclock gives the rate.
   */
  tscKhz?: number;
  /** Root device (default `/dev/vda`, the first virtio disk). */
  rootDevice?: string;
  /** Seconds the initramfs waits for the root device (the initramfs's default otherwise). */
  rootWaitSeconds?: number;
  /** Keep kernel messages off the console. */
  quiet?: boolean;
  /** Further arguments, appended as given (a class's or node profile's `kernel.bootArgs`). */
  extra?: string;
}

const ipv4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** RFC 1123 names that fit the kernel's 64-byte host name. */
const hostnamePattern = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$/;
const domainPattern = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

/**
 * Builds the kernel command line for Imp's guest. Values are checked rather than quoted:
 * the guest init splits the line on blanks and takes each `imp.*` value as one word.
 */
export function kernelCommandLine(params: GuestBootParams): string {
  const words = [
    'console=ttyS0',
    // A panic ends the VM (with QEMU's -no-reboot or Firecracker's reboot exit) instead of
    // leaving a dead guest that still looks like a running VMM.
    'panic=-1',
    `root=${params.rootDevice ?? '/dev/vda'}`,
    'rootfstype=ext4',
    'rw',
  ];
  if (params.quiet) words.push('quiet');
  if (params.tscKhz !== undefined) {
    if (!Number.isInteger(params.tscKhz) || params.tscKhz <= 0) {
      throw new Error(`TSC rate ${params.tscKhz} kHz is not a positive whole number`);
    }
    // tsc=reliable: the clocksource watchdog would otherwise discard the TSC because the
    // emulated jiffies lag behind it.
    words.push(`tsc_early_khz=${params.tscKhz}`, 'tsc=reliable');
  }
  if (params.rootWaitSeconds !== undefined) {
    words.push(`imp.rootwait=${wholeNumber('root wait', params.rootWaitSeconds)}`);
  }
  if (params.address !== undefined) words.push(`imp.ip=${checkAddress(params.address)}`);
  if (params.gateway !== undefined) {
    if (!ipv4.test(params.gateway)) throw new Error(`gateway ${params.gateway} is not IPv4`);
    words.push(`imp.gw=${params.gateway}`);
  }
  const dns = params.dns ?? [];
  for (const server of dns) {
    if (!ipv4.test(server)) throw new Error(`nameserver ${server} is not an IPv4 address`);
  }
  if (dns.length > 0) words.push(`imp.dns=${dns.join(',')}`);
  const search = params.search ?? [];
  for (const domain of search) {
    if (!domainPattern.test(domain)) throw new Error(`search domain ${domain} is not valid`);
  }
  if (search.length > 0) words.push(`imp.search=${search.join(',')}`);
  if (params.mtu !== undefined) {
    const mtu = wholeNumber('MTU', params.mtu);
    if (mtu < 68 || mtu > 65535) throw new Error(`MTU ${mtu} is outside 68 to 65535`);
    words.push(`imp.mtu=${mtu}`);
  }
  if (params.hostname !== undefined) {
    if (!hostnamePattern.test(params.hostname)) {
      throw new Error(
        `hostname ${JSON.stringify(params.hostname)} is not valid: use up to 64 letters, ` +
          'digits, dots or dashes, starting and ending with a letter or digit',
      );
    }
    words.push(`imp.hostname=${params.hostname}`);
  }
  const extra = params.extra?.trim();
  if (extra) words.push(extra);
  return words.join(' ');
}

function checkAddress(address: string): string {
  const [ip, prefix, ...rest] = address.split('/');
  const bits = Number(prefix);
  if (rest.length > 0 || !ip || !ipv4.test(ip) || !/^\d{1,2}$/.test(prefix ?? '') || bits > 32) {
    throw new Error(`guest address ${JSON.stringify(address)} is not IPv4 address/prefix`);
  }
  return `${ip}/${bits}`;
}

function wholeNumber(what: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`${what} ${value} is not a whole number`);
  }
  return value;
}
