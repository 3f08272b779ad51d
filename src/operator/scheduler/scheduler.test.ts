import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type NodeCandidate, type PlacementRequest, schedule } from './scheduler.ts';

const node = (name: string, over: Partial<NodeCandidate> = {}): NodeCandidate => ({
  name,
  labels: {},
  taints: [],
  agentReady: true,
  hypervisor: 'qemu',
  allocatable: { vcpus: 8, memoryMiB: 8192, maxVMs: 100 },
  used: { vcpus: 0, memoryMiB: 0, vms: 0 },
  ...over,
});

const request: PlacementRequest = { vcpus: 1, memoryMiB: 512, nodeSelector: {}, tolerations: [] };

describe('schedule', () => {
  it('spreads to the emptiest node and packs onto the fullest', () => {
    const nodes = [
      node('a', { used: { vcpus: 4, memoryMiB: 4096, vms: 4 } }),
      node('b', { used: { vcpus: 1, memoryMiB: 512, vms: 1 } }),
    ];
    assert.equal(schedule(request, nodes, 'Spread').node, 'b');
    assert.equal(schedule(request, nodes, 'Pack').node, 'a');
  });

  it('counts why every node was rejected', () => {
    const nodes = [
      node('a', { used: { vcpus: 0, memoryMiB: 8000, vms: 1 } }),
      node('b', { used: { vcpus: 0, memoryMiB: 8000, vms: 1 } }),
      node('c', { labels: { pool: 'other' } }),
    ];
    const result = schedule({ ...request, nodeSelector: { pool: 'ci' } }, nodes);
    assert.equal(result.node, undefined);
    assert.ok(!result.node);
    assert.equal(result.message, '0/3 nodes available: 3 node selector mismatch');
    const memory = schedule(request, nodes.slice(0, 2));
    assert.ok(!memory.node);
    assert.equal(memory.message, '0/2 nodes available: 2 insufficient memory');
  });

  it('honours taints and tolerations', () => {
    const tainted = node('a', {
      taints: [{ key: 'dedicated', value: 'ci', effect: 'NoSchedule' }],
    });
    assert.equal(schedule(request, [tainted]).node, undefined);
    const tolerating = {
      ...request,
      tolerations: [{ key: 'dedicated', operator: 'Equal' as const, value: 'ci' }],
    };
    assert.equal(schedule(tolerating, [tainted]).node, 'a');
  });

  it('skips nodes without a ready agent and says when there are none', () => {
    const result = schedule(request, [node('a', { agentReady: false })]);
    assert.ok(!result.node);
    assert.equal(result.message, '0/1 nodes available: 1 agent not ready');
    const none = schedule(request, []);
    assert.ok(!none.node);
    assert.match(none.message ?? '', /no node runs an Imp agent/);
  });
});
