/**
 * Runs a reconcile function over a work queue with a fixed number of workers. The outcome of
 * each reconcile is handled in one place: tell the queue, count it.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import { WorkQueue, type WorkQueueOptions } from './workqueue.ts';

/** What a reconcile asks for next: nothing, or another look after a delay. */
export type Result = { requeueAfterMs: number } | undefined;

/** Metrics shared by every controller of a process, labelled by controller name. */
export class ControllerMetrics {
  readonly reconciles: Counter<'controller' | 'result'>;
  readonly duration: Histogram<'controller'>;
  readonly depth: Gauge<'controller'>;
  /** Each controller's current queue depth, read at scrape time (delayed adds included). */
  readonly queueDepths = new Map<string, () => number>();

  constructor(registry: Registry) {
    this.reconciles = new Counter({
      name: 'imp_reconcile_total',
      help: 'Reconciles by controller and result (success, requeue, error).',
      labelNames: ['controller', 'result'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'imp_reconcile_duration_seconds',
      help: 'Time spent in one reconcile.',
      labelNames: ['controller'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
      registers: [registry],
    });
    const depths = this.queueDepths;
    this.depth = new Gauge({
      name: 'imp_workqueue_depth',
      help: 'Keys waiting in the controller work queue.',
      labelNames: ['controller'],
      registers: [registry],
      collect() {
        for (const [controller, depth] of depths) this.set({ controller }, depth());
      },
    });
  }
}

export interface ControllerOptions {
  name: string;
  log: Logger;
  metrics: ControllerMetrics;
  reconcile: (key: string) => Promise<Result>;
  workers?: number;
  queue?: WorkQueueOptions;
}

export class Controller {
  readonly name: string;
  /** Replaced on each start, since a shut-down queue stays shut. */
  queue: WorkQueue;
  private readonly opts: ControllerOptions;
  private running = false;
  /** The current workers; they end when their queue is shut down. */
  private workers: Promise<void> = Promise.resolve();

  constructor(options: ControllerOptions) {
    this.opts = options;
    this.name = options.name;
    this.queue = new WorkQueue(options.queue);
    options.metrics.queueDepths.set(this.name, () => this.queue.depth);
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  /**
   * Starts the workers on a fresh queue. After a `stop()` whose workers are still finishing
   * (leadership lost and won back at once), the new ones wait for them, so no key is ever
   * reconciled twice at the same time; keys added meanwhile wait in the new queue.
   */
  start(): void {
    if (this.running) return;
    this.running = true;
    if (this.queue.isShutDown) this.queue = new WorkQueue(this.opts.queue);
    const queue = this.queue;
    const count = this.opts.workers ?? 2;
    this.workers = this.workers
      .catch(() => {})
      .then(async () => {
        await Promise.all(Array.from({ length: count }, () => this.work(queue)));
      });
  }

  /** Shuts the queue and waits for the reconciles in progress to end. */
  async stop(): Promise<void> {
    this.running = false;
    this.queue.shutdown();
    await this.workers;
  }

  private async work(queue: WorkQueue): Promise<void> {
    const { log, metrics, reconcile } = this.opts;
    const controller = this.name;
    for (let key = await queue.get(); key !== undefined; key = await queue.get()) {
      const endTimer = metrics.duration.startTimer({ controller });
      let result: Result;
      let error: unknown;
      try {
        result = await reconcile(key);
      } catch (err) {
        error = err;
      }
      endTimer();
      if (error) {
        log.error({ controller, key, err: error }, 'reconcile failed');
        queue.addRateLimited(key);
        metrics.reconciles.inc({ controller, result: 'error' });
      } else if (result) {
        queue.forget(key);
        queue.addAfter(key, result.requeueAfterMs);
        metrics.reconciles.inc({ controller, result: 'requeue' });
      } else {
        queue.forget(key);
        metrics.reconciles.inc({ controller, result: 'success' });
      }
      queue.done(key);
    }
  }
}
