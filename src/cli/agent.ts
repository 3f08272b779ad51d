/** `imp agent`: the node agent, until SIGTERM. VMMs keep running across agent restarts. */
import { hostname } from 'node:os';
import { createNodeAgent } from '../agent/node.ts';
import { startAgentServer } from '../agent/server.ts';
import { KubeClient } from '../kube/client.ts';
import { defaultCacheDir } from '../local/images.ts';
import { createLogger } from '../log.ts';
import { defaultNamespace, hostPort, parse, UsageError } from './args.ts';
import { untilSignal } from './operator.ts';

export const agentHelp = `imp agent [flags]
  --kubeconfig PATH       kubeconfig (default: in-cluster, then $KUBECONFIG, ~/.kube/config)
  --node NAME             this node's name (default $NODE_NAME or the hostname)
  --namespace NS          namespace of the operator's leases (default $POD_NAMESPACE or imp-system)
  --state-dir DIR         per-VM state, disks and sockets (default /var/lib/imp)
  --cache-dir DIR         image and kernel caches (default $IMP_CACHE_DIR or ~/.cache/imp)
  --hypervisor NAME       qemu or firecracker (default qemu)
  --accel MODE            QEMU acceleration: auto, kvm or tcg (default auto)
  --firecracker-bin PATH  the firecracker binary (with --hypervisor firecracker)
  --kernel PATH           guest kernel (default: Debian's cloud kernel, fetched and cached)
  --initrd PATH           initramfs for --kernel
  --netns NAME            keep VM networks in this network namespace (default: the host's)
  --listen ADDR           metrics, health, tunnels and console (default 127.0.0.1:9090)
  --advertise ADDR        host:port published for tunnels (default: --listen)
  --log-level LEVEL       debug, info, warn, error (default info)`;

export async function runAgent(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    kubeconfig: { type: 'string' },
    node: { type: 'string' },
    namespace: { type: 'string' },
    'state-dir': { type: 'string' },
    'cache-dir': { type: 'string' },
    hypervisor: { type: 'string' },
    accel: { type: 'string' },
    'firecracker-bin': { type: 'string' },
    kernel: { type: 'string' },
    initrd: { type: 'string' },
    netns: { type: 'string' },
    listen: { type: 'string' },
    advertise: { type: 'string' },
    'log-level': { type: 'string' },
  });
  const hypervisor = values.hypervisor ?? 'qemu';
  if (hypervisor !== 'qemu' && hypervisor !== 'firecracker') {
    throw new UsageError(`--hypervisor must be qemu or firecracker (got "${hypervisor}")`);
  }
  const accel = values.accel ?? 'auto';
  if (accel !== 'auto' && accel !== 'kvm' && accel !== 'tcg') {
    throw new UsageError(`--accel must be auto, kvm or tcg (got "${accel}")`);
  }
  const listen = hostPort(values.listen ?? '127.0.0.1:9090', 'listen');
  const wildcard = ['0.0.0.0', '::', '[::]'].includes(listen.host);
  if (wildcard && !values.advertise) {
    throw new UsageError(
      `--advertise is required when --listen binds every address (${values.listen}): ` +
        'the operator and CLI need an address that reaches this node',
    );
  }
  const node = values.node ?? process.env.NODE_NAME ?? hostname();
  const log = createLogger({ name: 'agent', level: values['log-level'] }).child({ node });
  const client = KubeClient.load(values.kubeconfig);
  const agent = createNodeAgent(client, log, {
    node,
    namespace: values.namespace ?? defaultNamespace(),
    stateDir: values['state-dir'] ?? '/var/lib/imp',
    cacheDir: values['cache-dir'] ?? defaultCacheDir(),
    hypervisor,
    accel,
    firecrackerBin: values['firecracker-bin'],
    kernelPath: values.kernel,
    initrdPath: values.initrd,
    netns: values.netns,
    endpoint: values.advertise ?? `${listen.host}:${listen.port}`,
  });
  const server = await startAgentServer(agent, listen, log, values.netns);
  await agent.start();
  await untilSignal();
  log.info({}, 'shutting down; VMs keep running');
  await agent.stop();
  await server.close();
  client.close();
}
