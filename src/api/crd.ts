/** Builds CustomResourceDefinition objects from the kind table. */
import type { TSchema } from '@sinclair/typebox';
import { GROUP, type KindInfo, VERSION } from './kinds.ts';

/** Schema keywords TypeBox may emit that a structural CRD schema must not carry. */
const droppedKeys = new Set(['$id', '$schema', 'additionalProperties', 'patternProperties']);

/**
 * Converts a TypeBox schema into plain OpenAPI v3 as Kubernetes wants it. TypeBox records
 * records (`Type.Record`) as patternProperties; Kubernetes spells a map as
 * `additionalProperties` with the value schema.
 */
export function toOpenApi(schema: TSchema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (droppedKeys.has(key)) continue;
    if (key === 'properties') {
      out.properties = Object.fromEntries(
        Object.entries(value as Record<string, TSchema>).map(([k, v]) => [k, toOpenApi(v)]),
      );
    } else if (key === 'items' || key === 'not') {
      out[key] = toOpenApi(value as TSchema);
    } else if (key === 'anyOf' || key === 'allOf' || key === 'oneOf') {
      out[key] = (value as TSchema[]).map(toOpenApi);
    } else {
      out[key] = value;
    }
  }
  const patterns = (schema as { patternProperties?: Record<string, TSchema> }).patternProperties;
  if (patterns) {
    const [valueSchema] = Object.values(patterns);
    if (valueSchema) out.additionalProperties = toOpenApi(valueSchema);
  }
  return out;
}

export function crdName(info: KindInfo): string {
  return `${info.plural}.${GROUP}`;
}

/** The CustomResourceDefinition for one kind, ready to serialise or apply. */
export function buildCrd(info: KindInfo): Record<string, unknown> {
  const root: Record<string, unknown> = {
    type: 'object',
    description: `${info.kind} is an imp.dev resource.`,
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: { type: 'object' },
      spec: toOpenApi(info.spec),
      status: toOpenApi(info.status),
    },
    ...(info.specRequired ? { required: ['spec'] } : {}),
    ...(info.rootRules ? { 'x-kubernetes-validations': info.rootRules } : {}),
  };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: crdName(info) },
    spec: {
      group: GROUP,
      names: {
        kind: info.kind,
        listKind: `${info.kind}List`,
        plural: info.plural,
        singular: info.singular,
        shortNames: info.shortNames,
        categories: ['imp'],
      },
      scope: info.namespaced ? 'Namespaced' : 'Cluster',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: info.columns,
          ...(info.selectableFields
            ? { selectableFields: info.selectableFields.map((jsonPath) => ({ jsonPath })) }
            : {}),
          schema: { openAPIV3Schema: root },
        },
      ],
    },
  };
}
