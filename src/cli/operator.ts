import { KubeClient } from '../kube/client.ts';
import { createLogger, type Logger } from '../log.ts';
import { Operator } from '../operator/operator.ts';
import { readCertificatePair, startWebhookServer } from '../operator/webhooks/server.ts';
import { startHealthServer } from '../server/health.ts';
import { defaultIdentity, defaultNamespace, hostPort, parse, UsageError } from './args.ts';

export const operatorHelp = `imp operator [flags]
  --kubeconfig PATH     kubeconfig (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)
  --namespace NS        namespace for leases (default $POD_NAMESPACE or imp-system)
  --id NAME             this replica's identity (default $POD_NAME or the hostname)
  --metrics-bind ADDR   /metrics, /healthz, /readyz (default 0.0.0.0:8080)
  --webhook-bind ADDR   admission webhooks over HTTPS (default 0.0.0.0:9443)
  --webhook-cert-dir D  holds tls.crt and tls.key (default /etc/imp/webhook); webhooks are
                        off when the directory has no certificate
  --workers N           reconcile workers per controller (default 8)
  --log-level LEVEL     debug, info, warn, error (default info)`;

export async function runOperator(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    kubeconfig: { type: 'string' },
    namespace: { type: 'string' },
    id: { type: 'string' },
    'metrics-bind': { type: 'string' },
    'webhook-bind': { type: 'string' },
    'webhook-cert-dir': { type: 'string' },
    workers: { type: 'string' },
    'log-level': { type: 'string' },
  });
  const log = createLogger({ name: 'operator', level: values['log-level'] });
  const bind = hostPort(values['metrics-bind'] ?? '0.0.0.0:8080', 'metrics-bind');
  const client = KubeClient.load(values.kubeconfig);
  const operator = new Operator({
    client,
    log,
    namespace: values.namespace ?? defaultNamespace(),
    identity: values.id ?? defaultIdentity(),
    workers: values.workers ? positiveInteger(values.workers, 'workers') : undefined,
  });
  let synced = false;
  const server = await startHealthServer({
    ...bind,
    registry: operator.metrics.registry,
    ready: () => synced,
  });
  const webhooks = await startWebhooks(
    values['webhook-cert-dir'] ?? '/etc/imp/webhook',
    hostPort(values['webhook-bind'] ?? '0.0.0.0:9443', 'webhook-bind'),
    log,
  );
  await operator.start();
  synced = true;
  log.info({ bind: `${bind.host}:${bind.port}` }, 'operator running');
  await untilSignal();
  log.info({}, 'shutting down');
  await operator.stop();
  await server.close();
  await webhooks?.close();
  client.close();
}

async function startWebhooks(certDir: string, bind: { host: string; port: number }, log: Logger) {
  const pair = await readCertificatePair(certDir);
  if (!pair) {
    log.warn({ certDir }, 'no webhook certificate found; admission webhooks are not served');
    return undefined;
  }
  return await startWebhookServer({
    ...bind,
    ...pair,
    log: log.child({ component: 'webhook' }),
    reloadFrom: { dir: certDir },
  });
}

function positiveInteger(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new UsageError(`--${flag} must be a positive whole number (got "${value}")`);
  }
  return n;
}

const stopSignals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Resolves on the first SIGINT, SIGTERM or SIGHUP (a closed terminal). */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      for (const s of stopSignals) process.off(s, on);
      resolve(signal);
    };
    for (const s of stopSignals) process.on(s, on);
  });
}
