/**
 * Everything that turns a bound VM into a bootable machine on this node: resolving its
 * effective spec, the image, the root disk, the network attachment and the VMM spec.
 */

import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { type EffectiveSpec, resolveSpec } from '../../api/effective.ts';
import type { KubeClient } from '../../kube/client.ts';
import type { KubeObject } from '../../kube/object.ts';
import { resources } from '../../kube/resources.ts';
import { type DockerConfigJson, mergeDockerConfigs, parseDockerConfigJson } from '../image/auth.ts';
import type { ImpNetwork, Informers } from './informers.ts';
import type { ImpVM } from './status.ts';

export class ProvisionError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ProvisionError';
    this.reason = reason;
  }
}

/** The effective spec, from the same layering the operator schedules with. */
export function effectiveSpec(vm: ImpVM, informers: Informers): EffectiveSpec {
  const ns = vm.metadata.namespace;
  const templateName = vm.spec?.templateRef?.name;
  const template = templateName ? informers.templates.get(`${ns}/${templateName}`) : undefined;
  if (templateName && !template) {
    throw new ProvisionError('TemplateNotFound', `ImpVMTemplate ${templateName} does not exist`);
  }
  const config = informers.configs.get('default')?.spec;
  const className =
    vm.spec?.classRef?.name ?? template?.spec?.classRef?.name ?? config?.defaults?.classRef?.name;
  const vmClass = className ? informers.classes.get(className) : undefined;
  if (className && !vmClass) {
    throw new ProvisionError('ClassNotFound', `ImpVMClass ${className} does not exist`);
  }
  return resolveSpec({
    vm: vm.spec ?? {},
    template: template?.spec,
    vmClass: vmClass?.spec,
    config,
  });
}

/** The ImpNetwork the operator gave the VM its address on. */
export function vmNetwork(vm: ImpVM, informers: Informers): ImpNetwork | undefined {
  const name = vm.status?.network;
  if (!name) return undefined;
  const network = informers.networks.get(`${vm.metadata.namespace}/${name}`);
  if (!network) {
    throw new ProvisionError('NetworkNotFound', `ImpNetwork ${name} does not exist`);
  }
  return network;
}

type Secret = KubeObject & { data?: Record<string, string>; type?: string };
type ConfigMap = KubeObject & { data?: Record<string, string> };

/** Registry credentials from the VM's image pull secrets. */
export async function pullAuth(
  client: KubeClient,
  namespace: string,
  names: string[],
): Promise<DockerConfigJson | undefined> {
  if (names.length === 0) return undefined;
  const configs: DockerConfigJson[] = [];
  for (const name of names) {
    let secret: Secret;
    try {
      secret = await client.get<Secret>(resources.Secret, name, namespace);
    } catch (err) {
      throw new ProvisionError('PullSecretMissing', `image pull secret ${name}: ${err}`, {
        cause: err,
      });
    }
    const raw = secret.data?.['.dockerconfigjson'];
    if (!raw) {
      throw new ProvisionError(
        'PullSecretInvalid',
        `image pull secret ${name} has no .dockerconfigjson key`,
      );
    }
    configs.push(parseDockerConfigJson(Buffer.from(raw, 'base64').toString('utf8'), name));
  }
  return mergeDockerConfigs(configs);
}

/** Looks up `valueFrom` references so the guest gets plain NAME=value pairs. */
export async function resolveEnv(
  client: KubeClient,
  namespace: string,
  env: EffectiveSpec['env'],
): Promise<{ name: string; value: string }[]> {
  const out: { name: string; value: string }[] = [];
  for (const entry of env) {
    if (entry.value !== undefined || !entry.valueFrom) {
      out.push({ name: entry.name, value: entry.value ?? '' });
      continue;
    }
    const ref = entry.valueFrom.secretKeyRef ?? entry.valueFrom.configMapKeyRef;
    if (!ref) continue;
    const isSecret = Boolean(entry.valueFrom.secretKeyRef);
    const what = `${isSecret ? 'Secret' : 'ConfigMap'} ${ref.name} key ${ref.key}`;
    let value: string | undefined;
    try {
      if (isSecret) {
        const secret = await client.get<Secret>(resources.Secret, ref.name, namespace);
        const raw = secret.data?.[ref.key];
        value = raw === undefined ? undefined : Buffer.from(raw, 'base64').toString('utf8');
      } else {
        const map = await client.get<ConfigMap>(resources.ConfigMap, ref.name, namespace);
        value = map.data?.[ref.key];
      }
    } catch (err) {
      if (!ref.optional) {
        throw new ProvisionError('EnvSourceMissing', `env ${entry.name}: ${what}: ${err}`, {
          cause: err,
        });
      }
    }
    if (value === undefined && !ref.optional) {
      throw new ProvisionError('EnvSourceMissing', `env ${entry.name}: ${what} does not exist`);
    }
    if (value !== undefined) out.push({ name: entry.name, value });
  }
  return out;
}

/** Short stable ids for names on the node (interface names are at most 15 characters). */
export function shortId(text: string, length = 10): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

export const diskPath = (vmDir: string) => join(vmDir, 'root.ext4');
export const runDir = (vmDir: string) => join(vmDir, 'run');
