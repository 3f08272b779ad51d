/**
 * Records events.k8s.io/v1 Events about objects, so `kubectl describe` explains every wait
 * and failure. Repeats of the same event within a short window update one Event's series
 * count instead of creating new objects.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log.ts';
import type { KubeClient } from './client.ts';
import type { KubeObject } from './object.ts';
import { resources } from './resources.ts';
import { microTime } from './time.ts';

export type EventType = 'Normal' | 'Warning';

interface Series {
  name: string;
  namespace: string;
  count: number;
  firstAt: number;
}

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly controller: string;
  private readonly instance: string;
  private readonly series = new Map<string, Series>();

  constructor(options: { client: KubeClient; log: Logger; controller: string; instance: string }) {
    this.client = options.client;
    this.log = options.log;
    this.controller = options.controller;
    this.instance = options.instance;
  }

  /** Records an event; failures are logged, never thrown, since events are best effort. */
  async record(
    regarding: KubeObject,
    type: EventType,
    reason: string,
    note: string,
    action = reason,
  ): Promise<void> {
    const namespace = regarding.metadata.namespace ?? 'default';
    const dedupKey = `${regarding.metadata.uid}/${type}/${reason}/${note}`;
    const existing = this.series.get(dedupKey);
    const now = new Date();
    try {
      if (existing && now.getTime() - existing.firstAt < 10 * 60_000) {
        existing.count++;
        await this.client.mergePatch(resources.Event, existing.name, existing.namespace, {
          series: { count: existing.count, lastObservedTime: microTime(now) },
        });
        return;
      }
      const name = `${regarding.metadata.name}.${randomBytes(8).toString('hex')}`;
      await this.client.create(resources.Event, {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: { name, namespace },
        eventTime: microTime(now),
        reportingController: this.controller,
        reportingInstance: this.instance,
        action,
        reason,
        note: note.slice(0, 1024),
        type,
        regarding: {
          apiVersion: regarding.apiVersion,
          kind: regarding.kind,
          name: regarding.metadata.name,
          namespace: regarding.metadata.namespace,
          uid: regarding.metadata.uid,
          resourceVersion: regarding.metadata.resourceVersion,
        },
      } as KubeObject);
      this.series.set(dedupKey, { name, namespace, count: 1, firstAt: now.getTime() });
      if (this.series.size > 5000) this.series.clear();
    } catch (err) {
      this.log.warn({ err, reason, name: regarding.metadata.name }, 'recording an event failed');
    }
  }
}
