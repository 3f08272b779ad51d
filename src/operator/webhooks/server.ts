/**
 * The admission webhook server (HTTPS): validation for ImpVM, ImpVMClass and ImpVMTemplate.
 * It runs on every operator replica, leader or not, since the API server may call any.
 */
import { readFile } from 'node:fs/promises';
import type { Server as HttpsServer } from 'node:https';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from '../../log.ts';
import {
  checkClass,
  checkVM,
  checkWorkload,
  type FieldProblem,
  formatProblems,
} from './validate.ts';

interface AdmissionRequest {
  uid: string;
  kind: { kind: string };
  operation: string;
  name?: string;
  object?: { metadata?: { name?: string }; spec?: unknown; status?: unknown };
  oldObject?: { spec?: unknown; status?: unknown };
}

interface AdmissionReview {
  apiVersion: string;
  kind: 'AdmissionReview';
  request?: AdmissionRequest;
}

export const webhookPaths = {
  ImpVM: '/validate/impvm',
  ImpVMClass: '/validate/impvmclass',
  ImpVMTemplate: '/validate/impvmtemplate',
} as const;

type Check = (request: AdmissionRequest) => FieldProblem[];

const checks: Record<keyof typeof webhookPaths, Check> = {
  // biome-ignore lint/suspicious/noExplicitAny: admission objects are untyped JSON
  ImpVM: (r) => checkVM((r.object?.spec ?? {}) as any, r.oldObject as any),
  // biome-ignore lint/suspicious/noExplicitAny: admission objects are untyped JSON
  ImpVMClass: (r) => checkClass((r.object?.spec ?? {}) as any),
  // biome-ignore lint/suspicious/noExplicitAny: admission objects are untyped JSON
  ImpVMTemplate: (r) => checkWorkload((r.object?.spec ?? {}) as any),
};

export interface WebhookServerOptions {
  host: string;
  port: number;
  cert: string | Buffer;
  key: string | Buffer;
  log: Logger;
  /**
   * Where `tls.crt` and `tls.key` are renewed in place (cert-manager's Secret volume): read
   * again every `intervalMs` (default a minute) and served from then on, without a restart.
   */
  reloadFrom?: { dir: string; intervalMs?: number };
}

/** Reads `tls.crt` and `tls.key` from `dir`; undefined unless both are there. */
export async function readCertificatePair(
  dir: string,
): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  const [cert, key] = await Promise.all(
    ['tls.crt', 'tls.key'].map((f) => readFile(join(dir, f)).catch(() => undefined)),
  );
  return cert && key ? { cert, key } : undefined;
}

function reloadCertificates(
  app: FastifyInstance,
  options: WebhookServerOptions & { reloadFrom: { dir: string; intervalMs?: number } },
): void {
  const { dir, intervalMs = 60_000 } = options.reloadFrom;
  let served = Buffer.concat([Buffer.from(options.cert), Buffer.from(options.key)]);
  const timer = setInterval(async () => {
    const pair = await readCertificatePair(dir);
    if (!pair || Buffer.concat([pair.cert, pair.key]).equals(served)) return;
    try {
      (app.server as HttpsServer).setSecureContext(pair);
      served = Buffer.concat([pair.cert, pair.key]);
      options.log.info({ dir }, 'webhook certificate reloaded');
    } catch (err) {
      // A pair caught half-renewed (new certificate, old key) is tried again next time.
      options.log.warn({ err, dir }, 'webhook certificate not reloaded');
    }
  }, intervalMs);
  timer.unref();
  app.addHook('onClose', async () => clearInterval(timer));
}

export async function startWebhookServer(options: WebhookServerOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, https: { cert: options.cert, key: options.key } });
  if (options.reloadFrom) reloadCertificates(app, { ...options, reloadFrom: options.reloadFrom });
  for (const [kind, path] of Object.entries(webhookPaths) as [
    keyof typeof webhookPaths,
    string,
  ][]) {
    app.post(path, async (req) => {
      const review = req.body as AdmissionReview;
      const request = review.request;
      if (!request) return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' };
      let problems: FieldProblem[];
      try {
        // An update that leaves the spec alone (finalizers, labels) is never refused:
        // an object admitted under older rules must still be deletable.
        const specUnchanged =
          request.operation === 'UPDATE' &&
          JSON.stringify(request.object?.spec) === JSON.stringify(request.oldObject?.spec);
        problems = request.operation === 'DELETE' || specUnchanged ? [] : checks[kind](request);
      } catch (err) {
        options.log.error({ err, kind }, 'admission check failed');
        problems = [{ field: 'spec', message: `could not be checked: ${(err as Error).message}` }];
      }
      const name = request.object?.metadata?.name ?? request.name ?? '';
      return {
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        response: {
          uid: request.uid,
          allowed: problems.length === 0,
          ...(problems.length
            ? {
                status: {
                  code: 422,
                  reason: 'Invalid',
                  message: formatProblems(kind, name, problems),
                },
              }
            : {}),
        },
      };
    });
  }
  app.get('/healthz', async () => 'ok');
  await app.listen({ host: options.host, port: options.port });
  return app;
}
