/**
 * The agent's registration and heartbeat: a Lease named after the node in the operator's
 * namespace, renewed every few seconds and carrying the node's VM capacity. The operator
 * treats a node as schedulable while this Lease is fresh.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { agentAnnotations, agentLeaseName } from '../api/agentlease.ts';
import { isConflict, isNotFound, type KubeClient } from '../kube/client.ts';
import type { KubeObject } from '../kube/object.ts';
import { resources } from '../kube/resources.ts';
import { microTime } from '../kube/time.ts';
import type { Logger } from '../log.ts';

export interface NodeCapacity {
  hypervisor: string;
  vcpus: number;
  memoryMiB: number;
}

/** Conflicting writes to its Lease the heartbeat retries before giving up for a beat. */
const leaseWriteAttempts = 5;

export interface HeartbeatOptions {
  client: KubeClient;
  log: Logger;
  namespace: string;
  node: string;
  capacity: NodeCapacity;
  /** Where the agent's HTTP server (tunnels, console) answers, as host:port. */
  endpoint?: string;
  /** Reports how many VMs run on the node right now. */
  runningVMs?: () => number;
  intervalMs?: number;
  leaseDurationSeconds?: number;
}

type Lease = KubeObject<{
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  renewTime?: string;
  acquireTime?: string;
}>;

export class Heartbeat {
  private readonly opts: HeartbeatOptions;
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;

  constructor(options: HeartbeatOptions) {
    this.opts = options;
  }

  /** Renews once now (so callers know registration worked), then keeps renewing. */
  async start(): Promise<void> {
    await this.renew();
    this.running = this.loop();
  }

  /** Stops renewing; with `release` the Lease is emptied so the node stops taking VMs. */
  async stop(release = false): Promise<void> {
    this.abort.abort();
    await this.running;
    if (release) await this.write(false).catch(() => {});
  }

  private async loop(): Promise<void> {
    const interval = this.opts.intervalMs ?? 10_000;
    while (!this.abort.signal.aborted) {
      await sleep(interval, undefined, { signal: this.abort.signal }).catch(() => {});
      if (this.abort.signal.aborted) break;
      await this.renew().catch((err) =>
        this.opts.log.warn({ err, node: this.opts.node }, 'renewing the agent lease failed'),
      );
    }
  }

  renew(): Promise<void> {
    return this.write(true);
  }

  private async write(alive: boolean): Promise<void> {
    const { client, namespace, node, capacity } = this.opts;
    const name = agentLeaseName(node);
    const now = microTime(new Date());
    const metadata = {
      name,
      namespace,
      labels: { 'imp.dev/agent': 'true' },
      annotations: {
        [agentAnnotations.node]: node,
        [agentAnnotations.hypervisor]: capacity.hypervisor,
        [agentAnnotations.vcpus]: String(capacity.vcpus),
        [agentAnnotations.memoryMiB]: String(capacity.memoryMiB),
        [agentAnnotations.runningVMs]: String(this.opts.runningVMs?.() ?? 0),
        ...(this.opts.endpoint ? { [agentAnnotations.endpoint]: this.opts.endpoint } : {}),
      },
    };
    const spec = {
      holderIdentity: alive ? node : '',
      leaseDurationSeconds: this.opts.leaseDurationSeconds ?? 40,
      renewTime: now,
    };
    for (let attempt = 0; attempt < leaseWriteAttempts; attempt++) {
      let existing: Lease | undefined;
      try {
        existing = await client.get<Lease>(resources.Lease, name, namespace);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      try {
        if (!existing) {
          await client.create<Lease>(resources.Lease, {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata,
            spec: { ...spec, acquireTime: now },
          });
        } else {
          await client.update<Lease>(resources.Lease, {
            ...existing,
            metadata: { ...existing.metadata, ...metadata },
            spec: { ...existing.spec, ...spec },
          });
        }
        return;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
    // Something else keeps writing this node's Lease: an agent that went quiet here would
    // look dead to the operator, so say so.
    throw new Error(`renew Lease ${namespace}/${name}: ${leaseWriteAttempts} conflicts in a row`);
  }
}
