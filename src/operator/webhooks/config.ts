/** The ValidatingWebhookConfiguration that points the API server at the webhook server. */
import { GROUP, kinds, VERSION } from '../../api/kinds.ts';
import { webhookPaths } from './server.ts';

export type WebhookTarget =
  | { url: string; caBundle: string }
  | { service: { namespace: string; name: string; port: number }; caBundle?: string };

export const WEBHOOK_CONFIGURATION_NAME = 'imp-validation';

export function validatingWebhookConfiguration(target: WebhookTarget) {
  const entries = Object.entries(webhookPaths) as [keyof typeof webhookPaths, string][];
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name: WEBHOOK_CONFIGURATION_NAME },
    webhooks: entries.map(([kind, path]) => ({
      name: `${kinds[kind].singular}.validate.${GROUP}`,
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      failurePolicy: 'Fail',
      timeoutSeconds: 10,
      clientConfig:
        'url' in target
          ? { url: `${target.url}${path}`, caBundle: target.caBundle }
          : {
              service: { ...target.service, path },
              ...(target.caBundle ? { caBundle: target.caBundle } : {}),
            },
      rules: [
        {
          apiGroups: [GROUP],
          apiVersions: [VERSION],
          operations: ['CREATE', 'UPDATE'],
          resources: [kinds[kind].plural],
        },
      ],
    })),
  };
}
