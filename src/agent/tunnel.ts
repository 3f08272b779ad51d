/**
 * TCP tunnels and console streams into VMs, served by the agent on its HTTP port. VM
 * addresses live on the node's bridges (or inside the agent's network namespace), so only
 * the agent can reach them; `imp port-forward` and `imp console` come through here.
 *
 *   GET /forward/<namespace>/<vm>/<port>  with `Upgrade: imp-tcp` → a raw TCP stream
 *   GET /console/<namespace>/<vm>[?follow=1] → the serial console log
 *
 * The server binds to loopback unless configured otherwise, because it has no
 * authentication of its own (docs/limitations.md).
 */
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.ts';
import type { ImpVM } from './vm/status.ts';

export interface TunnelOptions {
  log: Logger;
  /** Finds a VM bound to this node. */
  vm: (namespace: string, name: string) => ImpVM | undefined;
  /** The console log of a VM's current VMM. */
  consolePath: (vm: ImpVM) => string | undefined;
  /** The namespace VM networks live in, when not the agent's own. */
  netns?: string;
}

/** Opens a TCP stream to `ip:port`, from inside `netns` when one is given. */
export function dial(ip: string, port: number, netns?: string): Duplex {
  if (!netns) return connect({ host: ip, port });
  // The agent runs outside the namespace; busybox nc inside it carries the bytes.
  const child = spawn('ip', ['netns', 'exec', netns, 'busybox', 'nc', ip, String(port)], {
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  const stream = Duplex.from({ readable: child.stdout, writable: child.stdin });
  child.on('error', (err) => stream.destroy(err));
  stream.on('close', () => child.kill());
  return stream;
}

export function attachTunnels(server: Server, options: TunnelOptions): void {
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    const match = /^\/forward\/([^/]+)\/([^/]+)\/(\d+)$/.exec(req.url ?? '');
    const vm = match ? options.vm(match[1]!, match[2]!) : undefined;
    const port = Number(match?.[3]);
    if (!match || req.headers.upgrade !== 'imp-tcp') {
      socket.end('HTTP/1.1 400 Bad Request\r\n\r\nexpected /forward/<ns>/<vm>/<port>\n');
      return;
    }
    if (!vm?.status?.ip) {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\nno such VM with an address on this node\n');
      return;
    }
    if (!(port > 0 && port < 65536)) {
      socket.end('HTTP/1.1 400 Bad Request\r\n\r\nport must be 1-65535\n');
      return;
    }
    const upstream = dial(vm.status.ip, port, options.netns);
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: imp-tcp\r\nConnection: Upgrade\r\n\r\n',
    );
    socket.pipe(upstream).pipe(socket);
    const close = () => {
      socket.destroy();
      upstream.destroy();
    };
    socket.on('error', close);
    upstream.on('error', (err) => {
      options.log.debug({ err, vm: match[2] }, 'tunnel upstream failed');
      close();
    });
    socket.on('close', close);
    upstream.on('close', close);
  });
}

/** Streams a console log; with `follow`, keeps sending what is appended until aborted. */
export async function streamConsole(
  path: string,
  write: (chunk: Buffer) => void,
  follow: boolean,
  signal: AbortSignal,
): Promise<void> {
  let offset = 0;
  do {
    const size = (await stat(path).catch(() => undefined))?.size ?? 0;
    if (size < offset) offset = 0; // a new VMM started a new log
    if (size > offset) {
      for await (const chunk of createReadStream(path, { start: offset, end: size - 1 })) {
        write(chunk as Buffer);
      }
      offset = size;
    }
    if (follow) await sleep(250, undefined, { signal }).catch(() => {});
  } while (follow && !signal.aborted);
}
