/**
 * Schema building blocks shared by every Imp kind. Schemas are TypeBox values, so one
 * definition yields both the TypeScript type (`Static<typeof X>`) and the OpenAPI v3 schema
 * that goes into the CRD. Only constructs that Kubernetes accepts in a structural schema
 * are used here: no `$ref`, no `additionalProperties: false`, enums instead of unions.
 */
import { type TSchema, type TUnsafe, Type } from '@sinclair/typebox';

/** A CEL rule as Kubernetes stores it under `x-kubernetes-validations`. */
export interface CelRule {
  rule: string;
  message: string;
  /** Points the error at a child field, e.g. `.minIdle`. */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired';
}

/** A string restricted to the given values; the TypeScript type is their union. */
export function StringEnum<const T extends readonly string[]>(
  values: T,
  options: Record<string, unknown> = {},
): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

const durationPattern = '^(0|([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+)$';

/**
 * A Go-style duration such as `90s`, `45m` or `2h30m`, or the integer 0. `0` and an absent
 * field both mean "disabled"; any other value must be at least `minimum`.
 */
export function Duration(description: string, minimum?: string): TUnsafe<string | number> {
  const disabled = "self == '0' || duration(self) == duration('0s')";
  const rules: CelRule[] = minimum
    ? [
        {
          rule:
            `type(self) == int ? self == 0 : ` +
            `(${disabled} || duration(self) >= duration('${minimum}'))`,
          message: `must be 0 (disabled) or at least ${minimum}`,
        },
      ]
    : [
        {
          rule: `type(self) == int ? self == 0 : (${disabled} || duration(self) > duration('0s'))`,
          message: 'must be a duration such as 90s, 45m or 2h',
        },
      ];
  return Type.Unsafe<string | number>({
    description,
    anyOf: [{ type: 'integer' }, { type: 'string' }],
    'x-kubernetes-int-or-string': true,
    pattern: durationPattern,
    maxLength: 32,
    'x-kubernetes-validations': rules,
  });
}

// Kubernetes' quantity grammar: a signed decimal, then a binary or decimal suffix or exponent.
const decimal = '(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))';
const quantityPattern = `^(\\+|-)?${decimal}(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?${decimal}))?$`;

/** A Kubernetes resource quantity (`512Mi`, `2Gi`, `1`), stored as written. */
export function Quantity(description: string): TUnsafe<string | number> {
  return Type.Unsafe<string | number>({
    description,
    anyOf: [{ type: 'integer' }, { type: 'string' }],
    pattern: quantityPattern,
    'x-kubernetes-int-or-string': true,
  });
}

/** A reference to an object of a known kind in the same namespace (or cluster scope). */
export function NameRef(description: string) {
  return Type.Object(
    {
      name: Type.String({
        description: 'Name of the referenced object.',
        minLength: 1,
        maxLength: 253,
      }),
    },
    { description },
  );
}

/** A map of string to string, such as a node selector. */
export function StringMap(description: string) {
  return Type.Record(Type.String(), Type.String(), { description });
}

/** A condition as defined by the Kubernetes API conventions (metav1.Condition). */
export const Condition = Type.Object({
  type: Type.String({ description: 'CamelCase condition type, e.g. Ready.', maxLength: 316 }),
  status: StringEnum(['True', 'False', 'Unknown'] as const),
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  lastTransitionTime: Type.String({ format: 'date-time' }),
  reason: Type.String({
    description: 'CamelCase reason for the last transition.',
    maxLength: 1024,
  }),
  message: Type.String({ description: 'Human readable details.', maxLength: 32768 }),
});

/** `status.conditions`, merged by condition type under server-side apply. */
export const Conditions = Type.Array(Condition, {
  description: 'Observations of the object, one entry per condition type.',
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
});

/** Fields every status shares. */
export const CommonStatus = {
  observedGeneration: Type.Optional(
    Type.Integer({ description: 'The metadata.generation this status describes.', minimum: 0 }),
  ),
  conditions: Type.Optional(Conditions),
};

/** Attaches CEL rules to an object schema. */
export function withRules<T extends TSchema>(schema: T, rules: CelRule[]): T {
  (schema as Record<string, unknown>)['x-kubernetes-validations'] = rules;
  return schema;
}
