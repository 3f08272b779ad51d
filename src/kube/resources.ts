/** Where each kind Imp touches lives in the REST API. */
import { GROUP, type KindName, kinds, VERSION } from '../api/kinds.ts';

export interface Resource {
  group: string;
  version: string;
  kind: string;
  plural: string;
  namespaced: boolean;
}

export const apiVersionOf = (r: Resource) => (r.group ? `${r.group}/${r.version}` : r.version);

function imp(kind: KindName): Resource {
  const info = kinds[kind];
  return {
    group: GROUP,
    version: VERSION,
    kind: info.kind,
    plural: info.plural,
    namespaced: info.namespaced,
  };
}

export const resources = {
  ImpVM: imp('ImpVM'),
  ImpNetwork: imp('ImpNetwork'),
  ImpVMSnapshot: imp('ImpVMSnapshot'),
  ImpVMMigration: imp('ImpVMMigration'),
  ImpWarmPool: imp('ImpWarmPool'),
  ImpVMRunnerPool: imp('ImpVMRunnerPool'),
  ImpVMClass: imp('ImpVMClass'),
  ImpVMTemplate: imp('ImpVMTemplate'),
  ClusterImpConfig: imp('ClusterImpConfig'),
  ClusterImpNodeProfile: imp('ClusterImpNodeProfile'),
  Node: { group: '', version: 'v1', kind: 'Node', plural: 'nodes', namespaced: false },
  Namespace: {
    group: '',
    version: 'v1',
    kind: 'Namespace',
    plural: 'namespaces',
    namespaced: false,
  },
  ConfigMap: {
    group: '',
    version: 'v1',
    kind: 'ConfigMap',
    plural: 'configmaps',
    namespaced: true,
  },
  Secret: { group: '', version: 'v1', kind: 'Secret', plural: 'secrets', namespaced: true },
  Event: {
    group: 'events.k8s.io',
    version: 'v1',
    kind: 'Event',
    plural: 'events',
    namespaced: true,
  },
  Lease: {
    group: 'coordination.k8s.io',
    version: 'v1',
    kind: 'Lease',
    plural: 'leases',
    namespaced: true,
  },
  CustomResourceDefinition: {
    group: 'apiextensions.k8s.io',
    version: 'v1',
    kind: 'CustomResourceDefinition',
    plural: 'customresourcedefinitions',
    namespaced: false,
  },
} satisfies Record<string, Resource>;

/** The collection path, e.g. `/apis/imp.dev/v1alpha1/namespaces/default/impvms`. */
export function collectionPath(r: Resource, namespace?: string): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  const ns = r.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${r.plural}`;
}

/** The path of one object, optionally a subresource such as `status`. */
export function objectPath(
  r: Resource,
  name: string,
  namespace?: string,
  subresource?: string,
): string {
  const path = `${collectionPath(r, namespace)}/${encodeURIComponent(name)}`;
  return subresource ? `${path}/${subresource}` : path;
}
