/**
 * The imp.dev/v1alpha1 kinds: one table that the CRD generator, the clients and the
 * controllers all read, so names and scopes are written down exactly once.
 */
import type { TSchema } from '@sinclair/typebox';
import { ImpVMClassSpec, ImpVMClassStatus } from './class.ts';
import {
  ClusterImpConfigSpec,
  ClusterImpConfigStatus,
  ClusterImpNodeProfileSpec,
  ClusterImpNodeProfileStatus,
  clusterImpConfigNameRule,
} from './config.ts';
import { ImpVMMigrationSpec, ImpVMMigrationStatus } from './migration.ts';
import { ImpNetworkSpec, ImpNetworkStatus } from './network.ts';
import { ImpVMRunnerPoolSpec, ImpVMRunnerPoolStatus } from './runnerpool.ts';
import type { CelRule } from './schema.ts';
import { ImpVMSnapshotSpec, ImpVMSnapshotStatus } from './snapshot.ts';
import { ImpVMTemplateSpec, ImpVMTemplateStatus } from './template.ts';
import { ImpVMSpec, ImpVMStatus } from './vm.ts';
import { ImpWarmPoolSpec, ImpWarmPoolStatus } from './warmpool.ts';

export const GROUP = 'imp.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
}

export interface KindInfo {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  namespaced: boolean;
  spec: TSchema;
  status: TSchema;
  /** Whether an object without `spec` is meaningless. */
  specRequired: boolean;
  columns: PrinterColumn[];
  rootRules?: CelRule[];
  /** Fields clients may filter on with a field selector (JSON paths). */
  selectableFields?: string[];
}

const age: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };
const ready: PrinterColumn = {
  name: 'Ready',
  type: 'string',
  jsonPath: '.status.conditions[?(@.type=="Ready")].status',
};

export const kinds = {
  ImpVM: {
    kind: 'ImpVM',
    plural: 'impvms',
    singular: 'impvm',
    shortNames: ['ivm'],
    namespaced: true,
    spec: ImpVMSpec,
    status: ImpVMStatus,
    specRequired: true,
    // Agents watch only the VMs bound to their node.
    selectableFields: ['.status.nodeName'],
    columns: [
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      { name: 'Node', type: 'string', jsonPath: '.status.nodeName' },
      { name: 'IP', type: 'string', jsonPath: '.status.ip' },
      { name: 'Image', type: 'string', jsonPath: '.spec.image', priority: 1 },
      { name: 'Expires', type: 'date', jsonPath: '.status.expiresAt', priority: 1 },
      age,
    ],
  },
  ImpNetwork: {
    kind: 'ImpNetwork',
    plural: 'impnetworks',
    singular: 'impnetwork',
    shortNames: ['inet'],
    namespaced: true,
    spec: ImpNetworkSpec,
    status: ImpNetworkStatus,
    specRequired: true,
    columns: [
      { name: 'Subnet', type: 'string', jsonPath: '.spec.subnet' },
      { name: 'NAT', type: 'boolean', jsonPath: '.spec.nat.enabled' },
      { name: 'Allocated', type: 'integer', jsonPath: '.status.allocated' },
      { name: 'Free', type: 'integer', jsonPath: '.status.free' },
      { name: 'Overlay', type: 'string', jsonPath: '.status.overlay', priority: 1 },
      ready,
      age,
    ],
  },
  ImpVMSnapshot: {
    kind: 'ImpVMSnapshot',
    plural: 'impvmsnapshots',
    singular: 'impvmsnapshot',
    shortNames: ['ivmsnap'],
    namespaced: true,
    spec: ImpVMSnapshotSpec,
    status: ImpVMSnapshotStatus,
    specRequired: true,
    columns: [
      { name: 'VM', type: 'string', jsonPath: '.spec.vmRef.name' },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      { name: 'Node', type: 'string', jsonPath: '.status.nodeName' },
      { name: 'Size', type: 'integer', jsonPath: '.status.sizeBytes', priority: 1 },
      age,
    ],
  },
  ImpVMMigration: {
    kind: 'ImpVMMigration',
    plural: 'impvmmigrations',
    singular: 'impvmmigration',
    shortNames: ['ivmmig'],
    namespaced: true,
    spec: ImpVMMigrationSpec,
    status: ImpVMMigrationStatus,
    specRequired: true,
    columns: [
      { name: 'VM', type: 'string', jsonPath: '.spec.vmRef.name' },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      { name: 'Source', type: 'string', jsonPath: '.status.sourceNode' },
      { name: 'Target', type: 'string', jsonPath: '.status.targetNode' },
      { name: 'Downtime(ms)', type: 'integer', jsonPath: '.status.downtimeMilliseconds' },
      age,
    ],
  },
  ImpWarmPool: {
    kind: 'ImpWarmPool',
    plural: 'impwarmpools',
    singular: 'impwarmpool',
    shortNames: ['iwp'],
    namespaced: true,
    spec: ImpWarmPoolSpec,
    status: ImpWarmPoolStatus,
    specRequired: true,
    columns: [
      { name: 'Size', type: 'integer', jsonPath: '.spec.size' },
      { name: 'Ready', type: 'integer', jsonPath: '.status.ready' },
      { name: 'Total', type: 'integer', jsonPath: '.status.total' },
      age,
    ],
  },
  ImpVMRunnerPool: {
    kind: 'ImpVMRunnerPool',
    plural: 'impvmrunnerpools',
    singular: 'impvmrunnerpool',
    shortNames: ['irp'],
    namespaced: true,
    spec: ImpVMRunnerPoolSpec,
    status: ImpVMRunnerPoolStatus,
    specRequired: true,
    columns: [
      { name: 'Mode', type: 'string', jsonPath: '.spec.scaling.mode' },
      { name: 'Idle', type: 'integer', jsonPath: '.status.idle' },
      { name: 'Busy', type: 'integer', jsonPath: '.status.busy' },
      { name: 'Total', type: 'integer', jsonPath: '.status.total' },
      { name: 'Max', type: 'integer', jsonPath: '.spec.scaling.maxConcurrent', priority: 1 },
      age,
    ],
  },
  ImpVMClass: {
    kind: 'ImpVMClass',
    plural: 'impvmclasses',
    singular: 'impvmclass',
    shortNames: ['ivmclass'],
    namespaced: false,
    spec: ImpVMClassSpec,
    status: ImpVMClassStatus,
    specRequired: true,
    columns: [
      { name: 'vCPUs', type: 'integer', jsonPath: '.spec.vcpus' },
      { name: 'Memory', type: 'string', jsonPath: '.spec.memory' },
      { name: 'Disk', type: 'string', jsonPath: '.spec.disk' },
      age,
    ],
  },
  ImpVMTemplate: {
    kind: 'ImpVMTemplate',
    plural: 'impvmtemplates',
    singular: 'impvmtemplate',
    shortNames: ['ivmtpl'],
    namespaced: true,
    spec: ImpVMTemplateSpec,
    status: ImpVMTemplateStatus,
    specRequired: true,
    columns: [
      { name: 'Image', type: 'string', jsonPath: '.spec.image' },
      { name: 'Class', type: 'string', jsonPath: '.spec.classRef.name' },
      { name: 'Expire', type: 'string', jsonPath: '.spec.expireAfter' },
      age,
    ],
  },
  ClusterImpConfig: {
    kind: 'ClusterImpConfig',
    plural: 'clusterimpconfigs',
    singular: 'clusterimpconfig',
    shortNames: ['cic'],
    namespaced: false,
    spec: ClusterImpConfigSpec,
    status: ClusterImpConfigStatus,
    specRequired: false,
    columns: [age],
    rootRules: [clusterImpConfigNameRule],
  },
  ClusterImpNodeProfile: {
    kind: 'ClusterImpNodeProfile',
    plural: 'clusterimpnodeprofiles',
    singular: 'clusterimpnodeprofile',
    shortNames: ['cinp'],
    namespaced: false,
    spec: ClusterImpNodeProfileSpec,
    status: ClusterImpNodeProfileStatus,
    specRequired: false,
    columns: [
      { name: 'Hypervisor', type: 'string', jsonPath: '.spec.hypervisor.type' },
      { name: 'Nodes', type: 'integer', jsonPath: '.status.matchedNodes' },
      age,
    ],
  },
} satisfies Record<string, KindInfo>;

export type KindName = keyof typeof kinds;
export const allKinds: KindInfo[] = Object.values(kinds);
