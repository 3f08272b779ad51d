import { type Static, Type } from '@sinclair/typebox';
import { CommonStatus } from './schema.ts';
import { WorkloadFields } from './workload.ts';

/** A template is a VM spec without identity; VMs and pools stamp it out. */
export const ImpVMTemplateSpec = Type.Object({ ...WorkloadFields });

export const ImpVMTemplateStatus = Type.Object({ ...CommonStatus });

export type ImpVMTemplateSpec = Static<typeof ImpVMTemplateSpec>;
export type ImpVMTemplateStatus = Static<typeof ImpVMTemplateStatus>;
