import { type Static, Type } from '@sinclair/typebox';
import { CommonStatus, NameRef, StringEnum, withRules } from './schema.ts';

const ipv4Rule = (field: string) => ({
  rule: 'isIP(self) && ip(self).family() == 4',
  message: `${field} must be an IPv4 address`,
});

export const ImpNetworkSpec = withRules(
  Type.Object({
    subnet: Type.String({
      description: 'IPv4 range for VM addresses in CIDR form, e.g. 192.168.100.0/24.',
      maxLength: 18,
      'x-kubernetes-validations': [
        {
          rule: 'isCIDR(self) && cidr(self).ip().family() == 4',
          message: 'must be a valid IPv4 CIDR such as 192.168.100.0/24',
        },
        {
          rule: '!isCIDR(self) || cidr(self).masked() == cidr(self)',
          message: 'must name the network address (host bits zero), e.g. 10.0.0.0/24',
        },
        {
          rule:
            '!isCIDR(self) || ' +
            '(cidr(self).prefixLength() >= 8 && cidr(self).prefixLength() <= 29)',
          message: 'prefix length must be between /8 and /29',
        },
      ],
    }),
    gateway: Type.Optional(
      Type.String({
        description: 'Gateway address on the node bridge. Defaults to the first host address.',
        maxLength: 15,
        'x-kubernetes-validations': [ipv4Rule('gateway')],
      }),
    ),
    nat: Type.Optional(
      Type.Object(
        {
          enabled: Type.Boolean({ description: 'Masquerade VM traffic leaving the node.' }),
        },
        { description: 'Outbound address translation.' },
      ),
    ),
    dns: Type.Optional(
      Type.Object(
        {
          servers: Type.Optional(
            Type.Array(
              Type.String({ maxLength: 15, 'x-kubernetes-validations': [ipv4Rule('server')] }),
              { maxItems: 3, description: 'Resolvers written to the guest resolv.conf.' },
            ),
          ),
          searches: Type.Optional(
            Type.Array(Type.String(), { maxItems: 6, description: 'Search domains.' }),
          ),
        },
        { description: 'DNS settings handed to guests.' },
      ),
    ),
    isolation: Type.Optional(
      Type.Object(
        {
          blockMetadata: Type.Optional(
            Type.Boolean({ description: 'Drop guest traffic to 169.254.169.254 (default true).' }),
          ),
          blockNode: Type.Optional(
            Type.Boolean({
              description: 'Drop guest traffic to node-local services (default true).',
            }),
          ),
        },
        { description: 'What guests on this network may not reach.' },
      ),
    ),
    cilium: Type.Optional(
      Type.Object(
        {
          mode: StringEnum(['Auto', 'Enabled', 'Disabled'] as const, {
            description: 'Auto uses Cilium when its CRDs are present in the cluster.',
          }),
        },
        { description: 'Cilium integration for cross-node traffic and policy.' },
      ),
    ),
    ipam: Type.Optional(
      Type.Object({
        cilium: Type.Optional(
          Type.Object({
            poolRef: NameRef('The CiliumPodIPPool that hands out VM addresses.'),
          }),
        ),
      }),
    ),
    vxlan: Type.Optional(
      Type.Object(
        {
          vni: Type.Optional(Type.Integer({ minimum: 1, maximum: 16777215 })),
          port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
          mtu: Type.Optional(Type.Integer({ minimum: 576, maximum: 9000 })),
        },
        { description: 'Overlay settings used when Cilium is not in charge.' },
      ),
    ),
  }),
  [
    {
      rule:
        '!has(self.gateway) || !isCIDR(self.subnet) || !isIP(self.gateway) || ' +
        'cidr(self.subnet).containsIP(self.gateway)',
      message: 'spec.gateway must lie inside spec.subnet',
      fieldPath: '.gateway',
    },
    {
      rule: '!has(self.subnet) || self.subnet == oldSelf.subnet',
      message: 'spec.subnet is immutable',
      fieldPath: '.subnet',
    },
  ],
);

export const ImpNetworkStatus = Type.Object({
  ...CommonStatus,
  gateway: Type.Optional(Type.String({ description: 'Effective gateway address.' })),
  total: Type.Optional(Type.Integer({ description: 'Addresses VMs can use.' })),
  allocated: Type.Optional(Type.Integer({ description: 'Addresses held by VMs.' })),
  free: Type.Optional(Type.Integer({ description: 'Addresses still free.' })),
  allocations: Type.Optional(
    Type.Record(Type.String(), Type.String(), {
      description: 'Address to holder (namespace/name of the VM). Written by the operator.',
    }),
  ),
  overlay: Type.Optional(
    StringEnum(['cilium', 'vxlan'] as const, { description: 'How VMs reach other nodes.' }),
  ),
  ciliumDetected: Type.Optional(Type.Boolean()),
});

export type ImpNetworkSpec = Static<typeof ImpNetworkSpec>;
export type ImpNetworkStatus = Static<typeof ImpNetworkStatus>;
