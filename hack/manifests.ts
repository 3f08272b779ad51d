/** Writes config/crd/bases/*.yaml from the TypeScript API definitions. */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CRD_DIR, renderCrdFiles } from '../src/api/manifests.ts';

const root = join(import.meta.dirname, '..');
const dir = join(root, CRD_DIR);
await mkdir(dir, { recursive: true });
const files = renderCrdFiles();
for (const name of await readdir(dir)) {
  if (name.endsWith('.yaml') && !files.has(name)) await rm(join(dir, name));
}
for (const [name, text] of files) await writeFile(join(dir, name), text);
console.log(`wrote ${files.size} CRDs to ${CRD_DIR}`);
