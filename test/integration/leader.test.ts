/** Two operator replicas against a real API server: one leads, and hands over on stop. */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { ControlPlane } from '../../src/local/controlplane.ts';
import type { Operator } from '../../src/operator/operator.ts';
import { startPlaneWithCrds } from '../support/cluster.ts';
import { eventually, startOperator } from '../support/operator.ts';

let plane: ControlPlane;
const replicas: Operator[] = [];

before(async () => {
  plane = await startPlaneWithCrds();
});

after(async () => {
  for (const r of replicas) await r.stop();
  await plane?.stop();
});

it('elects exactly one leader and fails over within the lease time', async () => {
  const [a, b] = await Promise.all([
    startOperator(plane, { identity: 'replica-a' }),
    startOperator(plane, { identity: 'replica-b' }),
  ]);
  replicas.push(a.operator, b.operator);
  const leader = await eventually('a leader', () =>
    replicas.find((r) => r.isLeader) ? replicas.find((r) => r.isLeader) : undefined,
  );
  // Hold for several renew periods: still exactly one.
  for (let i = 0; i < 10; i++) {
    assert.equal(replicas.filter((r) => r.isLeader).length, 1);
    await new Promise((r) => setTimeout(r, 200));
  }
  const follower = replicas.find((r) => r !== leader)!;
  const stoppedAt = Date.now();
  await leader.stop();
  replicas.splice(replicas.indexOf(leader), 1);
  await eventually('the follower takes over', () => (follower.isLeader ? true : undefined), 10_000);
  const handover = Date.now() - stoppedAt;
  assert.ok(handover < 4_000, `handover took ${handover} ms, lease is 4000 ms`);
});
