import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { silentLogger } from '../log.ts';
import { Controller, ControllerMetrics } from './controller.ts';

/** A reconcile that records each call and holds it until released. */
function gatedReconcile() {
  const calls: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  return {
    calls,
    maxInFlight: () => maxInFlight,
    open: () => release(),
    reconcile: async (key: string) => {
      calls.push(key);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await gate;
      inFlight--;
      return undefined;
    },
  };
}

function newController(reconcile: (key: string) => Promise<undefined>, workers = 2) {
  return new Controller({
    name: 'test',
    log: silentLogger(),
    metrics: new ControllerMetrics(new Registry()),
    reconcile,
    workers,
  });
}

describe('Controller', () => {
  it('works again when started while its last stop is still draining', async () => {
    const gated = gatedReconcile();
    const controller = newController(gated.reconcile);
    controller.start();
    controller.enqueue('default/a');
    await sleep(10);
    assert.deepEqual(gated.calls, ['default/a']);

    // Leadership lost, then won back before the reconcile in progress has ended.
    const stopping = controller.stop();
    controller.start();
    controller.enqueue('default/a');
    await sleep(10);
    assert.deepEqual(gated.calls, ['default/a'], 'the key waits for its running reconcile');

    gated.open();
    await stopping;
    await sleep(10);
    assert.deepEqual(gated.calls, ['default/a', 'default/a'], 'the new workers took it');
    assert.equal(gated.maxInFlight(), 1, 'never two reconciles of one key at once');
    await controller.stop();
  });

  it('stops only after the reconciles in progress end', async () => {
    const gated = gatedReconcile();
    const controller = newController(gated.reconcile, 1);
    controller.start();
    controller.enqueue('default/b');
    await sleep(10);
    let stopped = false;
    const stopping = controller.stop().then(() => {
      stopped = true;
    });
    await sleep(10);
    assert.equal(stopped, false);
    gated.open();
    await stopping;
    assert.equal(stopped, true);
  });
});
