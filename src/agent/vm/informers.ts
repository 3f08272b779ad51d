/** The caches the agent reads: VMs bound to its node, and what their specs refer to. */
import type { ImpVMClassSpec } from '../../api/class.ts';
import type { ClusterImpConfigSpec } from '../../api/config.ts';
import type { ImpNetworkSpec, ImpNetworkStatus } from '../../api/network.ts';
import type { ImpVMTemplateSpec } from '../../api/template.ts';
import type { KubeClient } from '../../kube/client.ts';
import { Informer } from '../../kube/informer.ts';
import type { KubeObject } from '../../kube/object.ts';
import { type Resource, resources } from '../../kube/resources.ts';
import type { Logger } from '../../log.ts';
import type { ImpVM } from './status.ts';

export type ImpNetwork = KubeObject<ImpNetworkSpec, ImpNetworkStatus>;

export interface Informers {
  vms: Informer<ImpVM>;
  networks: Informer<ImpNetwork>;
  templates: Informer<KubeObject<ImpVMTemplateSpec>>;
  classes: Informer<KubeObject<ImpVMClassSpec>>;
  configs: Informer<KubeObject<ClusterImpConfigSpec>>;
}

export function createInformers(client: KubeClient, log: Logger, node: string): Informers {
  const make = <T extends KubeObject>(resource: Resource, fieldSelector?: string) =>
    new Informer<T>({
      client,
      resource,
      log: log.child({ informer: resource.kind }),
      fieldSelector,
    });
  return {
    vms: make<ImpVM>(resources.ImpVM, `status.nodeName=${node}`),
    networks: make<ImpNetwork>(resources.ImpNetwork),
    templates: make(resources.ImpVMTemplate),
    classes: make(resources.ImpVMClass),
    configs: make(resources.ClusterImpConfig),
  };
}
