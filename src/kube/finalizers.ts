/** Adding and removing finalizers without overwriting anybody else's. */
import { isConflict, isNotFound, type KubeClient } from './client.ts';
import type { KubeObject } from './object.ts';
import type { Resource } from './resources.ts';
import { updateWithRetry } from './update.ts';

/**
 * Adds `finalizer` to `object` unless it is there already or the object is being deleted.
 * Returns the object as the API server has it afterwards (the cached `object` when nothing
 * was written), so callers can see a deletion that began since their cache was filled.
 */
export async function addFinalizer<T extends KubeObject>(
  client: KubeClient,
  resource: Resource,
  object: T,
  finalizer: string,
): Promise<T> {
  const { name, namespace, resourceVersion, finalizers = [] } = object.metadata;
  if (finalizers.includes(finalizer) || object.metadata.deletionTimestamp) return object;
  // One request in the common case: a merge patch carrying the cached resourceVersion, which
  // the API server refuses if the object changed since; then read-modify-write.
  try {
    return await client.mergePatch<T>(resource, name, namespace, {
      metadata: { resourceVersion, finalizers: [...finalizers, finalizer] },
    });
  } catch (err) {
    if (!isConflict(err)) throw err;
  }
  return await updateWithRetry<T>(client, resource, name, namespace, (fresh) => {
    const current = fresh.metadata.finalizers ?? [];
    if (fresh.metadata.deletionTimestamp || current.includes(finalizer)) return false;
    fresh.metadata.finalizers = [...current, finalizer];
    return true;
  });
}

/** Removes `remove` from the object's finalizers; an object already gone is fine. */
export async function removeFinalizers(
  client: KubeClient,
  resource: Resource,
  object: KubeObject,
  remove: string[],
): Promise<void> {
  if (!object.metadata.finalizers?.some((f) => remove.includes(f))) return;
  try {
    await updateWithRetry(
      client,
      resource,
      object.metadata.name,
      object.metadata.namespace,
      (fresh) => {
        const before = fresh.metadata.finalizers ?? [];
        const after = before.filter((f) => !remove.includes(f));
        if (after.length === before.length) return false;
        fresh.metadata.finalizers = after;
        return true;
      },
    );
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}
