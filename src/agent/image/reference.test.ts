import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseReference } from './reference.ts';

const digest = `sha256:${'a'.repeat(64)}`;

test('Docker Hub short names gain registry, library/ and latest', () => {
  assert.deepEqual(parseReference('nginx'), {
    registry: 'docker.io',
    repository: 'library/nginx',
    tag: 'latest',
    name: 'docker.io/library/nginx:latest',
  });
  assert.equal(parseReference('nginx:1.27-alpine').name, 'docker.io/library/nginx:1.27-alpine');
  assert.equal(parseReference('bitnami/redis').name, 'docker.io/bitnami/redis:latest');
  assert.equal(parseReference('index.docker.io/nginx').name, 'docker.io/library/nginx:latest');
});

test('a first component with a dot, a port or localhost is a registry', () => {
  const local = parseReference('127.0.0.1:5000/team/app:v1');
  assert.equal(local.registry, '127.0.0.1:5000');
  assert.equal(local.repository, 'team/app');
  assert.equal(local.tag, 'v1');
  assert.equal(parseReference('localhost/app').name, 'localhost/app:latest');
  assert.equal(parseReference('ghcr.io/org/app').registry, 'ghcr.io');
  // No dot, port or localhost: a Docker Hub namespace, not a host.
  assert.equal(parseReference('myorg/app').registry, 'docker.io');
});

test('a digest is kept, and no tag is invented next to it', () => {
  const ref = parseReference(`nginx@${digest}`);
  assert.equal(ref.digest, digest);
  assert.equal(ref.tag, undefined);
  assert.equal(ref.name, `docker.io/library/nginx@${digest}`);
  assert.equal(
    parseReference(`nginx:1.27@${digest}`).name,
    `docker.io/library/nginx:1.27@${digest}`,
  );
});

test('invalid references are refused with the reference in the message', () => {
  for (const bad of ['', 'Nginx', 'nginx:bad tag', 'nginx@sha256:short', 'a//b', 'nginx:']) {
    assert.throws(
      () => parseReference(bad),
      (err: Error) => {
        assert.ok(err.message.startsWith(`invalid image reference "${bad.trim()}"`), err.message);
        return true;
      },
    );
  }
});
