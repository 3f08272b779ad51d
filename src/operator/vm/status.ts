/** The part of an ImpVM's status the operator owns, and how its phase is summarised. */
import { type Condition, findCondition, setCondition } from '../../api/conditions.ts';
import type { ImpVMStatus, VMPhase } from '../../api/vm.ts';
import type { ImpVM } from '../context.ts';

/** Condition types the operator writes; the agent writes Provisioned, Running, GuestReady. */
export const operatorConditions = [
  'SpecResolved',
  'Scheduled',
  'AddressAllocated',
  'Ready',
] as const;

export type OperatorStatus = Pick<
  ImpVMStatus,
  'phase' | 'nodeName' | 'ip' | 'mac' | 'network' | 'expiresAt' | 'resources' | 'observedGeneration'
> & { conditions: Condition[] };

/** Copies the operator's fields out of the current status, as the starting point. */
export function ownedStatus(vm: ImpVM): OperatorStatus {
  const s = vm.status ?? {};
  return {
    phase: s.phase,
    nodeName: s.nodeName,
    ip: s.ip,
    mac: s.mac,
    network: s.network,
    expiresAt: s.expiresAt,
    resources: s.resources,
    observedGeneration: s.observedGeneration,
    conditions: (s.conditions ?? []).filter((c) =>
      (operatorConditions as readonly string[]).includes(c.type),
    ),
  };
}

export function condition(
  status: OperatorStatus,
  vm: ImpVM,
  type: (typeof operatorConditions)[number],
  ok: boolean,
  reason: string,
  message: string,
  now: Date,
): void {
  status.conditions = setCondition(
    status.conditions,
    {
      type,
      status: ok ? 'True' : 'False',
      reason,
      message,
      observedGeneration: vm.metadata.generation,
    },
    now,
  );
}

/** One word for people, derived from the conditions of both writers. */
export function summarisePhase(vm: ImpVM, status: OperatorStatus): VMPhase {
  if (vm.metadata.deletionTimestamp) return 'Stopping';
  if (!status.nodeName) return 'Pending';
  const agent = vm.status?.conditions;
  const running = findCondition(agent, 'Running');
  if (running?.status === 'True' && findCondition(agent, 'GuestReady')?.status === 'True') {
    return 'Running';
  }
  if (running?.status === 'False' && running.reason === 'Succeeded') return 'Succeeded';
  if (running?.status === 'False' && running.reason === 'Failed') return 'Failed';
  if (findCondition(agent, 'Provisioned') || running) return 'Provisioning';
  return 'Scheduled';
}

/** Compares two statuses ignoring key order, so unchanged status is not written again. */
export function sameStatus(a: OperatorStatus, b: OperatorStatus): boolean {
  const canon = (s: OperatorStatus) =>
    JSON.stringify(s, (_k, v) =>
      v && typeof v === 'object' && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => x.localeCompare(y)))
        : v,
    );
  return canon(a) === canon(b);
}
