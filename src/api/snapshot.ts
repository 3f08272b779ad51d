import { type Static, Type } from '@sinclair/typebox';
import { CommonStatus, NameRef, StringEnum } from './schema.ts';

export const ImpVMSnapshotSpec = Type.Object({
  vmRef: NameRef('The ImpVM in the same namespace to snapshot.'),
  storage: Type.Optional(
    Type.Object(
      {
        type: StringEnum(['Node', 'OCI'] as const, {
          description: 'Node keeps the files in the agent state dir; OCI pushes an artifact.',
        }),
        repository: Type.Optional(
          Type.String({ description: 'OCI repository for type OCI, e.g. registry/team/snaps.' }),
        ),
      },
      {
        description: 'Where the snapshot files live.',
        'x-kubernetes-validations': [
          {
            rule: "self.type != 'OCI' || has(self.repository)",
            message: 'storage.repository is required when storage.type is OCI',
            fieldPath: '.repository',
          },
        ],
      },
    ),
  ),
  resumeSource: Type.Optional(
    Type.Boolean({ description: 'Resume the source VM after the snapshot (default true).' }),
  ),
});

export const ImpVMSnapshotStatus = Type.Object({
  ...CommonStatus,
  phase: Type.Optional(StringEnum(['Pending', 'InProgress', 'Ready', 'Failed'] as const)),
  nodeName: Type.Optional(Type.String({ description: 'Node that holds or took the snapshot.' })),
  location: Type.Optional(Type.String({ description: 'Path on the node or OCI reference.' })),
  sizeBytes: Type.Optional(Type.Integer({ minimum: 0 })),
  imageDigest: Type.Optional(Type.String({ description: 'Root image the VM booted from.' })),
  createdAt: Type.Optional(Type.String({ format: 'date-time' })),
});

export type ImpVMSnapshotSpec = Static<typeof ImpVMSnapshotSpec>;
export type ImpVMSnapshotStatus = Static<typeof ImpVMSnapshotStatus>;
