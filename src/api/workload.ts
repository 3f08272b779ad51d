/**
 * Fields that describe what a VM runs. ImpVM, ImpVMTemplate and (through templates) the
 * pools share them, so the merge from template to VM is a field-by-field overlay.
 */
import { Type } from '@sinclair/typebox';
import { Duration, NameRef, Quantity, StringEnum, StringMap } from './schema.ts';

const KeyRef = (what: string) =>
  Type.Object(
    {
      name: Type.String({ description: `Name of the ${what}.`, minLength: 1 }),
      key: Type.String({ description: `Key within the ${what}.`, minLength: 1 }),
      optional: Type.Optional(Type.Boolean({ description: 'Tolerate a missing key.' })),
    },
    { description: `Selects a key of a ${what} in the VM's namespace.` },
  );

export const EnvVar = Type.Object({
  name: Type.String({ description: 'Variable name.', minLength: 1, maxLength: 256 }),
  value: Type.Optional(Type.String({ description: 'Literal value.' })),
  valueFrom: Type.Optional(
    Type.Object(
      {
        secretKeyRef: Type.Optional(KeyRef('Secret')),
        configMapKeyRef: Type.Optional(KeyRef('ConfigMap')),
      },
      { description: 'Take the value from a Secret or ConfigMap key.' },
    ),
  ),
});

export const Toleration = Type.Object(
  {
    key: Type.Optional(Type.String()),
    operator: Type.Optional(StringEnum(['Exists', 'Equal'] as const)),
    value: Type.Optional(Type.String()),
    effect: Type.Optional(StringEnum(['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const)),
  },
  { description: 'Lets the VM run on nodes whose taints match, as for Pods.' },
);

export const Resources = Type.Object(
  {
    vcpus: Type.Optional(Type.Integer({ description: 'Virtual CPUs.', minimum: 1, maximum: 64 })),
    memory: Type.Optional(Quantity('Guest memory, e.g. 512Mi.')),
    disk: Type.Optional(Quantity('Size of the writable root disk, e.g. 2Gi.')),
  },
  { description: 'Overrides the class sizing.' },
);

export const RestartPolicy = StringEnum(['Always', 'OnFailure', 'Never'] as const, {
  description: 'What the agent does when the workload exits or the VMM dies.',
});

export const ExpireAfter = () =>
  Duration('Delete the VM this long after it first ran. 0 or unset disables expiry.', '60s');

/** The workload fields, every one optional: templates and VMs both use them. */
export const WorkloadFields = {
  image: Type.Optional(
    Type.String({ description: 'OCI image whose filesystem becomes the root disk.', minLength: 1 }),
  ),
  imagePullSecrets: Type.Optional(
    Type.Array(NameRef('A Secret of type kubernetes.io/dockerconfigjson.'), {
      description: 'Credentials for pulling the image.',
    }),
  ),
  classRef: Type.Optional(NameRef('The ImpVMClass (cluster-scoped) that sizes the VM.')),
  networkRef: Type.Optional(NameRef('The ImpNetwork in the same namespace to attach to.')),
  resources: Type.Optional(Resources),
  command: Type.Optional(
    Type.Array(Type.String(), { description: "Replaces the image's entrypoint." }),
  ),
  args: Type.Optional(Type.Array(Type.String(), { description: "Replaces the image's command." })),
  workingDir: Type.Optional(
    Type.String({ description: "Replaces the image's working directory." }),
  ),
  user: Type.Optional(
    Type.String({ description: "Replaces the image's user (name or uid[:gid])." }),
  ),
  env: Type.Optional(
    Type.Array(EnvVar, {
      description: 'Environment for the workload, added to the image environment.',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['name'],
    }),
  ),
  expireAfter: Type.Optional(ExpireAfter()),
  nodeSelector: Type.Optional(StringMap('Only nodes with all these labels may run the VM.')),
  tolerations: Type.Optional(Type.Array(Toleration)),
  restartPolicy: Type.Optional(RestartPolicy),
};
