import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseReference } from './reference.ts';
import { parseMirrors, pullSources } from './sources.ts';

const nginx = parseReference('nginx:1.27-alpine');

test('mirrors come first, in order, then the registry itself', () => {
  const mirrors = parseMirrors([
    {
      registry: 'docker.io',
      endpoints: ['http://127.0.0.1:5000', 'https://mirror.example.com'],
      insecure: true,
    },
    { registry: 'quay.io', endpoints: ['https://quay-mirror.example.com'] },
  ]);
  assert.deepEqual(pullSources(nginx, mirrors, true), [
    {
      label: 'mirror http://127.0.0.1:5000',
      location: '127.0.0.1:5000/library/nginx',
      tlsVerify: false,
    },
    {
      label: 'mirror https://mirror.example.com',
      location: 'mirror.example.com/library/nginx',
      tlsVerify: false,
    },
    { label: 'registry docker.io', location: 'docker.io/library/nginx', tlsVerify: true },
  ]);
});

test('without fallback a mirrored registry is not contacted, an unmirrored one still is', () => {
  const mirrors = parseMirrors([{ registry: 'docker.io', endpoints: ['https://m.example.com'] }]);
  assert.deepEqual(
    pullSources(nginx, mirrors, false).map((source) => source.label),
    ['mirror https://m.example.com'],
  );
  const ghcr = parseReference('ghcr.io/org/app:1');
  assert.deepEqual(
    pullSources(ghcr, mirrors, false).map((source) => source.location),
    ['ghcr.io/org/app'],
  );
});

test('a mirror path prefix is kept, as proxy caches need', () => {
  const mirrors = parseMirrors([
    { registry: 'index.docker.io', endpoints: ['https://harbor.example.com/dockerhub/'] },
  ]);
  assert.equal(
    pullSources(nginx, mirrors, false)[0]?.location,
    'harbor.example.com/dockerhub/library/nginx',
  );
});

test('plain HTTP mirrors must be marked insecure', () => {
  assert.throws(
    () => parseMirrors([{ registry: 'docker.io', endpoints: ['http://10.0.0.1:5000'] }]),
    /registry mirror http:\/\/10\.0\.0\.1:5000 for docker\.io uses plain HTTP/,
  );
  assert.throws(
    () => parseMirrors([{ registry: 'docker.io', endpoints: ['ftp://x'] }]),
    /must use http or https/,
  );
});
