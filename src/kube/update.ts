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
  options: {
    subresource?: string;
    attempts?: number;
    /**
     * Write the status by server-side apply as this field manager, still conditional on the
     * read resourceVersion (needs `subresource: 'status'`).
     */
    statusManager?: string;
  } = {},
): Promise<T> {
  const attempts = options.attempts ?? 20;
  const { subresource, statusManager } = options;
  if (statusManager && subresource !== 'status') {
    throw new Error('updateWithRetry: statusManager writes only the status subresource');
  }
  for (let attempt = 1; ; attempt++) {
    const object = await client.get<T>(resource, name, namespace);
    if (!mutate(object)) return object;
    try {
      if (!statusManager) return await client.update<T>(resource, object, subresource);
      const { resourceVersion } = object.metadata;
      return await client.apply<T>(
        resource,
        {
          metadata: { name, namespace, resourceVersion },
          status: applicable(object.status),
        } as Partial<T> & {
          metadata: { name: string; namespace?: string };
        },
        statusManager,
        'status',
      );
    } catch (err) {
      if (!isConflict(err) || attempt >= attempts) throw err;
    }
  }
}

/**
 * The status as server-side apply takes it: an empty map or list would be sent as null and
 * refused, so it is left out, which drops the field this manager owned just the same.
 */
function applicable(status: unknown): unknown {
  if (!status || typeof status !== 'object') return status;
  return Object.fromEntries(
    Object.entries(status).filter(
      ([, value]) =>
        value !== undefined &&
        !(Array.isArray(value) && value.length === 0) &&
        !(value && typeof value === 'object' && Object.keys(value).length === 0),
    ),
  );
}
