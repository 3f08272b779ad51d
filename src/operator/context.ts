/** What every controller of the operator shares, built once at start. */
import type { ImpVMClassSpec } from '../api/class.ts';
import type { ClusterImpConfigSpec, ClusterImpNodeProfileSpec } from '../api/config.ts';
import type { ImpNetworkSpec, ImpNetworkStatus } from '../api/network.ts';
import type { ImpVMRunnerPoolSpec } from '../api/runnerpool.ts';
import type { ImpVMTemplateSpec } from '../api/template.ts';
import type { ImpVMSpec, ImpVMStatus } from '../api/vm.ts';
import type { ImpWarmPoolSpec } from '../api/warmpool.ts';
import type { KubeClient } from '../kube/client.ts';
import type { EventRecorder } from '../kube/events.ts';
import type { Informer } from '../kube/informer.ts';
import type { KubeObject } from '../kube/object.ts';
import type { Logger } from '../log.ts';
import type { Allocator } from './ipam/allocator.ts';
import type { OperatorMetrics } from './metrics.ts';

export type ImpVM = KubeObject<ImpVMSpec, ImpVMStatus>;
export type ImpNetwork = KubeObject<ImpNetworkSpec, ImpNetworkStatus>;
export type ImpVMClass = KubeObject<ImpVMClassSpec>;
export type ImpVMTemplate = KubeObject<ImpVMTemplateSpec>;
export type ClusterImpConfig = KubeObject<ClusterImpConfigSpec>;
export type ClusterImpNodeProfile = KubeObject<ClusterImpNodeProfileSpec>;
export type ImpWarmPool = KubeObject<ImpWarmPoolSpec>;
export type ImpVMRunnerPool = KubeObject<ImpVMRunnerPoolSpec>;

export interface NodeObject extends KubeObject {
  spec?: {
    taints?: {
      key: string;
      value?: string;
      effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
    }[];
    unschedulable?: boolean;
  };
}

export interface LeaseObject extends KubeObject {
  spec?: { holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number };
}

export interface Informers {
  vms: Informer<ImpVM>;
  networks: Informer<ImpNetwork>;
  classes: Informer<ImpVMClass>;
  templates: Informer<ImpVMTemplate>;
  configs: Informer<ClusterImpConfig>;
  profiles: Informer<ClusterImpNodeProfile>;
  nodes: Informer<NodeObject>;
  agentLeases: Informer<LeaseObject>;
  warmPools: Informer<ImpWarmPool>;
  runnerPools: Informer<ImpVMRunnerPool>;
}

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export interface OperatorContext {
  client: KubeClient;
  log: Logger;
  clock: Clock;
  events: EventRecorder;
  metrics: OperatorMetrics;
  informers: Informers;
  allocator: Allocator;
  /** Namespace holding agent Leases and the leader Lease. */
  namespace: string;
  /** How long a VM on a node without a live agent waits before deletion is forced. */
  lostNodeGraceMs: number;
  /** How long a look for Cilium's CRDs is trusted before asking the API server again. */
  ciliumCheckIntervalMs: number;
}
