/**
 * Picks a node for a VM. Filtering explains itself: every rejected node is counted under
 * one reason, so an unschedulable VM can say "0/3 nodes available: 2 insufficient memory,
 * 1 node selector mismatch". Scoring spreads (emptiest node first) or packs (fullest that
 * fits first); ties go to the node name, so results are stable.
 */

export interface Taint {
  key: string;
  value?: string;
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

export interface Toleration {
  key?: string;
  operator?: 'Exists' | 'Equal';
  value?: string;
  effect?: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

export interface NodeCandidate {
  name: string;
  labels: Record<string, string>;
  taints: Taint[];
  /** An agent on the node has reported in recently. */
  agentReady: boolean;
  hypervisor: string | undefined;
  /** Capacity after overcommit. */
  allocatable: { vcpus: number; memoryMiB: number; maxVMs: number };
  used: { vcpus: number; memoryMiB: number; vms: number };
}

export interface PlacementRequest {
  vcpus: number;
  memoryMiB: number;
  nodeSelector: Record<string, string>;
  tolerations: Toleration[];
  hypervisor?: string;
}

export type Policy = 'Spread' | 'Pack';

export type Placement =
  | { node: string; message?: undefined }
  | { node?: undefined; reasons: Map<string, number>; message: string };

/**
 * Taints the node lifecycle controller sets from kubelet conditions. Imp judges node health
 * by its own agent's heartbeat instead (there is no kubelet at all in local mode), so these
 * do not keep VMs off a node; a cordon (`unschedulable`) still does.
 */
const kubeletConditionTaints = new Set([
  'node.kubernetes.io/not-ready',
  'node.kubernetes.io/unreachable',
  'node.kubernetes.io/network-unavailable',
  'node.kubernetes.io/memory-pressure',
  'node.kubernetes.io/disk-pressure',
  'node.kubernetes.io/pid-pressure',
  'node.cloudprovider.kubernetes.io/uninitialized',
]);

/** Why a node cannot take the VM, or undefined when it can. Checked in this order. */
export function rejectReason(request: PlacementRequest, node: NodeCandidate): string | undefined {
  if (!node.agentReady) return 'agent not ready';
  for (const [key, value] of Object.entries(request.nodeSelector)) {
    if (node.labels[key] !== value) return 'node selector mismatch';
  }
  const untolerated = node.taints.find(
    (t) =>
      t.effect !== 'PreferNoSchedule' &&
      !kubeletConditionTaints.has(t.key) &&
      !request.tolerations.some((tol) => tolerates(tol, t)),
  );
  if (untolerated) return `untolerated taint ${untolerated.key}`;
  if (request.hypervisor && node.hypervisor && request.hypervisor !== node.hypervisor) {
    return 'hypervisor mismatch';
  }
  if (node.used.vms + 1 > node.allocatable.maxVMs) return 'too many VMs';
  if (node.used.vcpus + request.vcpus > node.allocatable.vcpus) return 'insufficient cpu';
  if (node.used.memoryMiB + request.memoryMiB > node.allocatable.memoryMiB) {
    return 'insufficient memory';
  }
  return undefined;
}

function tolerates(tol: Toleration, taint: Taint): boolean {
  if (tol.effect && tol.effect !== taint.effect) return false;
  if (!tol.key) return tol.operator === 'Exists';
  if (tol.key !== taint.key) return false;
  return tol.operator === 'Exists' || (tol.value ?? '') === (taint.value ?? '');
}

/** Free share of the node after placing the request, 0..1, averaged over cpu and memory. */
function freeShare(request: PlacementRequest, node: NodeCandidate): number {
  const cpu = 1 - (node.used.vcpus + request.vcpus) / Math.max(1, node.allocatable.vcpus);
  const mem =
    1 - (node.used.memoryMiB + request.memoryMiB) / Math.max(1, node.allocatable.memoryMiB);
  return (cpu + mem) / 2;
}

export function schedule(
  request: PlacementRequest,
  nodes: NodeCandidate[],
  policy: Policy = 'Spread',
): Placement {
  const reasons = new Map<string, number>();
  const fits: NodeCandidate[] = [];
  for (const node of nodes) {
    const reason = rejectReason(request, node);
    if (reason) reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    else fits.push(node);
  }
  if (fits.length === 0) {
    return { node: undefined, reasons, message: explain(nodes.length, reasons) };
  }
  const sign = policy === 'Spread' ? -1 : 1;
  fits.sort(
    (a, b) =>
      sign * (freeShare(request, a) - freeShare(request, b)) || a.name.localeCompare(b.name),
  );
  return { node: fits[0]!.name };
}

/** "0/3 nodes available: 2 insufficient memory, 1 node selector mismatch". */
export function explain(total: number, reasons: Map<string, number>): string {
  if (total === 0) return '0/0 nodes available: no node runs an Imp agent';
  const parts = [...reasons.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([reason, count]) => `${count} ${reason}`);
  return `0/${total} nodes available: ${parts.join(', ')}`;
}
