/**
 * Builds an agent with the node's real services (QEMU or Firecracker, host networking,
 * image store, guest kernel), from one validated configuration. Shared by `imp agent` and
 * `imp local up`, so local mode runs exactly what a cluster node runs.
 */
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type { KubeClient } from '../kube/client.ts';
import type { Logger } from '../log.ts';
import { Agent } from './agent.ts';
import { ImageStore } from './image/store.ts';
import { GuestKernelSource } from './kernel/index.ts';
import { HostNetwork } from './network/index.ts';
import { FirecrackerDriver } from './vmm/firecracker/index.ts';
import { QemuDriver } from './vmm/qemu/index.ts';
import type { Driver } from './vmm/types.ts';

export interface NodeConfig {
  node: string;
  namespace: string;
  stateDir: string;
  /** Image and kernel caches. */
  cacheDir: string;
  hypervisor: 'qemu' | 'firecracker';
  accel: 'kvm' | 'tcg' | 'auto';
  firecrackerBin?: string;
  netns?: string;
  kernelPath?: string;
  initrdPath?: string;
  /** Host:port the agent's HTTP server answers on, published for tunnels. */
  endpoint?: string;
  vcpus?: number;
  memoryMiB?: number;
}

export function createDriver(config: NodeConfig, log: Logger): Driver {
  if (config.hypervisor === 'firecracker') {
    if (!config.firecrackerBin) {
      throw new Error('the firecracker hypervisor needs a binary (--firecracker-bin)');
    }
    return new FirecrackerDriver({ log, firecrackerBin: config.firecrackerBin });
  }
  return new QemuDriver({ log, accel: config.accel });
}

export function createNodeAgent(client: KubeClient, log: Logger, config: NodeConfig): Agent {
  const driver = createDriver(config, log.child({ component: 'vmm' }));
  return new Agent({
    client,
    log,
    node: config.node,
    namespace: config.namespace,
    stateDir: config.stateDir,
    netns: config.netns,
    endpoint: config.endpoint,
    capacity: {
      hypervisor: driver.type,
      vcpus: config.vcpus ?? cpus().length,
      memoryMiB: config.memoryMiB ?? Math.floor(totalmem() / 1024 / 1024),
    },
    driver,
    imageStore: (mirrors) =>
      new ImageStore({
        cacheDir: join(config.cacheDir, 'image-store'),
        log: log.child({ component: 'images' }),
        mirrors,
      }),
    networking: new HostNetwork({ log: log.child({ component: 'network' }), netns: config.netns }),
    kernel: new GuestKernelSource({
      kernelPath: config.kernelPath,
      initrdPath: config.initrdPath,
      cacheDir: config.cacheDir,
    }),
  });
}
