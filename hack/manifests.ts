/**
 * Writes the CRDs from the TypeScript API definitions: config/crd/bases/*.yaml with the
 * kustomization listing them, and the same files into the Helm chart's crds/.
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CHART_CRD_DIR,
  CRD_DIR,
  CRD_KUSTOMIZATION,
  renderCrdFiles,
  renderCrdKustomization,
} from '../src/api/manifests.ts';

const root = join(import.meta.dirname, '..');
const files = renderCrdFiles();
for (const relative of [CRD_DIR, CHART_CRD_DIR]) {
  const dir = join(root, relative);
  await mkdir(dir, { recursive: true });
  for (const name of await readdir(dir)) {
    if (name.endsWith('.yaml') && !files.has(name)) await rm(join(dir, name));
  }
  for (const [name, text] of files) await writeFile(join(dir, name), text);
  console.log(`wrote ${files.size} CRDs to ${relative}`);
}
await writeFile(join(root, CRD_KUSTOMIZATION), renderCrdKustomization(files.keys()));
console.log(`wrote ${CRD_KUSTOMIZATION}`);
