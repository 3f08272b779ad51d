import assert from 'node:assert/strict';
import { test } from 'node:test';
import { authKey, mergeDockerConfigs, parseDockerConfigJson, toSkopeoAuth } from './auth.ts';

test('pull secret keys become hosts, with Docker Hub as docker.io', () => {
  assert.equal(authKey('https://index.docker.io/v1/'), 'docker.io');
  assert.equal(authKey('registry.example.com'), 'registry.example.com');
  assert.equal(authKey('http://127.0.0.1:5000/v2/'), '127.0.0.1:5000');
  assert.equal(authKey('ghcr.io/org'), 'ghcr.io/org');
});

test('username and password become the auth field skopeo reads', () => {
  const converted = toSkopeoAuth({
    auths: {
      'https://index.docker.io/v1/': { username: 'user', password: 'pa:ss' },
      'ghcr.io': { auth: 'Zm9vOmJhcg==' },
      'empty.example.com': {},
    },
  });
  assert.deepEqual(converted, {
    auths: {
      'docker.io': { auth: Buffer.from('user:pa:ss').toString('base64') },
      'ghcr.io': { auth: 'Zm9vOmJhcg==' },
    },
  });
});

test('the first pull secret naming a registry wins, as in Kubernetes', () => {
  const merged = mergeDockerConfigs([
    { auths: { 'https://index.docker.io/v1/': { auth: 'first' } } },
    { auths: { 'docker.io': { auth: 'second' }, 'quay.io': { auth: 'third' } } },
  ]);
  assert.deepEqual(merged.auths, { 'docker.io': { auth: 'first' }, 'quay.io': { auth: 'third' } });
});

test('a malformed pull secret is named in the error', () => {
  assert.throws(() => parseDockerConfigJson('{', 'regcred'), /image pull secret regcred/);
  assert.throws(() => parseDockerConfigJson('[]', 'regcred'), /regcred is not a dockerconfigjson/);
  assert.deepEqual(parseDockerConfigJson('{"auths":{}}', 'regcred'), { auths: {} });
});
