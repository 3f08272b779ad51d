import { type Static, Type } from '@sinclair/typebox';
import { CommonStatus, Quantity, StringEnum } from './schema.ts';

export const Kernel = Type.Object(
  {
    path: Type.Optional(Type.String({ description: 'Kernel image path on the node.' })),
    image: Type.Optional(Type.String({ description: 'OCI artifact holding the kernel.' })),
    bootArgs: Type.Optional(
      Type.String({ description: 'Extra kernel command line, appended to what Imp sets.' }),
    ),
  },
  { description: 'Guest kernel; the node profile default applies when unset.' },
);

export const ImpVMClassSpec = Type.Object({
  vcpus: Type.Integer({ description: 'Virtual CPUs.', minimum: 1, maximum: 64, default: 1 }),
  memory: Quantity('Guest memory, e.g. 512Mi.'),
  disk: Type.Optional(Quantity('Writable root disk size, e.g. 2Gi.')),
  kernel: Type.Optional(Kernel),
  hypervisor: Type.Optional(
    StringEnum(['firecracker', 'qemu'] as const, {
      description: 'Required VMM; nodes whose profile uses another are skipped.',
    }),
  ),
});

export const ImpVMClassStatus = Type.Object({ ...CommonStatus });

export type ImpVMClassSpec = Static<typeof ImpVMClassSpec>;
export type ImpVMClassStatus = Static<typeof ImpVMClassStatus>;
