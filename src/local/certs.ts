/**
 * A throwaway certificate authority and serving certificate (via the openssl command), for
 * the webhook server in tests and local mode. Clusters use cert-manager instead.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool } from '../agent/image/run.ts';

export interface ServingCertificate {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export async function makeServingCertificate(names: {
  dns: string[];
  ips: string[];
}): Promise<ServingCertificate> {
  const dir = await mkdtemp(join(tmpdir(), 'imp-certs-'));
  const run = (args: string[]) => runTool('openssl', args, { timeoutMs: 30_000, cwd: dir });
  try {
    await run([
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '30',
      '-subj',
      '/CN=imp-local-ca',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
    ]);
    const san = [...names.dns.map((d) => `DNS:${d}`), ...names.ips.map((i) => `IP:${i}`)];
    await writeFile(join(dir, 'ext.cnf'), `subjectAltName=${san.join(',')}\n`);
    await run([
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=${names.dns[0] ?? 'imp'}`,
      '-keyout',
      'tls.key',
      '-out',
      'tls.csr',
    ]);
    await run([
      'x509',
      '-req',
      '-in',
      'tls.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '30',
      '-extfile',
      'ext.cnf',
      '-out',
      'tls.crt',
    ]);
    const read = (file: string) => readFile(join(dir, file), 'utf8');
    return {
      caPem: await read('ca.crt'),
      certPem: await read('tls.crt'),
      keyPem: await read('tls.key'),
    };
  } catch (err) {
    throw new Error('creating a webhook serving certificate with openssl', { cause: err });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
