/** Small filesystem helpers for the store: every write lands whole or not at all. */
import { createHash, randomBytes } from 'node:crypto';
import { access, readFile, rename, writeFile } from 'node:fs/promises';

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function exists(path: string): Promise<boolean> {
  return await access(path).then(
    () => true,
    () => false,
  );
}

/** Parses a JSON file; a missing file is `undefined`, any other problem an error. */
export async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Readers see the old file or the new one, never half of either. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  // Unique per write: two writers of one path in this process must not share a partial file.
  const partial = `${path}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(partial, JSON.stringify(value));
  await rename(partial, path);
}

/** Moves a finished directory into place. Another pull may have stored the same content
 * first; theirs is as good as ours, and the caller removes `from`. */
export async function renameUnlessPresent(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
  }
}
