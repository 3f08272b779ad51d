/** Read-modify-write with optimistic concurrency, retried on conflict. */
import { isConflict, type KubeClient } from './client.ts';
import type { KubeObject } from './object.ts';
import type { Resource } from './resources.ts';

/**
 * Reads the object fresh from the API, applies `mutate`, and writes it back with the read
 * resourceVersion, so a concurrent writer makes the write fail instead of being overwritten.
 * `mutate` returns false to skip the write. Conflicts retry with a fresh read.
 */
export async function updateWithRetry<T extends KubeObject>(
  client: KubeClient,
  resource: Resource,
  name: string,
  namespace: string | undefined,
  mutate: (object: T) => boolean,
  options: { subresource?: string; attempts?: number } = {},
): Promise<T> {
  const attempts = options.attempts ?? 20;
  for (let attempt = 1; ; attempt++) {
    const object = await client.get<T>(resource, name, namespace);
    if (!mutate(object)) return object;
    try {
      return await client.update<T>(resource, object, options.subresource);
    } catch (err) {
      if (!isConflict(err) || attempt >= attempts) throw err;
    }
  }
}
