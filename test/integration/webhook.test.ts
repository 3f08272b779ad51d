/**
 * The validating webhook, registered with a real API server over HTTPS (self-signed CA):
 * the server calls it and refuses what it rejects, with messages that name the field.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import type { KubeClient } from '../../src/kube/client.ts';
import type { KubeObject } from '../../src/kube/object.ts';
import { makeServingCertificate } from '../../src/local/certs.ts';
import type { ControlPlane } from '../../src/local/controlplane.ts';
import { freePort } from '../../src/local/ports.ts';
import { validatingWebhookConfiguration } from '../../src/operator/webhooks/config.ts';
import { readCertificatePair, startWebhookServer } from '../../src/operator/webhooks/server.ts';
import { kubectl, startPlaneWithCrds } from '../support/cluster.ts';
import { clientFor, testLogger } from '../support/operator.ts';

let plane: ControlPlane;
let client: KubeClient;
let server: FastifyInstance;

before(async () => {
  plane = await startPlaneWithCrds();
  client = clientFor(plane);
  const cert = await makeServingCertificate({ dns: ['localhost'], ips: ['127.0.0.1'] });
  const port = await freePort();
  server = await startWebhookServer({
    host: '127.0.0.1',
    port,
    cert: cert.certPem,
    key: cert.keyPem,
    log: testLogger('webhook'),
  });
  const config = validatingWebhookConfiguration({
    url: `https://127.0.0.1:${port}`,
    caBundle: Buffer.from(cert.caPem).toString('base64'),
  });
  await client.request({
    method: 'POST',
    path: '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations',
    body: config,
  });
});

after(async () => {
  await server?.close();
  client?.close();
  await plane?.stop();
});

async function refused(manifest: string): Promise<string> {
  // The API server picks up a new webhook configuration within a moment; retry briefly.
  for (let attempt = 0; ; attempt++) {
    const result = await kubectl(plane, ['apply', '-f', '-'], manifest);
    if (result.code !== 0) return result.stderr;
    await kubectl(plane, ['delete', '-f', '-', '--wait=false'], manifest);
    if (attempt > 20) assert.fail(`the API server accepted:\n${manifest}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('validating webhook', () => {
  it('refuses an ImpVM with a malformed image and a bad env entry', async () => {
    const err = await refused(`apiVersion: imp.dev/v1alpha1
kind: ImpVM
metadata: {name: bad-image, namespace: default}
spec:
  image: "nginx:"
  env: [{name: A, value: "1", valueFrom: {secretKeyRef: {name: s, key: k}}}]`);
    assert.match(err, /admission webhook "impvm.validate.imp.dev" denied the request/);
    assert.match(err, /spec\.image: invalid image reference "nginx:"/);
    assert.match(err, /spec\.env\[0\]: set value or valueFrom, not both/);
  });

  it('refuses an ImpVMClass with too little memory and reserved boot arguments', async () => {
    const err = await refused(`apiVersion: imp.dev/v1alpha1
kind: ImpVMClass
metadata: {name: tiny}
spec:
  vcpus: 1
  memory: 16Mi
  kernel: {bootArgs: "quiet imp.ip=1.2.3.4/24"}`);
    assert.match(err, /spec\.memory: must be at least 64Mi/);
    assert.match(err, /spec\.kernel\.bootArgs: "imp\.ip=" is set by Imp/);
  });

  it('refuses an ImpVMTemplate with an invalid variable name', async () => {
    const err = await refused(`apiVersion: imp.dev/v1alpha1
kind: ImpVMTemplate
metadata: {name: bad-tpl, namespace: default}
spec:
  image: busybox
  env: [{name: "1BAD", value: x}]`);
    assert.match(err, /spec\.env\[0\]\.name: "1BAD" is not a valid variable name/);
  });

  it('refuses changing the image of a bound VM, and accepts valid objects', async () => {
    const vm = await client.create<KubeObject>(
      { group: 'imp.dev', version: 'v1alpha1', kind: 'ImpVM', plural: 'impvms', namespaced: true },
      {
        apiVersion: 'imp.dev/v1alpha1',
        kind: 'ImpVM',
        metadata: { name: 'bound', namespace: 'default' },
        spec: { image: 'docker.io/library/nginx:1.27-alpine' },
      },
    );
    assert.ok(vm.metadata.uid);
    await kubectl(plane, [
      'patch',
      'impvm',
      'bound',
      '-n',
      'default',
      '--subresource=status',
      '--type=merge',
      '-p',
      '{"status":{"nodeName":"node-a"}}',
    ]);
    const result = await kubectl(plane, [
      'patch',
      'impvm',
      'bound',
      '-n',
      'default',
      '--type=merge',
      '-p',
      '{"spec":{"image":"docker.io/library/nginx:1.28"}}',
    ]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /spec\.image: cannot change once the VM is bound to node node-a/);
  });
});

describe('webhook certificate', () => {
  /** The SHA-256 fingerprint of the certificate the server presents now. */
  function presented(port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
        resolve(socket.getPeerCertificate().fingerprint256);
        socket.end();
      });
      socket.on('error', reject);
    });
  }

  it('serves a certificate renewed in place without a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imp-webhook-cert-'));
    const names = { dns: ['localhost'], ips: ['127.0.0.1'] };
    const write = async (c: { certPem: string; keyPem: string }) => {
      await writeFile(join(dir, 'tls.crt'), c.certPem);
      await writeFile(join(dir, 'tls.key'), c.keyPem);
    };
    const first = await makeServingCertificate(names);
    await write(first);
    const pair = await readCertificatePair(dir);
    assert.ok(pair, 'the pair just written is read back');
    const port = await freePort();
    const renewing = await startWebhookServer({
      host: '127.0.0.1',
      port,
      ...pair,
      log: testLogger('webhook'),
      reloadFrom: { dir, intervalMs: 100 },
    });
    try {
      const before = await presented(port);
      await write(await makeServingCertificate(names));
      let now = before;
      for (let i = 0; i < 100 && now === before; i++) {
        await new Promise((r) => setTimeout(r, 100));
        now = await presented(port);
      }
      assert.notEqual(now, before, 'the renewed certificate is served');
    } finally {
      await renewing.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
