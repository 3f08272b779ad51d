/**
 * Turns cluster state into scheduler input and binds VMs. A VM counts against its node from
 * the moment it is chosen (before the binding reaches the informer cache), so concurrent
 * workers never overbook a node.
 */
import { agentAnnotations, agentLeaseName } from '../../api/agentlease.ts';
import type { ClusterImpNodeProfileSpec } from '../../api/config.ts';
import type { EffectiveSpec } from '../../api/effective.ts';
import { MiB, quantityBytes } from '../../api/units.ts';
import { keyOf } from '../../kube/object.ts';
import type {
  ClusterImpNodeProfile,
  ImpVM,
  LeaseObject,
  NodeObject,
  OperatorContext,
} from '../context.ts';
import { type NodeCandidate, type Placement, type Policy, schedule } from './scheduler.ts';

interface Assumed {
  node: string;
  vcpus: number;
  memoryMiB: number;
}

export class Placer {
  private readonly ctx: OperatorContext;
  private readonly assumed = new Map<string, Assumed>();

  constructor(ctx: OperatorContext) {
    this.ctx = ctx;
  }

  /**
   * Chooses a node, counts the VM against it at once, then calls `bind` to record the
   * choice. Choosing and counting happen in one synchronous step, so two reconciles never
   * both take a node's last capacity; if `bind` fails, the VM stops counting.
   */
  async place(
    vm: ImpVM,
    spec: EffectiveSpec,
    policy: Policy,
    bind: (node: string) => Promise<void>,
  ): Promise<Placement> {
    const key = keyOf(vm.metadata);
    // A VM placed moments ago whose binding the cache does not show yet keeps that node:
    // placing it again could bind it twice, and its own reservation must not count.
    const earlier = this.assumed.get(key);
    if (earlier) {
      await bind(earlier.node);
      return { node: earlier.node };
    }
    const placement = schedule(
      {
        vcpus: spec.vcpus,
        memoryMiB: spec.memoryMiB,
        nodeSelector: spec.nodeSelector,
        tolerations: spec.tolerations,
        hypervisor: spec.hypervisor,
      },
      this.candidates(),
      policy,
    );
    if (placement.node === undefined) return placement;
    this.assumed.set(key, { node: placement.node, vcpus: spec.vcpus, memoryMiB: spec.memoryMiB });
    try {
      await bind(placement.node);
    } catch (err) {
      this.assumed.delete(key);
      throw err;
    }
    return placement;
  }

  /** Drops what the cache now shows (or what was deleted). */
  forget(key: string): void {
    this.assumed.delete(key);
  }

  candidates(): NodeCandidate[] {
    const { informers } = this.ctx;
    const profiles = informers.profiles.list();
    return informers.nodes.list().map((node) => {
      const lease = informers.agentLeases.get(
        `${this.ctx.namespace}/${agentLeaseName(node.metadata.name)}`,
      );
      const profile = profileFor(node, profiles)?.spec ?? {};
      return {
        name: node.metadata.name,
        labels: node.metadata.labels ?? {},
        taints: [
          ...(node.spec?.taints ?? []),
          ...(node.spec?.unschedulable
            ? [{ key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' as const }]
            : []),
        ],
        agentReady: this.leaseAlive(lease),
        hypervisor:
          profile.hypervisor?.type ?? lease?.metadata.annotations?.[agentAnnotations.hypervisor],
        allocatable: allocatable(profile, lease),
        used: this.usage(node.metadata.name, lease),
      };
    });
  }

  leaseAlive(lease: LeaseObject | undefined): boolean {
    const renew = lease?.spec?.renewTime;
    if (!renew || !lease?.spec?.holderIdentity) return false;
    const ttlMs = (lease.spec?.leaseDurationSeconds ?? 40) * 1000;
    return this.ctx.clock.now().getTime() - Date.parse(renew) < ttlMs;
  }

  /**
   * What the node's VMs hold: those bound to it in the API (and those just placed), and at
   * least as many VMs as its agent last reported running, since VMs still being torn down
   * after their objects went are gone from the API but not yet from the node.
   */
  private usage(node: string, lease: LeaseObject | undefined): NodeCandidate['used'] {
    const used = { vcpus: 0, memoryMiB: 0, vms: 0 };
    const counted = new Set<string>();
    for (const vm of this.ctx.informers.vms.byIndex('node', node)) {
      const key = keyOf(vm.metadata);
      counted.add(key);
      // A finished VM has no VMM left; like a completed Pod it holds no capacity.
      if (vm.status?.phase === 'Succeeded' || vm.status?.phase === 'Failed') continue;
      const r = vm.status?.resources ?? this.assumed.get(key);
      used.vms++;
      used.vcpus += r?.vcpus ?? 0;
      used.memoryMiB += r?.memoryMiB ?? 0;
    }
    for (const [key, a] of this.assumed) {
      if (a.node !== node || counted.has(key)) continue;
      used.vms++;
      used.vcpus += a.vcpus;
      used.memoryMiB += a.memoryMiB;
    }
    const reported = Number(lease?.metadata.annotations?.[agentAnnotations.runningVMs] ?? 0);
    if (Number.isInteger(reported)) used.vms = Math.max(used.vms, reported);
    return used;
  }
}

/** The most specific profile (most selector keys) whose selector matches, ties by name. */
export function profileFor(
  node: NodeObject,
  profiles: ClusterImpNodeProfile[],
): ClusterImpNodeProfile | undefined {
  const labels = node.metadata.labels ?? {};
  return profiles
    .filter((p) => Object.entries(p.spec?.nodeSelector ?? {}).every(([k, v]) => labels[k] === v))
    .sort(
      (a, b) =>
        Object.keys(b.spec?.nodeSelector ?? {}).length -
          Object.keys(a.spec?.nodeSelector ?? {}).length ||
        a.metadata.name.localeCompare(b.metadata.name),
    )[0];
}

function allocatable(
  profile: ClusterImpNodeProfileSpec,
  lease: LeaseObject | undefined,
): NodeCandidate['allocatable'] {
  const reported = lease?.metadata.annotations ?? {};
  const vcpus = profile.capacity?.vcpus ?? Number(reported[agentAnnotations.vcpus] ?? 0);
  const memoryMiB = profile.capacity?.memory
    ? quantityBytes(profile.capacity.memory) / MiB
    : Number(reported[agentAnnotations.memoryMiB] ?? 0);
  const cpuPercent = profile.overcommit?.cpuPercent ?? 100;
  const memoryPercent = profile.overcommit?.memoryPercent ?? 100;
  return {
    vcpus: Math.floor((vcpus * cpuPercent) / 100),
    memoryMiB: Math.floor((memoryMiB * memoryPercent) / 100),
    maxVMs: profile.capacity?.maxVMs ?? Number.POSITIVE_INFINITY,
  };
}
