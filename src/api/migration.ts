import { type Static, Type } from '@sinclair/typebox';
import { CommonStatus, NameRef, StringEnum } from './schema.ts';

export const ImpVMMigrationSpec = Type.Object({
  vmRef: NameRef('The ImpVM in the same namespace to move.'),
  targetNode: Type.Optional(
    Type.String({ description: 'Node to move to; the scheduler picks one when unset.' }),
  ),
});

export const ImpVMMigrationStatus = Type.Object({
  ...CommonStatus,
  phase: Type.Optional(
    StringEnum([
      'Pending',
      'Snapshotting',
      'Transferring',
      'Restoring',
      'Succeeded',
      'Failed',
    ] as const),
  ),
  sourceNode: Type.Optional(Type.String()),
  targetNode: Type.Optional(Type.String()),
  startedAt: Type.Optional(Type.String({ format: 'date-time' })),
  completedAt: Type.Optional(Type.String({ format: 'date-time' })),
  downtimeMilliseconds: Type.Optional(
    Type.Integer({ description: 'Time the guest was paused, from pause to resume.' }),
  ),
});

export type ImpVMMigrationSpec = Static<typeof ImpVMMigrationSpec>;
export type ImpVMMigrationStatus = Static<typeof ImpVMMigrationStatus>;
