import { type Static, Type } from '@sinclair/typebox';
import { CommonStatus, NameRef, StringEnum, withRules } from './schema.ts';
import { Resources, RestartPolicy } from './workload.ts';

export const RegistryMirror = Type.Object({
  registry: Type.String({
    description: 'Registry host the images name, e.g. docker.io.',
    minLength: 1,
  }),
  endpoints: Type.Array(
    Type.String({ description: 'Mirror base URL, e.g. http://127.0.0.1:5000.', minLength: 1 }),
    { minItems: 1, description: 'Tried in order before the registry itself.' },
  ),
  insecure: Type.Optional(Type.Boolean({ description: 'Allow plain HTTP or unverified TLS.' })),
});

export const ClusterImpConfigSpec = Type.Object({
  defaults: Type.Optional(
    Type.Object(
      {
        classRef: Type.Optional(NameRef('ImpVMClass for VMs that name none.')),
        resources: Type.Optional(Resources),
        restartPolicy: Type.Optional(RestartPolicy),
      },
      { description: 'Lowest layer of the effective VM spec.' },
    ),
  ),
  registryMirrors: Type.Optional(
    Type.Array(RegistryMirror, {
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['registry'],
    }),
  ),
  scheduling: Type.Optional(
    Type.Object({
      policy: Type.Optional(
        StringEnum(['Spread', 'Pack'] as const, {
          description: 'Spread favours the emptiest node, Pack the fullest that fits.',
        }),
      ),
      deleteGracePeriodSeconds: Type.Optional(
        Type.Integer({
          description: 'How long a VM on a lost node waits before its deletion is forced.',
          minimum: 0,
        }),
      ),
    }),
  ),
  cilium: Type.Optional(
    Type.Object({
      detection: StringEnum(['Auto', 'Enabled', 'Disabled'] as const, {
        description: 'Auto looks for Cilium CRDs; Enabled and Disabled skip the check.',
      }),
    }),
  ),
  overlay: Type.Optional(
    Type.Object(
      {
        vniBase: Type.Optional(Type.Integer({ minimum: 1, maximum: 16777215 })),
        port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
        mtu: Type.Optional(Type.Integer({ minimum: 576, maximum: 9000 })),
      },
      { description: 'VXLAN fallback defaults.' },
    ),
  ),
});

export const ClusterImpConfigStatus = Type.Object({ ...CommonStatus });

/** One configuration for the cluster, always named `default`. */
export const clusterImpConfigNameRule = {
  rule: "self.metadata.name == 'default'",
  message: 'there is one ClusterImpConfig and it must be named default',
};

export type ClusterImpConfigSpec = Static<typeof ClusterImpConfigSpec>;
export type ClusterImpConfigStatus = Static<typeof ClusterImpConfigStatus>;

export const ClusterImpNodeProfileSpec = Type.Object({
  nodeSelector: Type.Optional(
    Type.Record(Type.String(), Type.String(), {
      description: 'Nodes this profile applies to; empty selects every node.',
    }),
  ),
  capacity: Type.Optional(
    Type.Object(
      {
        vcpus: Type.Optional(Type.Integer({ minimum: 1, description: 'CPUs given to VMs.' })),
        memory: Type.Optional(
          Type.String({ description: 'Memory given to VMs, e.g. 16Gi.', minLength: 1 }),
        ),
        maxVMs: Type.Optional(Type.Integer({ minimum: 0, description: 'VMs per node at most.' })),
      },
      { description: 'What VMs may use; defaults to what the node reports.' },
    ),
  ),
  overcommit: Type.Optional(
    Type.Object(
      {
        cpuPercent: Type.Optional(Type.Integer({ minimum: 100, maximum: 1600 })),
        memoryPercent: Type.Optional(Type.Integer({ minimum: 100, maximum: 400 })),
      },
      { description: 'Capacity multipliers in percent (100 = no overcommit).' },
    ),
  ),
  hypervisor: Type.Optional(
    withRules(
      Type.Object({
        type: StringEnum(['firecracker', 'qemu'] as const),
        accel: Type.Optional(
          StringEnum(['auto', 'kvm', 'tcg'] as const, {
            description: 'QEMU acceleration; auto uses KVM when a guest really runs under it.',
          }),
        ),
        firecrackerPath: Type.Optional(Type.String()),
        jailerPath: Type.Optional(Type.String()),
        qemuPath: Type.Optional(Type.String()),
        jailer: Type.Optional(
          Type.Object({
            enabled: Type.Boolean(),
            uid: Type.Optional(Type.Integer({ minimum: 0 })),
            gid: Type.Optional(Type.Integer({ minimum: 0 })),
            chrootBaseDir: Type.Optional(Type.String()),
          }),
        ),
      }),
      [
        {
          rule: "self.type == 'firecracker' || !has(self.jailer) || !self.jailer.enabled",
          message: 'the jailer applies only to firecracker',
          fieldPath: '.jailer',
        },
      ],
    ),
  ),
  kernel: Type.Optional(
    Type.Object({
      path: Type.Optional(Type.String({ description: 'Default guest kernel on the node.' })),
      image: Type.Optional(Type.String({ description: 'OCI artifact with the kernel.' })),
      initrdPath: Type.Optional(Type.String({ description: 'Initramfs that loads modules.' })),
      bootArgs: Type.Optional(Type.String()),
    }),
  ),
  stateDir: Type.Optional(
    Type.String({ description: 'Where the agent keeps VM state (default /var/lib/imp).' }),
  ),
});

export const ClusterImpNodeProfileStatus = Type.Object({
  ...CommonStatus,
  matchedNodes: Type.Optional(Type.Integer({ minimum: 0 })),
});

export type ClusterImpNodeProfileSpec = Static<typeof ClusterImpNodeProfileSpec>;
export type ClusterImpNodeProfileStatus = Static<typeof ClusterImpNodeProfileStatus>;
