/**
 * The effective spec of a VM: its own fields over its template's, over its class, over the
 * cluster defaults. The operator schedules from it and the agent boots from it, so both
 * call this one function.
 */
import type { ImpVMClassSpec } from './class.ts';
import type { ClusterImpConfigSpec } from './config.ts';
import type { ImpVMTemplateSpec } from './template.ts';
import { durationMs, MiB, quantityBytes } from './units.ts';
import type { ImpVMSpec } from './vm.ts';

/** Sizing used when neither the VM, its template, its class nor the defaults say. */
export const fallbackSizing = { vcpus: 1, memoryMiB: 256, diskMiB: 1024 };

export interface EffectiveSpec {
  image: string;
  imagePullSecrets: string[];
  className: string | undefined;
  networkName: string | undefined;
  vcpus: number;
  memoryMiB: number;
  diskMiB: number;
  command: string[] | undefined;
  args: string[] | undefined;
  workingDir: string | undefined;
  user: string | undefined;
  env: NonNullable<ImpVMSpec['env']>;
  nodeSelector: Record<string, string>;
  tolerations: NonNullable<ImpVMSpec['tolerations']>;
  restartPolicy: 'Always' | 'OnFailure' | 'Never';
  kernel: ImpVMClassSpec['kernel'];
  hypervisor: ImpVMClassSpec['hypervisor'];
}

export interface EffectiveInputs {
  vm: ImpVMSpec;
  template?: ImpVMTemplateSpec;
  vmClass?: ImpVMClassSpec;
  config?: ClusterImpConfigSpec;
}

/** Which class a VM uses, before the class object is read. */
export function className(inputs: Omit<EffectiveInputs, 'vmClass'>): string | undefined {
  const { vm, template, config } = inputs;
  return vm.classRef?.name ?? template?.classRef?.name ?? config?.defaults?.classRef?.name;
}

export function resolveSpec(inputs: EffectiveInputs): EffectiveSpec {
  const { vm, template, vmClass, config } = inputs;
  const defaults = config?.defaults;
  const pick = <K extends keyof ImpVMTemplateSpec>(key: K) => vm[key] ?? template?.[key];
  const resources = { ...defaults?.resources, ...template?.resources, ...vm.resources };
  const memory = resources.memory ?? vmClass?.memory;
  const disk = resources.disk ?? vmClass?.disk;
  return {
    image: pick('image') ?? '',
    imagePullSecrets: (pick('imagePullSecrets') ?? []).map((s) => s.name),
    className: className(inputs),
    networkName: pick('networkRef')?.name,
    vcpus: resources.vcpus ?? vmClass?.vcpus ?? fallbackSizing.vcpus,
    // Whole MiB, rounded up: VMMs and disks are sized in MiB.
    memoryMiB:
      memory === undefined ? fallbackSizing.memoryMiB : Math.ceil(quantityBytes(memory) / MiB),
    diskMiB: disk === undefined ? fallbackSizing.diskMiB : Math.ceil(quantityBytes(disk) / MiB),
    command: pick('command'),
    args: pick('args'),
    workingDir: pick('workingDir'),
    user: pick('user'),
    env: mergeEnv(template?.env, vm.env),
    nodeSelector: { ...template?.nodeSelector, ...vm.nodeSelector },
    tolerations: [...(template?.tolerations ?? []), ...(vm.tolerations ?? [])],
    restartPolicy: pick('restartPolicy') ?? defaults?.restartPolicy ?? 'Always',
    kernel: vmClass?.kernel,
    hypervisor: vmClass?.hypervisor,
  };
}

function mergeEnv(base: ImpVMSpec['env'], overlay: ImpVMSpec['env']) {
  const byName = new Map((base ?? []).map((e) => [e.name, e]));
  for (const e of overlay ?? []) byName.set(e.name, e);
  return [...byName.values()];
}

export interface ExpirySources {
  vm: ImpVMSpec;
  /** expireAfter of the pool that created the VM, if one did. */
  pool?: string | number;
  template?: ImpVMTemplateSpec;
}

/**
 * How long after `runningAt` the VM expires, in milliseconds, or undefined when expiry is
 * disabled. The first source that sets a value wins (VM, then pool, then template), and an
 * explicit 0 there disables expiry even if a later source sets one.
 */
export function expireAfterMs(sources: ExpirySources): number | undefined {
  const value = sources.vm.expireAfter ?? sources.pool ?? sources.template?.expireAfter;
  const ms = durationMs(value);
  return ms ? ms : undefined;
}
