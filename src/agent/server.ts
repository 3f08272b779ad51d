/** The agent's HTTP server: health, metrics, VM tunnels and console streams. */
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../log.ts';
import { startHealthServer } from '../server/health.ts';
import type { Agent } from './agent.ts';
import { attachTunnels, streamConsole } from './tunnel.ts';

export async function startAgentServer(
  agent: Agent,
  bind: { host: string; port: number },
  log: Logger,
  netns?: string,
): Promise<FastifyInstance> {
  return await startHealthServer({
    ...bind,
    registry: agent.metrics.registry,
    ready: () => agent.ready,
    extend: (app) => {
      attachTunnels(app.server, {
        log,
        netns,
        vm: (ns, name) => agent.vm(ns, name),
        consolePath: (vm) => agent.consolePath(vm),
      });
      app.get<{ Params: { ns: string; vm: string }; Querystring: { follow?: string } }>(
        '/console/:ns/:vm',
        async (req, reply) => {
          const vm = agent.vm(req.params.ns, req.params.vm);
          const path = vm ? agent.consolePath(vm) : undefined;
          if (!vm || !path) {
            reply.code(404);
            return 'no such VM on this node\n';
          }
          reply.hijack();
          reply.raw.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
          const abort = new AbortController();
          req.raw.on('close', () => abort.abort());
          try {
            await streamConsole(
              path,
              (chunk) => reply.raw.write(chunk),
              Boolean(req.query.follow),
              abort.signal,
            );
          } catch (err) {
            // Headers are gone already: say it in the stream, and in the log with its cause.
            log.warn({ err, vm: `${req.params.ns}/${req.params.vm}` }, 'console stream failed');
            reply.raw.write(`\n[imp: console stream failed: ${(err as Error).message}]\n`);
          }
          reply.raw.end();
        },
      );
    },
  });
}
