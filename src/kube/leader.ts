/**
 * Lease-based leader election (coordination.k8s.io/v1). A candidate takes the Lease when it
 * is free or when its holder has not renewed it for a full lease duration, as measured on
 * the candidate's own clock from when it last saw the record change (so clock skew between
 * replicas does not matter). The leader renews every `retryPeriodMs`; if it cannot renew for
 * `renewDeadlineMs` it steps down. `release()` hands the Lease over at once on shutdown.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.ts';
import { isConflict, isNotFound, type KubeClient } from './client.ts';
import type { KubeObject } from './object.ts';
import { resources } from './resources.ts';
import { microTime } from './time.ts';

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}
type Lease = KubeObject<LeaseSpec>;

export interface LeaderElectorOptions {
  client: KubeClient;
  log: Logger;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export class LeaderElector {
  private readonly opts: Required<LeaderElectorOptions>;
  private readonly abort = new AbortController();
  private observed: { record: string; at: number } | undefined;
  private leading = false;
  private running: Promise<void> | undefined;

  constructor(options: LeaderElectorOptions) {
    this.opts = {
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      ...options,
    };
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Stops campaigning; a leader gives the Lease up so another replica takes over at once. */
  async release(): Promise<void> {
    this.abort.abort();
    await this.running;
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.read();
      if (lease?.spec?.holderIdentity === this.opts.identity) {
        await this.opts.client.update(resources.Lease, {
          ...lease,
          spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1 },
        });
      }
    } catch (err) {
      this.opts.log.warn({ err }, 'releasing the leader lease failed');
    }
    this.opts.onStoppedLeading();
  }

  private async loop(): Promise<void> {
    const { log, retryPeriodMs, renewDeadlineMs } = this.opts;
    let lastRenew = 0;
    while (!this.abort.signal.aborted) {
      let ok = false;
      // A leader's attempt may last only until its renew deadline, counted from the start of
      // its last successful attempt: a hung request must not keep a replica believing it
      // leads once others may have taken over.
      const attemptStart = Date.now();
      const budgetMs = this.leading
        ? renewDeadlineMs - (attemptStart - lastRenew)
        : renewDeadlineMs;
      const timer = new AbortController();
      try {
        if (budgetMs <= 0) throw new Error('the renew deadline has passed');
        ok = await Promise.race([
          this.tryAcquireOrRenew(),
          sleep(budgetMs, undefined, { signal: timer.signal }).then(() => {
            throw new Error(`no answer within ${budgetMs} ms`);
          }),
        ]);
      } catch (err) {
        log.warn({ err }, 'leader election attempt failed');
      } finally {
        timer.abort();
      }
      const now = Date.now();
      if (ok) {
        lastRenew = attemptStart;
        if (!this.leading) {
          this.leading = true;
          log.info({ identity: this.opts.identity }, 'became leader');
          this.opts.onStartedLeading();
        }
      } else if (this.leading && now - lastRenew >= renewDeadlineMs) {
        this.leading = false;
        log.warn({ identity: this.opts.identity }, 'lost leadership');
        this.opts.onStoppedLeading();
      }
      await sleep(retryPeriodMs, undefined, { signal: this.abort.signal }).catch(() => {});
    }
  }

  private async read(): Promise<Lease | undefined> {
    try {
      return await this.opts.client.get<Lease>(
        resources.Lease,
        this.opts.name,
        this.opts.namespace,
      );
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { client, namespace, name, identity, leaseDurationMs } = this.opts;
    const now = microTime(new Date());
    const lease = await this.read();
    const durationSeconds = Math.ceil(leaseDurationMs / 1000);
    if (!lease) {
      try {
        await client.create<Lease>(resources.Lease, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: durationSeconds,
            acquireTime: now,
            renewTime: now,
            leaseTransitions: 0,
          },
        });
        return true;
      } catch (err) {
        if (isConflict(err)) return false;
        throw err;
      }
    }
    const spec = lease.spec ?? {};
    const record = JSON.stringify(spec);
    if (this.observed?.record !== record) this.observed = { record, at: Date.now() };
    const holder = spec.holderIdentity ?? '';
    const heldByOther = holder !== '' && holder !== identity;
    const expired =
      Date.now() - this.observed.at > (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (heldByOther && !expired) return false;
    const taking = holder !== identity;
    try {
      const updated = await client.update<Lease>(resources.Lease, {
        ...lease,
        spec: {
          holderIdentity: identity,
          leaseDurationSeconds: durationSeconds,
          acquireTime: taking ? now : spec.acquireTime,
          renewTime: now,
          leaseTransitions: (spec.leaseTransitions ?? 0) + (taking ? 1 : 0),
        },
      });
      this.observed = { record: JSON.stringify(updated.spec ?? {}), at: Date.now() };
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }
}
