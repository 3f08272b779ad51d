/** `imp console VM`: the guest's serial console log, optionally followed. */
import { request } from 'node:http';
import { KubeClient } from '../kube/client.ts';
import { defaultNamespace, parse, UsageError } from './args.ts';
import { agentFor } from './reach.ts';

export const consoleHelp = `imp console VM [flags]
  -n, --namespace NS   the VM's namespace (default: default)
  -f, --follow         keep printing what the guest writes
  --kubeconfig PATH    kubeconfig (default: $KUBECONFIG, then ~/.kube/config)`;

export async function runConsole(argv: string[]): Promise<void> {
  const { values, positionals } = parse(
    argv,
    {
      namespace: { type: 'string', short: 'n' },
      follow: { type: 'boolean', short: 'f' },
      kubeconfig: { type: 'string' },
      'system-namespace': { type: 'string' },
    },
    true,
  );
  const [vm] = positionals;
  if (!vm) throw new UsageError(`usage: ${consoleHelp.split('\n')[0]}`);
  const namespace = values.namespace ?? 'default';
  const client = KubeClient.load(values.kubeconfig);
  const { endpoint } = await agentFor(
    client,
    namespace,
    vm,
    values['system-namespace'] ?? defaultNamespace(),
  );
  client.close();
  const host = endpoint.slice(0, endpoint.lastIndexOf(':'));
  const port = Number(endpoint.split(':').pop());
  const path = `/console/${encodeURIComponent(namespace)}/${encodeURIComponent(vm)}${
    values.follow ? '?follow=1' : ''
  }`;
  await new Promise<void>((resolve, reject) => {
    const req = request({ host, port, path }, (res) => {
      if (res.statusCode !== 200) {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => reject(new Error(`agent answered ${res.statusCode}: ${body}`)));
        return;
      }
      res.pipe(process.stdout);
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end();
  });
}
