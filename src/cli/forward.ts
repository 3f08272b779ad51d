/** `imp port-forward VM LOCAL:REMOTE`: a loopback listener tunnelled to a VM port. */
import { createServer, type Server } from 'node:net';
import { KubeClient } from '../kube/client.ts';
import { createLogger, type Logger } from '../log.ts';
import { defaultNamespace, parse, UsageError } from './args.ts';
import { untilSignal } from './operator.ts';
import { agentFor, openTunnel } from './reach.ts';

export const forwardHelp = `imp port-forward VM LOCAL:REMOTE [flags]
  -n, --namespace NS   the VM's namespace (default: default)
  --kubeconfig PATH    kubeconfig (default: $KUBECONFIG, then ~/.kube/config)
  --system-namespace   where agents publish their endpoints (default imp-system)
Listens on 127.0.0.1:LOCAL (0 picks a free port) only.`;

export interface Forward {
  server: Server;
  port: number;
}

/** Starts forwarding; each accepted connection opens its own tunnel. */
export async function startForward(options: {
  localPort: number;
  endpoint: string;
  namespace: string;
  vm: string;
  remotePort: number;
  log: Logger;
}): Promise<Forward> {
  const server = createServer((socket) => {
    openTunnel(options.endpoint, options.namespace, options.vm, options.remotePort).then(
      (tunnel) => {
        socket.pipe(tunnel).pipe(socket);
        const close = () => {
          socket.destroy();
          tunnel.destroy();
        };
        socket.on('error', close);
        tunnel.on('error', close);
        socket.on('close', close);
        tunnel.on('close', close);
      },
      (err) => {
        options.log.warn({ err, vm: options.vm }, 'opening a tunnel failed');
        socket.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.localPort, '127.0.0.1', resolve);
  });
  const address = server.address();
  return { server, port: typeof address === 'object' && address ? address.port : 0 };
}

export async function runPortForward(argv: string[]): Promise<void> {
  const { values, positionals } = parse(
    argv,
    {
      namespace: { type: 'string', short: 'n' },
      kubeconfig: { type: 'string' },
      'system-namespace': { type: 'string' },
    },
    true,
  );
  const [vm, ports] = positionals;
  const match = /^(\d+):(\d+)$/.exec(ports ?? '');
  if (!vm || !match) throw new UsageError(`usage: ${forwardHelp.split('\n')[0]}`);
  const namespace = values.namespace ?? 'default';
  const client = KubeClient.load(values.kubeconfig);
  const log = createLogger({ name: 'port-forward', level: 'warn' });
  const { endpoint } = await agentFor(
    client,
    namespace,
    vm,
    values['system-namespace'] ?? defaultNamespace(),
  );
  const forward = await startForward({
    localPort: Number(match[1]),
    endpoint,
    namespace,
    vm,
    remotePort: Number(match[2]),
    log,
  });
  console.log(
    `Forwarding 127.0.0.1:${forward.port} -> ${namespace}/${vm}:${match[2]} (Ctrl-C stops)`,
  );
  await untilSignal();
  forward.server.close();
  client.close();
}
