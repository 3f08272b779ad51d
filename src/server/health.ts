/** The small HTTP server every Imp process runs: /metrics, /healthz and /readyz. */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

export interface HealthServerOptions {
  host: string;
  port: number;
  registry: Registry;
  /** /readyz answers 200 only while this returns true. */
  ready: () => boolean;
  /** Adds routes or server hooks before the server listens. */
  extend?: (app: FastifyInstance) => void;
}

export async function startHealthServer(options: HealthServerOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', options.registry.contentType);
    return await options.registry.metrics();
  });
  app.get('/healthz', async () => 'ok');
  app.get('/readyz', async (_req, reply) => {
    if (options.ready()) return 'ok';
    reply.code(503);
    return 'not ready';
  });
  options.extend?.(app);
  await app.listen({ host: options.host, port: options.port });
  return app;
}

/** The port a started server listens on (useful with port 0). */
export function listeningPort(app: FastifyInstance): number {
  const address = app.server.address();
  return typeof address === 'object' && address ? address.port : 0;
}
