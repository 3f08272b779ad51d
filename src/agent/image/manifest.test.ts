import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Platform, selectPlatform } from './manifest.ts';

const amd64: Platform = { os: 'linux', architecture: 'amd64' };
const entry = (architecture: string, hex: string, variant?: string) => ({
  digest: `sha256:${hex.repeat(64)}`,
  platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) },
});

test('the index entry for the node platform is chosen, preferring no variant', () => {
  const entries = [entry('arm64', 'a', 'v8'), entry('amd64', 'b', 'v3'), entry('amd64', 'c')];
  assert.equal(selectPlatform(entries, amd64), `sha256:${'c'.repeat(64)}`);
  assert.equal(
    selectPlatform(entries, { os: 'linux', architecture: 'arm64' }),
    `sha256:${'a'.repeat(64)}`,
  );
});

test('a missing platform names what the index offers, without attestations', () => {
  const attestation = {
    digest: `sha256:${'d'.repeat(64)}`,
    platform: { os: 'unknown', architecture: 'unknown' },
  };
  assert.throws(
    () => selectPlatform([entry('arm64', 'a', 'v8'), attestation], amd64),
    /^Error: no linux\/amd64 image in the index \(it offers linux\/arm64\/v8\)$/,
  );
});
