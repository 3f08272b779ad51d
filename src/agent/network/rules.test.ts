import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bridgeMac, bridgeName, networkId, tapName, vmId, vmIdOfTap, vmTapName } from './names.ts';
import { ensureScript, networkIdOfChain, parseTable, removeScript } from './rules.ts';
import { fromImpNetwork, resolveNetwork } from './spec.ts';

describe('names', () => {
  it('fit Linux interface names and are stable', () => {
    const id = networkId('default', 'a-network-with-a-rather-long-name');
    assert.match(id, /^[0-9a-f]{8}$/);
    assert.equal(networkId('default', 'a-network-with-a-rather-long-name'), id);
    assert.notEqual(networkId('other', 'a-network-with-a-rather-long-name'), id);
    assert.equal(bridgeName(id).length, 15);
    assert.equal(vmTapName('0b7e5f0c-1d2e-4f3a-9b8c-7d6e5f4a3b2c').length, 15);
    assert.equal(vmIdOfTap(tapName(vmId('u'))), vmId('u'));
    assert.equal(bridgeMac('0a1b2c3d'), '02:1b:0a:1b:2c:3d');
  });

  it('refuse ids that would not fit or could not be found again', () => {
    assert.throws(() => tapName('0123456789'), /"0123456789" is not an Imp VM id/);
    assert.throws(() => bridgeName('default/web'), /not an Imp network id/);
  });
});

describe('network spec', () => {
  it('reads an ImpNetwork with the API defaults', () => {
    assert.deepEqual(fromImpNetwork('ns', 'net', { subnet: '10.1.0.0/24' }), {
      id: networkId('ns', 'net'),
      subnet: '10.1.0.0/24',
      nat: false,
      blockMetadata: true,
      blockNode: true,
    });
  });

  it('takes an empty gateway as the first host address', () => {
    const net = resolveNetwork({ id: '0a1b2c3d', subnet: '10.1.0.0/24', gateway: '', nat: true });
    assert.equal(net.gateway, '10.1.0.1');
    assert.equal(net.bridge, 'imp-br-0a1b2c3d');
  });
});

describe('nftables scripts', () => {
  const base = { id: '0a1b2c3d', subnet: '10.1.0.0/24', nat: true };

  it('tags every rule and keeps each network in its own chains', () => {
    const script = ensureScript(resolveNetwork(base));
    const rules = script.split('\n').filter((line) => line.startsWith('add rule'));
    assert.ok(rules.length >= 5);
    for (const rule of rules) {
      assert.match(
        rule,
        /^add rule inet imp net-0a1b2c3d-[a-z]+ .* comment "imp:0a1b2c3d:[a-z-]+"$/,
      );
    }
    assert.match(script, /ip daddr 169\.254\.169\.254 drop/);
    assert.match(script, /ip saddr 10\.1\.0\.0\/24 oifname != "imp-br-0a1b2c3d" masquerade/);
    assert.doesNotMatch(script, /dport 53/, 'no DNS hole without a DNS proxy');
  });

  it('drops the chains a network no longer needs', () => {
    const script = ensureScript(
      resolveNetwork({ ...base, nat: false, blockNode: false, blockMetadata: false }),
    );
    for (const hook of ['prerouting', 'input', 'postrouting']) {
      assert.match(script, new RegExp(`delete chain inet imp net-0a1b2c3d-${hook}\\n`));
    }
    assert.match(script, /add chain inet imp net-0a1b2c3d-forward \{ type filter hook forward/);
  });

  it('opens DNS on the gateway only when a proxy serves it', () => {
    const script = ensureScript(resolveNetwork({ ...base, dnsOnGateway: true }));
    assert.match(script, /ip daddr 10\.1\.0\.1 meta l4proto \{ tcp, udp \} th dport 53 accept/);
  });

  it('removes chains whether or not they exist', () => {
    assert.equal(
      removeScript(['net-0a1b2c3d-input'], false),
      'add table inet imp\nadd chain inet imp net-0a1b2c3d-input\n' +
        'delete chain inet imp net-0a1b2c3d-input\n',
    );
    assert.equal(removeScript([], true), 'add table inet imp\ndelete table inet imp\n');
  });

  it("reads chains and rule handles from nft's JSON", () => {
    const json = {
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { table: { family: 'inet', name: 'imp', handle: 1 } },
        {
          chain: {
            family: 'inet',
            table: 'imp',
            name: 'net-0a1b2c3d-input',
            handle: 2,
            hook: 'input',
          },
        },
        {
          rule: {
            family: 'inet',
            table: 'imp',
            chain: 'net-0a1b2c3d-input',
            handle: 3,
            comment: 'imp:0a1b2c3d:node',
          },
        },
        { chain: { family: 'inet', table: 'other', name: 'input', handle: 9 } },
      ],
    };
    assert.deepEqual(parseTable(json), [
      {
        name: 'net-0a1b2c3d-input',
        networkId: '0a1b2c3d',
        hook: 'input',
        handle: 2,
        rules: [{ handle: 3, comment: 'imp:0a1b2c3d:node' }],
      },
    ]);
    assert.equal(networkIdOfChain('stray'), undefined);
  });
});
