/**
 * Checks that CEL in the CRDs cannot express: parsing image references and quantities,
 * environment names, reserved kernel arguments, and fields that may not change once a VM
 * is bound. Each problem names its field, as the API server does for schema errors.
 */
import { parseReference } from '../../agent/image/reference.ts';
import type { ImpVMClassSpec } from '../../api/class.ts';
import type { ImpVMTemplateSpec } from '../../api/template.ts';
import { MiB, quantityBytes } from '../../api/units.ts';
import type { ImpVMSpec, ImpVMStatus } from '../../api/vm.ts';

export interface FieldProblem {
  field: string;
  message: string;
}

const envName = /^[A-Za-z_][A-Za-z0-9_]*$/;
const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const labelKey =
  /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const MIN_MEMORY_MIB = 64;
const MIN_DISK_MIB = 64;

function checkSize(
  problems: FieldProblem[],
  field: string,
  value: string | number | undefined,
  minimumMiB: number,
): void {
  if (value === undefined) return;
  try {
    const mib = quantityBytes(value) / MiB;
    if (mib < minimumMiB) problems.push({ field, message: `must be at least ${minimumMiB}Mi` });
  } catch (err) {
    problems.push({ field, message: (err as Error).message });
  }
}

/** Problems in the fields VMs and templates share. */
export function checkWorkload(spec: ImpVMTemplateSpec, problems: FieldProblem[] = []) {
  if (spec.image !== undefined) {
    try {
      parseReference(spec.image);
    } catch (err) {
      problems.push({ field: 'spec.image', message: (err as Error).message });
    }
  }
  const seen = new Set<string>();
  spec.env?.forEach((entry, i) => {
    const field = `spec.env[${i}]`;
    if (!envName.test(entry.name)) {
      problems.push({
        field: `${field}.name`,
        message: `"${entry.name}" is not a valid variable name`,
      });
    }
    if (seen.has(entry.name)) {
      problems.push({ field: `${field}.name`, message: `"${entry.name}" is set twice` });
    }
    seen.add(entry.name);
    const sources = entry.valueFrom
      ? [entry.valueFrom.secretKeyRef, entry.valueFrom.configMapKeyRef].filter(Boolean).length
      : 0;
    if (entry.value !== undefined && entry.valueFrom) {
      problems.push({ field, message: 'set value or valueFrom, not both' });
    } else if (entry.valueFrom && sources !== 1) {
      problems.push({
        field: `${field}.valueFrom`,
        message: 'name exactly one of secretKeyRef and configMapKeyRef',
      });
    }
  });
  checkSize(problems, 'spec.resources.memory', spec.resources?.memory, MIN_MEMORY_MIB);
  checkSize(problems, 'spec.resources.disk', spec.resources?.disk, MIN_DISK_MIB);
  for (const key of Object.keys(spec.nodeSelector ?? {})) {
    if (!labelKey.test(key)) {
      problems.push({ field: `spec.nodeSelector`, message: `"${key}" is not a valid label key` });
    }
  }
  if (spec.command?.length === 0) {
    problems.push({ field: 'spec.command', message: 'must not be empty when set' });
  }
  return problems;
}

/** Fields whose change after binding would not reach a running VM. */
const fixedAfterBinding = [
  'image',
  'templateRef',
  'classRef',
  'networkRef',
  'resources',
  'restoreFrom',
] as const;

export function checkVM(
  spec: ImpVMSpec,
  old?: { spec?: ImpVMSpec; status?: ImpVMStatus },
): FieldProblem[] {
  const problems = checkWorkload(spec);
  if (spec.hostname !== undefined && !dnsLabel.test(spec.hostname)) {
    problems.push({ field: 'spec.hostname', message: 'must be a DNS label (a-z, 0-9, -)' });
  }
  if (old?.status?.nodeName) {
    for (const key of fixedAfterBinding) {
      if (JSON.stringify(spec[key]) !== JSON.stringify(old.spec?.[key])) {
        problems.push({
          field: `spec.${key}`,
          message:
            `cannot change once the VM is bound to node ${old.status.nodeName}; ` +
            'recreate the VM',
        });
      }
    }
  }
  return problems;
}

/** Kernel arguments Imp sets itself; a class must not override them. */
const reservedBootArgs = /(^|\s)(root|init|console|imp\.[a-z]+)=/;

export function checkClass(spec: ImpVMClassSpec): FieldProblem[] {
  const problems: FieldProblem[] = [];
  checkSize(problems, 'spec.memory', spec.memory, MIN_MEMORY_MIB);
  checkSize(problems, 'spec.disk', spec.disk, MIN_DISK_MIB);
  const kernel = spec.kernel;
  if (kernel?.path !== undefined && !kernel.path.startsWith('/')) {
    problems.push({ field: 'spec.kernel.path', message: 'must be an absolute path on the node' });
  }
  if (kernel?.path && kernel.image) {
    problems.push({ field: 'spec.kernel', message: 'set path or image, not both' });
  }
  const reserved = kernel?.bootArgs ? reservedBootArgs.exec(kernel.bootArgs) : null;
  if (reserved) {
    problems.push({
      field: 'spec.kernel.bootArgs',
      message: `"${reserved[2]}=" is set by Imp and cannot be overridden`,
    });
  }
  return problems;
}

export function formatProblems(kind: string, name: string, problems: FieldProblem[]): string {
  const list = problems.map((p) => `${p.field}: ${p.message}`).join('; ');
  return `${kind} "${name}" is invalid: ${list}`;
}
