import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkQueue } from './workqueue.ts';

describe('WorkQueue', () => {
  it('stores a waiting key once however often it is added', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('a');
    q.add('b');
    assert.equal(q.depth, 2);
    assert.equal(await q.get(), 'a');
    assert.equal(await q.get(), 'b');
  });

  it('never hands a key being processed to a second worker', async () => {
    const q = new WorkQueue();
    q.add('a');
    const first = await q.get();
    q.add('a');
    assert.equal(q.depth, 0, 'a re-add during processing waits for done()');
    let second: string | undefined;
    void q.get().then((k) => {
      second = k;
    });
    await sleep(5);
    assert.equal(second, undefined);
    q.done(first!);
    await sleep(0);
    assert.equal(second, 'a', 'processed again after done()');
  });

  it('backs off a failing key exponentially and resets on forget', () => {
    let now = 0;
    const q = new WorkQueue({ baseDelayMs: 100, now: () => now });
    const delays: number[] = [];
    const original = q.addAfter.bind(q);
    q.addAfter = (key, ms) => {
      delays.push(ms);
      original(key, ms);
    };
    q.addRateLimited('k');
    q.addRateLimited('k');
    q.addRateLimited('k');
    assert.deepEqual(delays, [100, 200, 400]);
    assert.equal(q.retries('k'), 3);
    q.forget('k');
    q.addRateLimited('k');
    assert.equal(delays.at(-1), 100);
    now += 1;
    q.shutdown();
  });

  it('caps the overall retry rate with a token bucket', () => {
    const now = 0;
    const q = new WorkQueue({ baseDelayMs: 1, ratePerSecond: 10, burst: 2, now: () => now });
    const delays: number[] = [];
    const original = q.addAfter.bind(q);
    q.addAfter = (key, ms) => {
      delays.push(ms);
      original(key, ms);
    };
    for (const key of ['a', 'b', 'c', 'd']) q.addRateLimited(key);
    assert.deepEqual(delays, [1, 1, 100, 200]);
    q.shutdown();
  });

  it('releases waiting workers on shutdown', async () => {
    const q = new WorkQueue();
    const pending = q.get();
    q.shutdown();
    assert.equal(await pending, undefined);
  });
});
