import { type Static, Type } from '@sinclair/typebox';
import { CommonStatus, StringEnum, withRules } from './schema.ts';
import { ExpireAfter } from './workload.ts';

const Scope = withRules(
  Type.Object(
    {
      repo: Type.Optional(
        Type.String({ description: 'owner/name of a repository.', pattern: '^[^/\\s]+/[^/\\s]+$' }),
      ),
      org: Type.Optional(Type.String({ description: 'An organisation.', minLength: 1 })),
    },
    { description: 'Where runners register.' },
  ),
  [
    {
      rule: 'has(self.repo) != has(self.org)',
      message: 'set exactly one of scope.repo and scope.org',
    },
  ],
);

export const Scaling = withRules(
  Type.Object(
    {
      mode: StringEnum(['webhook', 'polling', 'hybrid'] as const, {
        description: 'How demand is learnt: workflow_job webhooks, API polling, or both.',
      }),
      minIdle: Type.Integer({
        description: 'Idle runners to keep ready.',
        minimum: 0,
        maximum: 1000,
      }),
      maxConcurrent: Type.Integer({
        description: 'Upper bound on runners (idle plus busy).',
        minimum: 1,
        maximum: 1000,
      }),
      scaleUpStep: Type.Integer({
        description: 'Most runners added per scaling decision.',
        minimum: 1,
        maximum: 100,
      }),
      cooldownSeconds: Type.Integer({
        description: 'Seconds between scale-down decisions.',
        minimum: 0,
        maximum: 86400,
      }),
    },
    { description: 'Explicit scaling intent; every field is required.' },
  ),
  [
    {
      rule: 'self.minIdle <= self.maxConcurrent',
      message: 'scaling.minIdle must not exceed scaling.maxConcurrent',
      fieldPath: '.minIdle',
    },
  ],
);

export const ImpVMRunnerPoolSpec = Type.Object({
  templateName: Type.String({
    description: 'ImpVMTemplate in the same namespace that runners boot from.',
    minLength: 1,
  }),
  expireAfter: Type.Optional(ExpireAfter()),
  platform: Type.Object({
    type: StringEnum(['github-actions'] as const),
    scope: Scope,
    credentialsSecret: Type.String({
      description: 'Secret holding a GitHub App (appId, installationId, privateKey) or a token.',
      minLength: 1,
    }),
    url: Type.Optional(Type.String({ description: 'GitHub Enterprise Server URL.' })),
    runnerGroup: Type.Optional(Type.String({ description: 'Runner group to register into.' })),
    labels: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), { description: 'Extra runner labels.' }),
    ),
    webhookSecret: Type.Optional(
      Type.String({ description: 'Secret with the webhook signing key (webhook, hybrid).' }),
    ),
  }),
  scaling: Scaling,
});

export const ImpVMRunnerPoolStatus = Type.Object({
  ...CommonStatus,
  idle: Type.Optional(Type.Integer({ minimum: 0 })),
  busy: Type.Optional(Type.Integer({ minimum: 0 })),
  total: Type.Optional(Type.Integer({ minimum: 0 })),
  lastScaleTime: Type.Optional(Type.String({ format: 'date-time' })),
});

export type ImpVMRunnerPoolSpec = Static<typeof ImpVMRunnerPoolSpec>;
export type ImpVMRunnerPoolStatus = Static<typeof ImpVMRunnerPoolStatus>;
