/** Helpers for status conditions as the Kubernetes API conventions define them. */
import type { Static } from '@sinclair/typebox';
import { apiTime } from '../kube/time.ts';
import type { Condition as ConditionSchema } from './schema.ts';

export type Condition = Static<typeof ConditionSchema>;
export type ConditionStatus = Condition['status'];

export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  observedGeneration?: number;
}

/**
 * Returns `conditions` with `input` set. The transition time moves only when the status
 * changes, so it tells how long a condition has held.
 */
export function setCondition(
  conditions: Condition[] | undefined,
  input: ConditionInput,
  now: Date = new Date(),
): Condition[] {
  const list = [...(conditions ?? [])];
  const index = list.findIndex((c) => c.type === input.type);
  const previous = index >= 0 ? list[index] : undefined;
  const lastTransitionTime =
    previous && previous.status === input.status ? previous.lastTransitionTime : apiTime(now);
  const next: Condition = { ...input, lastTransitionTime };
  if (index >= 0) list[index] = next;
  else list.push(next);
  return list;
}

export function findCondition(
  conditions: Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isTrue(conditions: Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === 'True';
}
