/**
 * A loopback TCP relay that puts network faults between a client and a real server: it
 * can cut every connection and refuse new ones, or keep connections open while holding
 * back what the server sends (a watch that goes silent without closing). It never looks
 * inside the bytes, so TLS to the real server stays end to end.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

type Mode = 'pass' | 'refuse';

export class FaultProxy {
  private readonly server: Server;
  private readonly target: { host: string; port: number };
  private readonly pairs = new Set<{ client: Socket; upstream: Socket }>();
  private mode: Mode = 'pass';
  /** Connections accepted so far, to tell a resumed watch from one that never broke. */
  connections = 0;

  private constructor(server: Server, target: { host: string; port: number }) {
    this.server = server;
    this.target = target;
  }

  /** Starts relaying 127.0.0.1:<ephemeral> to `targetUrl`'s host and port. */
  static async start(targetUrl: string): Promise<FaultProxy> {
    const url = new URL(targetUrl);
    const target = { host: url.hostname, port: Number(url.port) };
    let proxy: FaultProxy | undefined;
    const server = createServer((client) => proxy!.accept(client));
    proxy = new FaultProxy(server, target);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  /** The relay's URL, with the target's scheme. */
  url(scheme = 'https'): string {
    const address = this.server.address();
    if (!address || typeof address === 'string') throw new Error('fault proxy not listening');
    return `${scheme}://127.0.0.1:${address.port}`;
  }

  /** Destroys every open connection and refuses new ones until `heal()`. */
  cut(): void {
    this.mode = 'refuse';
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.pairs.clear();
  }

  /**
   * Keeps the open connections but delivers nothing more from the server on them; new
   * connections pass as usual.
   */
  silence(): void {
    for (const { client, upstream } of this.pairs) {
      upstream.unpipe(client);
      upstream.pause();
    }
  }

  heal(): void {
    this.mode = 'pass';
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    if (this.mode === 'refuse') {
      client.destroy();
      return;
    }
    this.connections++;
    const upstream = connect(this.target);
    const pair = { client, upstream };
    this.pairs.add(pair);
    const drop = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
