import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CRD_DIR, renderCrdFiles } from './manifests.ts';

const dir = join(import.meta.dirname, '..', '..', CRD_DIR);

describe('committed CRDs', () => {
  it('match a fresh generation (run `npm run manifests` when this fails)', async () => {
    const fresh = renderCrdFiles();
    const committed = (await readdir(dir)).filter((name) => name.endsWith('.yaml')).sort();
    assert.deepEqual(committed, [...fresh.keys()].sort());
    for (const [name, text] of fresh) {
      assert.equal(await readFile(join(dir, name), 'utf8'), text, `${name} is stale`);
    }
  });
});
