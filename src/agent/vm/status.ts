/** The part of an ImpVM's status the agent owns, built from its record of the VM. */
import { type Condition, setCondition } from '../../api/conditions.ts';
import type { ImpVMSpec, ImpVMStatus } from '../../api/vm.ts';
import type { KubeObject } from '../../kube/object.ts';
import type { VMRecord } from '../state.ts';

export type ImpVM = KubeObject<ImpVMSpec, ImpVMStatus>;

/** Condition types the agent writes. */
export const agentConditions = ['Provisioned', 'Running', 'GuestReady'] as const;
export type AgentCondition = (typeof agentConditions)[number];

export type AgentStatus = Pick<
  ImpVMStatus,
  | 'runningAt'
  | 'vmmPid'
  | 'hypervisor'
  | 'bootDurationSeconds'
  | 'imageDigest'
  | 'exitCode'
  | 'restartCount'
> & { conditions: Condition[] };

export function currentAgentStatus(vm: ImpVM): AgentStatus {
  const s = vm.status ?? {};
  return {
    runningAt: s.runningAt,
    vmmPid: s.vmmPid,
    hypervisor: s.hypervisor,
    bootDurationSeconds: s.bootDurationSeconds,
    imageDigest: s.imageDigest,
    exitCode: s.exitCode,
    restartCount: s.restartCount,
    conditions: (s.conditions ?? []).filter((c) =>
      (agentConditions as readonly string[]).includes(c.type),
    ),
  };
}

/** Starts from what is published and overlays the record's facts. */
export function statusFromRecord(vm: ImpVM, record: VMRecord, pid: number | undefined) {
  const status = currentAgentStatus(vm);
  return {
    ...status,
    // runningAt is written once: an earlier value always wins.
    runningAt: status.runningAt ?? record.runningAt,
    vmmPid: pid,
    hypervisor: record.hypervisor,
    bootDurationSeconds: record.bootDurationSeconds ?? status.bootDurationSeconds,
    imageDigest: record.imageDigest ?? status.imageDigest,
    exitCode: record.exitCode,
    restartCount: record.restartCount,
  };
}

export function setAgentCondition(
  status: AgentStatus,
  vm: ImpVM,
  type: AgentCondition,
  ok: boolean | 'Unknown',
  reason: string,
  message: string,
): void {
  status.conditions = setCondition(status.conditions, {
    type,
    status: ok === 'Unknown' ? 'Unknown' : ok ? 'True' : 'False',
    reason,
    message,
    observedGeneration: vm.metadata.generation,
  });
}
