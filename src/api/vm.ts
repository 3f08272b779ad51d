import { type Static, Type } from '@sinclair/typebox';
import { CommonStatus, NameRef, StringEnum, withRules } from './schema.ts';
import { WorkloadFields } from './workload.ts';

export const VMPhase = StringEnum(
  ['Pending', 'Scheduled', 'Provisioning', 'Running', 'Stopping', 'Succeeded', 'Failed'] as const,
  { description: 'One-word summary for people; conditions carry the detail.' },
);
export type VMPhase = Static<typeof VMPhase>;

export const ImpVMSpec = withRules(
  Type.Object({
    ...WorkloadFields,
    templateRef: Type.Optional(
      NameRef('An ImpVMTemplate in the same namespace whose fields this VM inherits.'),
    ),
    restoreFrom: Type.Optional(
      NameRef('An ImpVMSnapshot in the same namespace to resume instead of booting.'),
    ),
    hostname: Type.Optional(Type.String({ description: 'Guest hostname; defaults to the name.' })),
  }),
  [
    {
      rule: 'has(self.image) || has(self.templateRef) || has(self.restoreFrom)',
      message: 'spec.image is required unless spec.templateRef or spec.restoreFrom is set',
      fieldPath: '.image',
      reason: 'FieldValueRequired',
    },
  ],
);

export const ImpVMStatus = Type.Object({
  ...CommonStatus,
  phase: Type.Optional(VMPhase),
  nodeName: Type.Optional(Type.String({ description: 'Node the VM is bound to.' })),
  ip: Type.Optional(Type.String({ description: 'Address allocated from the network.' })),
  mac: Type.Optional(Type.String({ description: 'MAC address of the guest interface.' })),
  network: Type.Optional(Type.String({ description: 'ImpNetwork the address belongs to.' })),
  runningAt: Type.Optional(
    Type.String({
      format: 'date-time',
      description: 'When the guest first reported ready. Written once; expiry counts from it.',
    }),
  ),
  expiresAt: Type.Optional(
    Type.String({ format: 'date-time', description: 'When expiry will delete the VM.' }),
  ),
  hypervisor: Type.Optional(StringEnum(['firecracker', 'qemu'] as const)),
  vmmPid: Type.Optional(Type.Integer({ description: 'Process id of the VMM on the node.' })),
  bootDurationSeconds: Type.Optional(
    Type.Number({ description: 'Seconds from VMM start to guest ready.' }),
  ),
  resources: Type.Optional(
    Type.Object(
      {
        vcpus: Type.Integer({ minimum: 1 }),
        memoryMiB: Type.Integer({ minimum: 1 }),
        diskMiB: Type.Integer({ minimum: 1 }),
      },
      { description: 'The sizing the VM was scheduled with.' },
    ),
  ),
  imageDigest: Type.Optional(Type.String({ description: 'Digest of the image that booted.' })),
  exitCode: Type.Optional(Type.Integer({ description: 'Exit code of the last workload run.' })),
  restartCount: Type.Optional(Type.Integer({ minimum: 0 })),
});

export type ImpVMSpec = Static<typeof ImpVMSpec>;
export type ImpVMStatus = Static<typeof ImpVMStatus>;
