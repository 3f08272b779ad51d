/**
 * An informer: lists a resource, then watches from the list's resourceVersion, keeping an
 * indexed in-memory cache and telling handlers what changed. Unlike client-node's informer
 * it never stops by itself: a `410 Gone` relists, any other failure retries with back-off,
 * a watch that goes quiet for too long is torn down and resumed, and a periodic relist
 * repairs anything a lost event could have left wrong.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.ts';
import { isGone, type KubeClient, type ListOptions } from './client.ts';
import { type KubeObject, keyOf } from './object.ts';
import type { Resource } from './resources.ts';

export type IndexFunction<T> = (object: T) => string[];

export interface InformerHandlers<T> {
  added?(object: T): void;
  updated?(object: T, old: T): void;
  deleted?(object: T): void;
}

export interface InformerOptions<T> extends ListOptions {
  client: KubeClient;
  resource: Resource;
  log: Logger;
  namespace?: string;
  indexes?: Record<string, IndexFunction<T>>;
  /** Full relist period (default 10 min). */
  resyncMs?: number;
  /** A watch with no event or bookmark for this long is restarted (default 6 min). */
  stallMs?: number;
}

export class Informer<T extends KubeObject> {
  private readonly opts: InformerOptions<T>;
  private readonly store = new Map<string, T>();
  private readonly indexes = new Map<string, Map<string, Set<string>>>();
  private readonly handlers: InformerHandlers<T>[] = [];
  private readonly abort = new AbortController();
  private resourceVersion: string | undefined;
  private syncedResolve!: () => void;
  /** Resolves after the first complete list. */
  readonly synced: Promise<void>;
  private running: Promise<void> | undefined;

  constructor(opts: InformerOptions<T>) {
    this.opts = opts;
    for (const name of Object.keys(opts.indexes ?? {})) this.indexes.set(name, new Map());
    this.synced = new Promise((resolve) => {
      this.syncedResolve = resolve;
    });
  }

  on(handlers: InformerHandlers<T>): void {
    this.handlers.push(handlers);
  }

  start(): void {
    this.running ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  list(): T[] {
    return [...this.store.values()];
  }

  /** Objects whose index function returned `value` for index `name`. */
  byIndex(name: string, value: string): T[] {
    const keys = this.indexes.get(name)?.get(value);
    if (!keys) return [];
    return [...keys].map((key) => this.store.get(key)).filter((o): o is T => o !== undefined);
  }

  private async run(): Promise<void> {
    const { log, resource } = this.opts;
    let failures = 0;
    let lastList = 0;
    while (!this.abort.signal.aborted) {
      try {
        const resyncDue = Date.now() - lastList > (this.opts.resyncMs ?? 600_000);
        if (!this.resourceVersion || resyncDue) {
          await this.relist();
          lastList = Date.now();
        }
        await this.watchOnce();
        failures = 0;
      } catch (err) {
        if (this.abort.signal.aborted) break;
        if (isGone(err)) {
          log.info({ kind: resource.kind }, 'watch expired, relisting');
          this.resourceVersion = undefined;
          continue;
        }
        failures++;
        const delay = Math.min(30_000, 250 * 2 ** Math.min(failures, 7));
        log.warn({ kind: resource.kind, err, delayMs: delay }, 'watch failed, retrying');
        await sleep(delay, undefined, { signal: this.abort.signal }).catch(() => {});
      }
    }
  }

  private async relist(): Promise<void> {
    const { client, resource, namespace, labelSelector, fieldSelector } = this.opts;
    const list = await client.list<T>(resource, namespace, { labelSelector, fieldSelector });
    const seen = new Set<string>();
    for (const object of list.items) {
      const key = keyOf(object.metadata);
      seen.add(key);
      this.upsert(key, object);
    }
    for (const [key, object] of this.store) if (!seen.has(key)) this.remove(key, object);
    this.resourceVersion = list.metadata.resourceVersion;
    this.syncedResolve();
  }

  private async watchOnce(): Promise<void> {
    const { client, resource, namespace, labelSelector, fieldSelector } = this.opts;
    // One controller per watch, so a stall or stop() cancels just this stream.
    const watchAbort = new AbortController();
    const onStop = () => watchAbort.abort();
    // stop() may have been called while the list was in flight: then do not watch at all.
    if (this.abort.signal.aborted) return;
    this.abort.signal.addEventListener('abort', onStop);
    const stallMs = this.opts.stallMs ?? 360_000;
    let stallTimer = setTimeout(() => watchAbort.abort(), stallMs);
    try {
      await client.watch<T>(
        resource,
        {
          namespace,
          labelSelector,
          fieldSelector,
          resourceVersion: this.resourceVersion,
          signal: watchAbort.signal,
        },
        (event) => {
          clearTimeout(stallTimer);
          stallTimer = setTimeout(() => watchAbort.abort(), stallMs);
          const object = event.object;
          if (object.metadata.resourceVersion) {
            this.resourceVersion = object.metadata.resourceVersion;
          }
          if (event.type === 'BOOKMARK') return;
          const key = keyOf(object.metadata);
          if (event.type === 'DELETED') this.remove(key, this.store.get(key) ?? object);
          else this.upsert(key, object);
        },
      );
    } catch (err) {
      // An abort from the stall timer is not a failure: resume from the last version.
      if (!watchAbort.signal.aborted || this.abort.signal.aborted) throw err;
      this.opts.log.info({ kind: resource.kind }, 'watch went quiet, resuming');
    } finally {
      clearTimeout(stallTimer);
      this.abort.signal.removeEventListener('abort', onStop);
    }
  }

  private upsert(key: string, object: T): void {
    const old = this.store.get(key);
    if (old && old.metadata.resourceVersion === object.metadata.resourceVersion) return;
    if (old) this.unindex(key, old);
    this.store.set(key, object);
    this.index(key, object);
    for (const h of this.handlers) {
      if (old) h.updated?.(object, old);
      else h.added?.(object);
    }
  }

  private remove(key: string, object: T): void {
    if (!this.store.has(key)) return;
    this.unindex(key, this.store.get(key)!);
    this.store.delete(key);
    for (const h of this.handlers) h.deleted?.(object);
  }

  private index(key: string, object: T): void {
    for (const [name, fn] of Object.entries(this.opts.indexes ?? {})) {
      const index = this.indexes.get(name)!;
      for (const value of fn(object)) {
        const keys = index.get(value) ?? new Set<string>();
        keys.add(key);
        index.set(value, keys);
      }
    }
  }

  private unindex(key: string, object: T): void {
    for (const [name, fn] of Object.entries(this.opts.indexes ?? {})) {
      const index = this.indexes.get(name)!;
      for (const value of fn(object)) {
        const keys = index.get(value);
        keys?.delete(key);
        if (keys?.size === 0) index.delete(value);
      }
    }
  }
}
