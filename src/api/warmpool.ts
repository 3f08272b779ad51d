import { type Static, Type } from '@sinclair/typebox';
import { CommonStatus, NameRef, withRules } from './schema.ts';
import { ExpireAfter } from './workload.ts';

export const ImpWarmPoolSpec = withRules(
  Type.Object({
    templateRef: Type.Optional(NameRef('ImpVMTemplate to boot pool members from.')),
    snapshotRef: Type.Optional(NameRef('ImpVMSnapshot to restore pool members from.')),
    size: Type.Integer({ description: 'Number of ready VMs to keep.', minimum: 0, maximum: 1000 }),
    expireAfter: Type.Optional(ExpireAfter()),
  }),
  [
    {
      rule: 'has(self.templateRef) != has(self.snapshotRef)',
      message: 'exactly one of spec.templateRef and spec.snapshotRef must be set',
    },
  ],
);

export const ImpWarmPoolStatus = Type.Object({
  ...CommonStatus,
  ready: Type.Optional(Type.Integer({ description: 'Members ready to be claimed.' })),
  total: Type.Optional(Type.Integer({ description: 'Members that exist.' })),
});

export type ImpWarmPoolSpec = Static<typeof ImpWarmPoolSpec>;
export type ImpWarmPoolStatus = Static<typeof ImpWarmPoolStatus>;
