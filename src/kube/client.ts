/**
 * A small REST client for the Kubernetes API. Authentication and TLS come from
 * @kubernetes/client-node's KubeConfig (files, in-cluster, exec plugins); requests go over
 * node:https with keep-alive. It covers what controllers need, subresources and server-side
 * apply included, with errors that say which request failed and why.
 */

import { request as httpRequest } from 'node:http';
import { Agent, type RequestOptions, request } from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import type { KubeList, KubeObject } from './object.ts';
import { apiVersionOf, collectionPath, objectPath, type Resource } from './resources.ts';

/** A failed API call. `status` is the HTTP status; `reason` the Status reason, if any. */
export class ApiError extends Error {
  readonly status: number;
  readonly reason: string | undefined;
  constructor(message: string, status: number, reason?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ApiError';
    this.status = status;
    this.reason = reason;
  }
}

export const isNotFound = (err: unknown) => err instanceof ApiError && err.status === 404;
export const isConflict = (err: unknown) => err instanceof ApiError && err.status === 409;
export const isGone = (err: unknown) => err instanceof ApiError && err.status === 410;

export interface RequestParams {
  method: string;
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
}

export class KubeClient {
  readonly config: KubeConfig;
  private readonly server: URL;
  private readonly agent: Agent;
  /** Limit for one request that is not a watch. */
  readonly timeoutMs = 30_000;

  constructor(config: KubeConfig) {
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.config = config;
    this.server = new URL(cluster.server);
    this.agent = new Agent({ keepAlive: true, maxSockets: 32 });
  }

  /** Loads a kubeconfig file, or the in-cluster service account when `path` is unset. */
  static load(path?: string): KubeClient {
    const config = new KubeConfig();
    if (path) config.loadFromFile(path);
    else config.loadFromDefault();
    return new KubeClient(config);
  }

  close(): void {
    this.agent.destroy();
  }

  private async options(params: RequestParams): Promise<RequestOptions> {
    const url = new URL(params.path, this.server);
    for (const [k, v] of Object.entries(params.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const opts: RequestOptions = {
      method: params.method,
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port,
      path: `${url.pathname}${url.search}`,
      headers: { accept: 'application/json' },
      agent: this.agent,
      // A request on a dead keep-alive socket must not hang its caller forever.
      signal: params.signal ?? AbortSignal.timeout(this.timeoutMs),
    };
    await this.config.applyToHTTPSOptions(opts);
    if (params.body !== undefined) {
      (opts.headers as Record<string, string>)['content-type'] =
        params.contentType ?? 'application/json';
    }
    return opts;
  }

  private send(opts: RequestOptions, body?: string) {
    const fn = opts.protocol === 'http:' ? httpRequest : request;
    if (opts.protocol === 'http:') opts.agent = undefined;
    return new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const req = fn(opts, resolve);
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Sends one request and parses the JSON answer; non-2xx answers become ApiError. */
  async request<T>(params: RequestParams): Promise<T> {
    const what = `${params.method} ${params.path}`;
    const opts = await this.options(params);
    const body = params.body === undefined ? undefined : JSON.stringify(params.body);
    let res: import('node:http').IncomingMessage;
    try {
      res = await this.send(opts, body);
    } catch (err) {
      throw new Error(`${what}: request failed`, { cause: err });
    }
    res.setEncoding('utf8');
    let text = '';
    for await (const chunk of res) text += chunk;
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      let message = text;
      let reason: string | undefined;
      try {
        const parsed = JSON.parse(text) as { message?: string; reason?: string };
        message = parsed.message ?? text;
        reason = parsed.reason;
      } catch {}
      throw new ApiError(`${what}: ${status} ${message}`, status, reason);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  get<T extends KubeObject>(r: Resource, name: string, namespace?: string): Promise<T> {
    return this.request<T>({ method: 'GET', path: objectPath(r, name, namespace) });
  }

  /** Lists every object (following `continue`), across namespaces unless one is given. */
  async list<T extends KubeObject>(
    r: Resource,
    namespace?: string,
    options: ListOptions = {},
  ): Promise<KubeList<T>> {
    const items: T[] = [];
    let token: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page = await this.request<KubeList<T>>({
        method: 'GET',
        path: collectionPath(r, namespace),
        query: { ...options, limit: 500, continue: token },
      });
      items.push(...page.items.map((item) => withTypeMeta(r, item)));
      token = page.metadata.continue || undefined;
      resourceVersion = page.metadata.resourceVersion;
    } while (token);
    return { metadata: { resourceVersion }, items };
  }

  create<T extends KubeObject>(r: Resource, object: T): Promise<T> {
    return this.request<T>({
      method: 'POST',
      path: collectionPath(r, object.metadata.namespace),
      body: { ...object, apiVersion: apiVersionOf(r), kind: r.kind },
    });
  }

  /** Replaces an object (optimistic concurrency through metadata.resourceVersion). */
  update<T extends KubeObject>(r: Resource, object: T, subresource?: string): Promise<T> {
    const { name, namespace } = object.metadata;
    return this.request<T>({
      method: 'PUT',
      path: objectPath(r, name, namespace, subresource),
      body: object,
    });
  }

  /**
   * Server-side apply of the fields in `object`, owned by `fieldManager`. With a
   * `subresource` of `status` this writes only status, as controllers should.
   */
  apply<T extends KubeObject>(
    r: Resource,
    object: Partial<T> & { metadata: { name: string; namespace?: string } },
    fieldManager: string,
    subresource?: string,
  ): Promise<T> {
    const { name, namespace } = object.metadata;
    return this.request<T>({
      method: 'PATCH',
      path: objectPath(r, name, namespace, subresource),
      query: { fieldManager, force: true },
      contentType: 'application/apply-patch+yaml',
      body: { ...object, apiVersion: apiVersionOf(r), kind: r.kind },
    });
  }

  /** A JSON merge patch; used for metadata such as finalizers. */
  mergePatch<T extends KubeObject>(
    r: Resource,
    name: string,
    namespace: string | undefined,
    patch: unknown,
    subresource?: string,
  ): Promise<T> {
    return this.request<T>({
      method: 'PATCH',
      path: objectPath(r, name, namespace, subresource),
      contentType: 'application/merge-patch+json',
      body: patch,
    });
  }

  /** A JSON patch (RFC 6902), e.g. a `test` on resourceVersion before a change. */
  jsonPatch<T extends KubeObject>(
    r: Resource,
    name: string,
    namespace: string | undefined,
    ops: unknown[],
  ): Promise<T> {
    return this.request<T>({
      method: 'PATCH',
      path: objectPath(r, name, namespace),
      contentType: 'application/json-patch+json',
      body: ops,
    });
  }

  async delete(
    r: Resource,
    name: string,
    namespace?: string,
    options: { propagationPolicy?: string; gracePeriodSeconds?: number } = {},
  ): Promise<void> {
    await this.request({
      method: 'DELETE',
      path: objectPath(r, name, namespace),
      body: { apiVersion: 'v1', kind: 'DeleteOptions', ...options },
    });
  }

  /**
   * Opens a watch from `resourceVersion`, calling `onEvent` per event until the server
   * closes the stream (resolves) or it fails (rejects). Informers resume from there.
   */
  async watch<T extends KubeObject>(
    r: Resource,
    params: { namespace?: string; resourceVersion?: string; signal: AbortSignal } & ListOptions,
    onEvent: (event: WatchEvent<T>) => void,
  ): Promise<void> {
    const path = collectionPath(r, params.namespace);
    const opts = await this.options({
      method: 'GET',
      path,
      signal: params.signal,
      query: {
        watch: true,
        allowWatchBookmarks: true,
        resourceVersion: params.resourceVersion,
        labelSelector: params.labelSelector,
        fieldSelector: params.fieldSelector,
        // The server ends each watch within this window; the informer then resumes.
        timeoutSeconds: 240 + Math.floor(Math.random() * 60),
      },
    });
    const res = await this.send(opts).catch((cause: unknown) => {
      throw new Error(`watch ${path}: request failed`, { cause });
    });
    if (res.statusCode !== 200) {
      let text = '';
      for await (const chunk of res) text += chunk;
      throw new ApiError(`watch ${path}: ${res.statusCode} ${text}`, res.statusCode ?? 0);
    }
    // Decode as a stream: a character split between chunks must not become U+FFFD.
    res.setEncoding('utf8');
    let buffer = '';
    for await (const chunk of res) {
      buffer += chunk;
      let newline = buffer.indexOf('\n');
      while (newline >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line) {
          const event = JSON.parse(line) as WatchEvent<T>;
          if (event.type === 'ERROR') {
            const status = event.object as unknown as { code?: number; message?: string };
            throw new ApiError(`watch ${path}: ${status.message}`, status.code ?? 0);
          }
          onEvent({ type: event.type, object: withTypeMeta(r, event.object) });
        }
        newline = buffer.indexOf('\n');
      }
    }
  }
}

/** List items come without apiVersion and kind; put them back so objects are complete. */
function withTypeMeta<T extends KubeObject>(r: Resource, object: T): T {
  if (object.kind) return object;
  return { ...object, apiVersion: apiVersionOf(r), kind: r.kind };
}
