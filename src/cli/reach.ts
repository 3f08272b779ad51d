/**
 * How the CLI reaches a VM: through the agent on the VM's node, whose address the agent
 * publishes on its heartbeat Lease.
 */
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { agentAnnotations, agentLeaseName } from '../api/agentlease.ts';
import type { ImpVMSpec, ImpVMStatus } from '../api/vm.ts';
import type { KubeClient } from '../kube/client.ts';
import { isNotFound } from '../kube/client.ts';
import type { KubeObject } from '../kube/object.ts';
import { resources } from '../kube/resources.ts';

export interface AgentAddress {
  endpoint: string;
  vm: KubeObject<ImpVMSpec, ImpVMStatus>;
}

export async function agentFor(
  client: KubeClient,
  namespace: string,
  vmName: string,
  systemNamespace: string,
): Promise<AgentAddress> {
  let vm: KubeObject<ImpVMSpec, ImpVMStatus>;
  try {
    vm = await client.get(resources.ImpVM, vmName, namespace);
  } catch (err) {
    if (isNotFound(err)) throw new Error(`ImpVM ${namespace}/${vmName} does not exist`);
    throw err;
  }
  const node = vm.status?.nodeName;
  if (!node) throw new Error(`ImpVM ${namespace}/${vmName} is not bound to a node yet`);
  const lease = await client.get(resources.Lease, agentLeaseName(node), systemNamespace);
  const endpoint = lease.metadata.annotations?.[agentAnnotations.endpoint];
  if (!endpoint) throw new Error(`the agent on node ${node} publishes no endpoint`);
  return { endpoint, vm };
}

/** Opens a raw TCP tunnel to `port` of the VM through its agent. */
export function openTunnel(
  endpoint: string,
  namespace: string,
  vm: string,
  port: number,
): Promise<Socket> {
  const [host, portText] = [
    endpoint.slice(0, endpoint.lastIndexOf(':')),
    endpoint.split(':').pop(),
  ];
  return new Promise((resolve, reject) => {
    const req = request({
      host,
      port: Number(portText),
      path: `/forward/${encodeURIComponent(namespace)}/${encodeURIComponent(vm)}/${port}`,
      headers: { connection: 'Upgrade', upgrade: 'imp-tcp' },
    });
    req.on('upgrade', (_res, socket) => resolve(socket));
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => reject(new Error(`agent refused the tunnel: ${res.statusCode} ${body}`)));
    });
    req.on('error', (err) =>
      reject(new Error(`reaching the agent at ${endpoint}`, { cause: err })),
    );
    req.end();
  });
}
