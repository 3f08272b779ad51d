/**
 * The `ip`, `nft` and `sysctl` invocations behind HostNetwork, pointed at one network
 * namespace or at the host's. Arguments go to the programs directly, never through a shell.
 */
import { runTool } from '../image/run.ts';

/** One network interface as `ip -d -j addr show` describes it. */
export interface Link {
  name: string;
  /** `bridge`, `tun`, `veth`, ... (absent for plain devices such as `lo`). */
  kind?: string;
  /** `tap` or `tun` for kind `tun`. */
  tunType?: string;
  /** The bridge this interface is a port of. */
  master?: string;
  /** Administratively up. */
  up: boolean;
  mac: string;
  /** IPv4 addresses as `a.b.c.d/prefix`. */
  ipv4: string[];
}

interface RawLink {
  ifname: string;
  flags?: string[];
  master?: string;
  address?: string;
  linkinfo?: { info_kind?: string; info_data?: { type?: string } };
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

export class NodeCommands {
  readonly netns: string | undefined;
  private readonly timeoutMs: number;

  constructor(options: { netns?: string; timeoutMs: number }) {
    this.netns = options.netns;
    this.timeoutMs = options.timeoutMs;
  }

  /** Runs `ip ARGS` in the namespace and returns its stdout. */
  async ip(args: string[]): Promise<string> {
    const where = this.netns === undefined ? [] : ['-n', this.netns];
    const label = `ip ${args
      .filter((arg) => !arg.startsWith('-'))
      .slice(0, 2)
      .join(' ')}`;
    const result = await runTool('ip', [...where, ...args], { timeoutMs: this.timeoutMs, label });
    return result.stdout.toString();
  }

  /** Every interface in the namespace, with its kind, bridge and IPv4 addresses. */
  async links(): Promise<Link[]> {
    const raw = JSON.parse((await this.ip(['-d', '-j', 'addr', 'show'])) || '[]') as RawLink[];
    return raw.map((link) => ({
      name: link.ifname,
      ...(link.linkinfo?.info_kind ? { kind: link.linkinfo.info_kind } : {}),
      ...(link.linkinfo?.info_data?.type ? { tunType: link.linkinfo.info_data.type } : {}),
      ...(link.master ? { master: link.master } : {}),
      up: link.flags?.includes('UP') ?? false,
      mac: link.address ?? '',
      ipv4: (link.addr_info ?? [])
        .filter((addr) => addr.family === 'inet' && addr.local)
        .map((addr) => `${addr.local}/${addr.prefixlen}`),
    }));
  }

  /**
   * Loads an nftables script as one transaction: if any command fails, none applies. The
   * script travels as an argument rather than on stdin (`nft -f -`), which `runTool` does
   * not feed; nft parses and commits an argument exactly as it does a file.
   */
  async nft(script: string): Promise<void> {
    await this.inNamespace('nft', [script], 'nft');
  }

  /** `nft -j ARGS`, parsed. */
  async nftJson(args: string[]): Promise<unknown> {
    const out = await this.inNamespace('nft', ['-j', ...args], `nft ${args.join(' ')}`);
    return JSON.parse(out || '{}');
  }

  async sysctl(key: string, value: string): Promise<void> {
    await this.inNamespace('sysctl', ['-q', '-w', `${key}=${value}`], `sysctl ${key}`);
  }

  private async inNamespace(command: string, args: string[], label: string): Promise<string> {
    const [program, argv] =
      this.netns === undefined
        ? [command, args]
        : ['ip', ['netns', 'exec', this.netns, command, ...args]];
    const result = await runTool(program, argv, { timeoutMs: this.timeoutMs, label });
    return result.stdout.toString();
  }
}
