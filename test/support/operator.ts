/** Runs the real operator and agent registration in-process against a test control plane. */
import { setTimeout as sleep } from 'node:timers/promises';
import { Heartbeat, type NodeCapacity } from '../../src/agent/heartbeat.ts';
import { KubeClient } from '../../src/kube/client.ts';
import type { KubeObject } from '../../src/kube/object.ts';
import { resources } from '../../src/kube/resources.ts';
import type { ControlPlane } from '../../src/local/controlplane.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import type { Clock } from '../../src/operator/context.ts';
import { Operator } from '../../src/operator/operator.ts';

export const SYSTEM_NAMESPACE = 'imp-system';

export function testLogger(name: string): Logger {
  return createLogger({ name, level: process.env.IMP_TEST_LOG_LEVEL ?? 'silent' });
}

export async function ensureNamespace(client: KubeClient, name: string): Promise<void> {
  try {
    await client.create(resources.Namespace, {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name },
    });
  } catch (err) {
    if (!String(err).includes('409')) throw err;
  }
}

/** Creates a Node object (no kubelet runs; the scheduler reads labels and taints). */
export async function createNode(
  client: KubeClient,
  name: string,
  labels: Record<string, string> = {},
): Promise<void> {
  await client.create(resources.Node, {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...labels } },
  });
}

/** Registers a node the way the agent does, with the agent's own heartbeat code. */
export async function registerAgent(
  client: KubeClient,
  node: string,
  capacity: NodeCapacity = { hypervisor: 'qemu', vcpus: 4096, memoryMiB: 4 * 1024 * 1024 },
): Promise<Heartbeat> {
  const heartbeat = new Heartbeat({
    client,
    log: testLogger('heartbeat'),
    namespace: SYSTEM_NAMESPACE,
    node,
    capacity,
    intervalMs: 2_000,
  });
  await heartbeat.start();
  return heartbeat;
}

export function clientFor(plane: ControlPlane): KubeClient {
  return KubeClient.load(plane.kubeconfigPath);
}

export async function startOperator(
  plane: ControlPlane,
  options: { identity?: string; clock?: Clock; lostNodeGraceMs?: number } = {},
): Promise<{ operator: Operator; client: KubeClient }> {
  const client = clientFor(plane);
  await ensureNamespace(client, SYSTEM_NAMESPACE);
  const operator = new Operator({
    client,
    log: testLogger(options.identity ?? 'operator'),
    namespace: SYSTEM_NAMESPACE,
    identity: options.identity ?? 'operator-test',
    clock: options.clock,
    lostNodeGraceMs: options.lostNodeGraceMs,
    ciliumCheckIntervalMs: 0,
    leaderElection: { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 },
  });
  await operator.start();
  return { operator, client };
}

/** Polls `probe` until it returns a value that is not undefined, or fails with `what`. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`, { cause: last });
}

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  private offsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
  advance(ms: number): void {
    this.offsetMs += ms;
  }
}

export type AnyObject = KubeObject<Record<string, unknown>, Record<string, unknown>>;
