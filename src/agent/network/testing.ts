/**
 * Network namespaces for HostNetwork's tests: a "node" namespace the code under test works
 * in, guest namespaces wired to its bridges with veth pairs, and listeners and clients run
 * inside them. Everything created here is removed by `dispose`, and no address outside
 * these namespaces is ever used.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { runTool } from '../image/run.ts';

const timeoutMs = 15_000;

/** Answers each connection with the peer address it sees, then closes it. */
const listenerScript = `
const [host, port] = process.argv.slice(1);
require('node:net')
  .createServer((socket) => socket.end(socket.remoteAddress.replace(/^::ffff:/, '') + '\\n'))
  .listen(Number(port), host, () => console.log('ready'));
`;

/** Prints what the listener said, `timeout`, or `error:<code>`; always exits 0. */
const clientScript = `
const [host, port, wait] = process.argv.slice(1);
const done = (text) => { console.log(text); process.exit(0); };
const socket = require('node:net').connect({ host, port: Number(port) });
let said = '';
socket.setEncoding('utf8');
socket.on('data', (chunk) => { said += chunk; });
socket.on('end', () => done('peer:' + said.trim()));
socket.on('error', (err) => done('error:' + err.code));
setTimeout(() => done('timeout'), Number(wait));
`;

export interface Guest {
  namespace: string;
  /** The veth end left in the node namespace, to plug into a bridge. */
  hostEnd: string;
  address: string;
}

export class TestNamespaces {
  /** `imp-t-<random>`; every namespace of this set starts with it. */
  readonly prefix = `imp-t-${randomBytes(4).toString('hex')}`;
  private readonly namespaces: string[] = [];
  private readonly processes: ChildProcess[] = [];

  /** Creates namespace `<prefix>-<role>` (or `<prefix>` without a role) with `lo` up. */
  async add(role?: string): Promise<string> {
    const name = role ? `${this.prefix}-${role}` : this.prefix;
    await runTool('ip', ['netns', 'add', name], { timeoutMs });
    this.namespaces.push(name);
    await this.ip(name, ['link', 'set', 'lo', 'up']);
    return name;
  }

  async ip(namespace: string, args: string[]): Promise<string> {
    const result = await runTool('ip', ['-n', namespace, ...args], { timeoutMs });
    return result.stdout.toString();
  }

  async exec(namespace: string, command: string, args: string[]): Promise<string> {
    const result = await runTool('ip', ['netns', 'exec', namespace, command, ...args], {
      timeoutMs,
    });
    return result.stdout.toString();
  }

  /**
   * A guest: namespace `<prefix>-<role>` whose `eth0` is a veth pair with `hostEnd` in
   * `node`, addressed from the subnet, with its default route through `gateway`.
   */
  async guest(
    node: string,
    role: string,
    address: string,
    prefix: number,
    gateway: string,
  ): Promise<Guest> {
    const namespace = await this.add(role);
    const hostEnd = `tv-${role}`;
    await this.ip(node, [
      'link',
      'add',
      hostEnd,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      namespace,
    ]);
    await this.ip(namespace, ['addr', 'add', `${address}/${prefix}`, 'dev', 'eth0']);
    await this.ip(namespace, ['link', 'set', 'eth0', 'up']);
    await this.ip(namespace, ['route', 'add', 'default', 'via', gateway]);
    return { namespace, hostEnd, address };
  }

  /** Runs a TCP listener in `namespace` that tells each client its address as seen there. */
  async listen(namespace: string, host: string, port: number): Promise<void> {
    const child = spawn(
      'ip',
      ['netns', 'exec', namespace, process.execPath, '-e', listenerScript, host, String(port)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.processes.push(child);
    await new Promise<void>((resolve, reject) => {
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`listener exited (${code}): ${stderr}`)));
    });
  }

  /** Connects from `namespace`: `peer:<address the listener saw>`, `timeout` or `error:…`. */
  async connect(namespace: string, host: string, port: number, waitMs = 1500): Promise<string> {
    const out = await this.exec(namespace, process.execPath, [
      '-e',
      clientScript,
      host,
      String(port),
      String(waitMs),
    ]);
    return out.trim();
  }

  /** Whether one ping from `namespace` to `address` is answered. */
  async ping(namespace: string, address: string): Promise<boolean> {
    try {
      await this.exec(namespace, 'busybox', ['ping', '-c', '1', '-W', '2', address]);
      return true;
    } catch {
      return false;
    }
  }

  /** Stops the listeners and deletes every namespace, tolerating ones already gone. */
  async dispose(): Promise<void> {
    for (const child of this.processes) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    for (const name of this.namespaces.reverse()) {
      await runTool('ip', ['netns', 'delete', name], { timeoutMs }).catch(() => {});
    }
  }
}

/** Why root-only tests cannot run here, or undefined when they can. */
export async function missingPrerequisite(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, nftables)';
  for (const [tool, args] of [
    ['ip', ['-V']],
    ['nft', ['--version']],
    ['busybox', ['true']],
  ] as const) {
    try {
      await runTool(tool, [...args], { timeoutMs });
    } catch {
      return `${tool} is not installed`;
    }
  }
  return undefined;
}
