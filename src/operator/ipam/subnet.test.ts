import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { firstFree, macFor, parseSubnet, usableCount } from './subnet.ts';

describe('subnet', () => {
  it('reserves network, gateway and broadcast', () => {
    const subnet = parseSubnet('192.168.100.0/24');
    assert.equal(usableCount(subnet), 253);
    assert.equal(firstFree(subnet, new Set()), '192.168.100.2');
    const taken = new Set<string>();
    for (let i = 2; i <= 254; i++) taken.add(`192.168.100.${i}`);
    assert.equal(firstFree(subnet, taken), undefined, 'never hands out .255');
  });

  it('honours an explicit gateway', () => {
    const subnet = parseSubnet('10.0.0.0/29', '10.0.0.6');
    assert.equal(firstFree(subnet, new Set()), '10.0.0.1');
    assert.equal(usableCount(subnet), 5);
  });

  it('rejects addresses and gateways that do not fit', () => {
    assert.throws(() => parseSubnet('300.1.1.0/24'), /not an IPv4 address/);
    assert.throws(() => parseSubnet('10.0.0.0/24', '10.0.1.1'), /not a host address/);
  });

  it('derives a stable, locally administered MAC', () => {
    assert.equal(macFor('192.168.100.2'), '02:1d:c0:a8:64:02');
  });
});
