/**
 * How an agent announces itself: a coordination.k8s.io Lease per node, renewed as a
 * heartbeat, whose annotations carry what the scheduler needs to know about the node. A
 * Lease (not the Node object) keeps the agent's write access narrow and works the same in
 * local mode, where no kubelet runs.
 */

export const FIELD_MANAGER_OPERATOR = 'imp-operator';
export const FIELD_MANAGER_AGENT = 'imp-agent';

/** Finalizer the operator holds on every VM until its address is released. */
export const FINALIZER_OPERATOR = 'imp.dev/operator';
/** Finalizer the agent holds while a VM has resources on its node. */
export const FINALIZER_AGENT = 'imp.dev/agent';

export const agentLeaseName = (node: string) => `imp-agent-${node}`;

export const agentAnnotations = {
  node: 'imp.dev/node',
  hypervisor: 'imp.dev/hypervisor',
  vcpus: 'imp.dev/capacity-vcpus',
  memoryMiB: 'imp.dev/capacity-memory-mib',
  runningVMs: 'imp.dev/running-vms',
  endpoint: 'imp.dev/agent-endpoint',
} as const;

/** Label put on objects created for a VM, and on VMs created by a pool. */
export const labels = {
  pool: 'imp.dev/pool',
  poolKind: 'imp.dev/pool-kind',
} as const;
