/**
 * HostNetwork against the real kernel: bridges, TAPs and nftables inside network namespaces
 * each test creates and deletes. Needs root, iproute2, nftables and busybox.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../log.ts';
import { NodeCommands } from './commands.ts';
import { HostNetwork } from './host.ts';
import { networkId, tapName, vmId } from './names.ts';
import type { NetworkSpec } from './spec.ts';
import { type Guest, missingPrerequisite, TestNamespaces } from './testing.ts';

const skip = await missingPrerequisite();
const log = silentLogger();

describe('guest traffic through HostNetwork', { skip }, () => {
  const namespaces = new TestNamespaces();
  let node: string;
  let outside: string;
  let host: HostNetwork;
  // a: defaults with NAT; b: defaults without NAT; c: no isolation from node or metadata;
  // d: node reachable, metadata blocked.
  const nets = {
    a: { id: networkId('t', 'a'), subnet: '10.10.1.0/24', nat: true },
    b: { id: networkId('t', 'b'), subnet: '10.10.2.0/24', nat: false },
    c: {
      id: networkId('t', 'c'),
      subnet: '10.10.3.0/24',
      nat: true,
      blockNode: false,
      blockMetadata: false,
    },
    d: { id: networkId('t', 'd'), subnet: '10.10.4.0/24', nat: true, blockNode: false },
  } satisfies Record<string, NetworkSpec>;
  const guests: Record<string, Guest> = {};
  const nodeUplink = '172.31.0.1';
  const outsideAddress = '172.31.0.2';
  const nodePort = 7000;
  const outsidePort = 9000;

  before(async () => {
    node = await namespaces.add();
    outside = await namespaces.add('out');
    host = new HostNetwork({ log, netns: node });

    // The "uplink": a veth to a namespace standing in for the world beyond the node. It
    // routes the guest subnets back to the node, so un-NATed replies can return.
    await namespaces.ip(node, [
      'link',
      'add',
      'uplink0',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      outside,
    ]);
    await namespaces.ip(node, ['addr', 'add', `${nodeUplink}/24`, 'dev', 'uplink0']);
    await namespaces.ip(node, ['link', 'set', 'uplink0', 'up']);
    await namespaces.ip(outside, ['addr', 'add', `${outsideAddress}/24`, 'dev', 'eth0']);
    await namespaces.ip(outside, ['link', 'set', 'eth0', 'up']);
    await namespaces.ip(outside, ['route', 'add', '10.10.0.0/16', 'via', nodeUplink]);

    // The metadata address on the node itself, answering like everything else on the node.
    // It sits on `lo`: some kernels (this test machine's among them) have no dummy devices.
    await namespaces.ip(node, ['addr', 'add', '169.254.169.254/32', 'dev', 'lo']);
    await namespaces.listen(node, '0.0.0.0', nodePort);
    await namespaces.listen(outside, '0.0.0.0', outsidePort);

    for (const net of Object.values(nets)) await host.ensureNetwork(net);
    const plan: [string, keyof typeof nets, string][] = [
      ['a1', 'a', '10.10.1.2'],
      ['a2', 'a', '10.10.1.3'],
      ['b1', 'b', '10.10.2.2'],
      ['c1', 'c', '10.10.3.2'],
      ['d1', 'd', '10.10.4.2'],
    ];
    for (const [role, net, address] of plan) {
      const gateway = address.replace(/\.\d+$/, '.1');
      const guest = await namespaces.guest(node, role, address, 24, gateway);
      await host.attachInterface({ networkId: nets[net].id, device: guest.hostEnd });
      guests[role] = guest;
    }
    await namespaces.listen(guests.b1!.namespace, '0.0.0.0', nodePort);
  });

  after(() => namespaces.dispose());

  it('lets a guest ping its gateway', async () => {
    assert.equal(await namespaces.ping(guests.a1!.namespace, '10.10.1.1'), true);
    assert.equal(await namespaces.ping(guests.b1!.namespace, '10.10.2.1'), true);
  });

  it('lets guests on one network reach each other, with or without br_netfilter', async () => {
    for (const callIptables of ['1', '0']) {
      await namespaces.exec(node, 'sysctl', [
        '-q',
        '-w',
        `net.bridge.bridge-nf-call-iptables=${callIptables}`,
      ]);
      assert.equal(await namespaces.ping(guests.a1!.namespace, guests.a2!.address), true);
      assert.equal(await namespaces.ping(guests.a2!.namespace, guests.a1!.address), true);
    }
  });

  it('keeps guests on different networks apart', async () => {
    const [aToB, bToA, aToBTcp, nodeToB] = await Promise.all([
      namespaces.ping(guests.a1!.namespace, guests.b1!.address),
      namespaces.ping(guests.b1!.namespace, guests.a1!.address),
      namespaces.connect(guests.a1!.namespace, guests.b1!.address, nodePort),
      namespaces.ping(node, guests.b1!.address),
    ]);
    assert.equal(aToB, false);
    assert.equal(bToA, false);
    assert.equal(aToBTcp, 'timeout');
    assert.equal(nodeToB, true, 'the node itself still reaches every guest');
  });

  it("keeps guests away from the node's own services unless blockNode is off", async () => {
    const [uplink, gateway, open] = await Promise.all([
      namespaces.connect(guests.a1!.namespace, nodeUplink, nodePort),
      namespaces.connect(guests.a1!.namespace, '10.10.1.1', nodePort),
      namespaces.connect(guests.c1!.namespace, nodeUplink, nodePort),
    ]);
    assert.equal(uplink, 'timeout');
    assert.equal(gateway, 'timeout');
    assert.equal(open, `peer:${guests.c1!.address}`, 'the listener answers when not blocked');
  });

  it('keeps guests away from the metadata address unless blockMetadata is off', async () => {
    const [blocked, blockedWithNodeOpen, nodeOpen, open] = await Promise.all([
      namespaces.connect(guests.a1!.namespace, '169.254.169.254', nodePort),
      namespaces.connect(guests.d1!.namespace, '169.254.169.254', nodePort),
      namespaces.connect(guests.d1!.namespace, nodeUplink, nodePort),
      namespaces.connect(guests.c1!.namespace, '169.254.169.254', nodePort),
    ]);
    assert.equal(blocked, 'timeout');
    assert.equal(blockedWithNodeOpen, 'timeout');
    assert.equal(nodeOpen, `peer:${guests.d1!.address}`);
    assert.equal(open, `peer:${guests.c1!.address}`);
  });

  it('masquerades traffic leaving the node with NAT on, and not with NAT off', async () => {
    const [natted, routed] = await Promise.all([
      namespaces.connect(guests.a1!.namespace, outsideAddress, outsidePort),
      namespaces.connect(guests.b1!.namespace, outsideAddress, outsidePort),
    ]);
    assert.equal(natted, `peer:${nodeUplink}`);
    assert.equal(routed, `peer:${guests.b1!.address}`);
  });
});

describe('HostNetwork lifecycle', { skip }, () => {
  const namespaces = new TestNamespaces();
  let node: string;
  let host: HostNetwork;
  let commands: NodeCommands;
  const spec: NetworkSpec = { id: networkId('t', 'life'), subnet: '10.20.0.0/24', nat: true };

  before(async () => {
    node = await namespaces.add();
    host = new HostNetwork({ log, netns: node });
    commands = new NodeCommands({ netns: node, timeoutMs: 10_000 });
  });

  after(() => namespaces.dispose());

  it('creates the bridge, forwarding and rules, and changes nothing the second time', async () => {
    const { bridge } = await host.ensureNetwork(spec);
    assert.equal(bridge, `imp-br-${spec.id}`);
    const first = await snapshot(namespaces, node, host);
    await host.ensureNetwork(spec);
    assert.deepEqual(await snapshot(namespaces, node, host), first);

    const state = await host.inspect();
    assert.deepEqual(
      state.bridges.map(({ name, up, addresses }) => ({ name, up, addresses })),
      [{ name: bridge, up: true, addresses: ['10.20.0.1/24'] }],
    );
    assert.deepEqual(state.chains.map((chain) => chain.name).sort(), [
      `net-${spec.id}-forward`,
      `net-${spec.id}-input`,
      `net-${spec.id}-postrouting`,
      `net-${spec.id}-prerouting`,
    ]);
    const comments = state.chains.flatMap((chain) => chain.rules.map((rule) => rule.comment));
    assert.equal(new Set(comments).size, comments.length, 'no rule appears twice');
    assert.equal(
      (await namespaces.exec(node, 'sysctl', ['-n', 'net.ipv4.ip_forward'])).trim(),
      '1',
    );
  });

  it('follows a changed gateway and NAT setting', async () => {
    await host.ensureNetwork({ ...spec, gateway: '10.20.0.254', nat: false });
    const state = await host.inspect();
    assert.deepEqual(state.bridges[0]?.addresses, ['10.20.0.254/24']);
    assert.equal(
      state.chains.some((chain) => chain.name.endsWith('-postrouting')),
      false,
      'no NAT chain once NAT is off',
    );
    await host.ensureNetwork(spec);
  });

  it('attaches a VM through a real TAP on the bridge, idempotently', async () => {
    const vm = vmId('uid-1');
    const { tap } = await host.attachVM({ networkId: spec.id, vmId: vm });
    assert.equal(tap, tapName(vm));
    await host.attachVM({ networkId: spec.id, vmId: vm });

    const [link] = JSON.parse(await namespaces.ip(node, ['-d', '-j', 'link', 'show', tap]));
    assert.equal(link.linkinfo.info_kind, 'tun');
    assert.equal(link.linkinfo.info_data.type, 'tap');
    assert.equal(link.master, `imp-br-${spec.id}`);
    assert.ok(link.flags.includes('UP'));
    const state = await host.inspect();
    assert.deepEqual(state.taps, [{ name: tap, vmId: vm, bridge: `imp-br-${spec.id}`, up: true }]);
    assert.deepEqual(state.bridges[0]?.ports, [tap]);
    assert.equal(state.bridges[0]?.mac, `02:1b:${spec.id.match(/../g)!.join(':')}`);

    await host.detachVM(vm);
    await host.detachVM(vm);
    assert.deepEqual((await host.inspect()).taps, []);
  });

  it('refuses a TAP for a network that is not on the node', async () => {
    await assert.rejects(
      host.attachVM({ networkId: networkId('t', 'absent'), vmId: vmId('uid-2') }),
      /^Error: attach VM \w+ to network \w+: network \w+ has no bridge imp-br-\w+ on this node/,
    );
  });

  it('names the bad subnet or gateway', async () => {
    const cases: [Partial<NetworkSpec>, RegExp][] = [
      [{ subnet: '10.0.0.0/33' }, /invalid subnet "10\.0\.0\.0\/33": .*between \/8 and \/29/],
      [{ subnet: 'banana' }, /invalid subnet "banana"/],
      [{ subnet: '300.1.1.0/24' }, /invalid subnet "300\.1\.1\.0\/24": "300\.1\.1\.0" is not/],
      [{ subnet: '10.0.0.5/24' }, /invalid subnet "10\.0\.0\.5\/24": host bits .*10\.0\.0\.0\/24/],
      [{ gateway: '10.9.9.9' }, /invalid gateway "10\.9\.9\.9"/],
    ];
    for (const [change, expected] of cases) {
      await assert.rejects(host.ensureNetwork({ ...spec, id: networkId('t', 'bad'), ...change }), {
        message: new RegExp(`^ensure network ${networkId('t', 'bad')}: ${expected.source}`),
      });
    }
  });

  it('refuses a subnet that overlaps another network on the node', async () => {
    await assert.rejects(
      host.ensureNetwork({ id: networkId('t', 'overlap'), subnet: '10.20.0.0/16', nat: false }),
      /subnet 10\.20\.0\.0\/16 overlaps 10\.20\.0\.1\/24 of imp-br-\w+/,
    );
  });

  it('loads a rule script all or nothing', async () => {
    const before = await namespaces.exec(node, 'nft', ['list', 'ruleset']);
    await assert.rejects(
      commands.nft(
        `add chain inet imp net-${spec.id}-extra\n` +
          `add rule inet imp net-${spec.id}-extra ip daddr 10.0.0.1 jump missing-chain\n`,
      ),
    );
    assert.equal(await namespaces.exec(node, 'nft', ['list', 'ruleset']), before);
  });

  it('leaves nothing behind when the network is removed', async () => {
    await host.attachVM({ networkId: spec.id, vmId: vmId('uid-3') });
    await host.detachVM(vmId('uid-3'));
    await host.removeNetwork(spec.id);
    await host.removeNetwork(spec.id);
    assert.deepEqual(await host.inspect(), { bridges: [], taps: [], table: false, chains: [] });
    assert.doesNotMatch(await namespaces.exec(node, 'nft', ['list', 'ruleset']), /imp/);
  });
});

describe('HostNetwork cleanup', { skip }, () => {
  const namespaces = new TestNamespaces();
  let node: string;
  let host: HostNetwork;

  before(async () => {
    node = await namespaces.add();
    host = new HostNetwork({ log, netns: node });
  });

  after(() => namespaces.dispose());

  it("removes Imp's stale TAPs, bridges and chains and nothing else", async () => {
    const kept = { id: networkId('t', 'kept'), subnet: '10.30.1.0/24', nat: true };
    const stale = { id: networkId('t', 'stale'), subnet: '10.30.2.0/24', nat: true };
    await host.ensureNetwork(kept);
    await host.ensureNetwork(stale);
    const keptVM = vmId('uid-kept');
    const staleVM = vmId('uid-stale');
    const orphanVM = vmId('uid-orphan');
    await host.attachVM({ networkId: kept.id, vmId: keptVM });
    await host.attachVM({ networkId: stale.id, vmId: staleVM });
    await host.attachVM({ networkId: kept.id, vmId: orphanVM });
    // Someone else's devices and rules in the same namespace.
    await namespaces.ip(node, ['link', 'add', 'other0', 'type', 'bridge']);
    await namespaces.ip(node, ['tuntap', 'add', 'dev', 'othertap0', 'mode', 'tap']);
    await namespaces.exec(node, 'nft', [
      'add table inet other; add chain inet other input { type filter hook input priority 0; }',
    ]);

    const keep = { networks: new Set([kept.id]), vms: new Set([keptVM]) };
    await host.cleanup(keep);

    const state = await host.inspect();
    assert.deepEqual(
      state.bridges.map((bridge) => bridge.name),
      [`imp-br-${kept.id}`],
    );
    assert.deepEqual(
      state.taps.map((tap) => tap.name),
      [tapName(keptVM)],
    );
    assert.equal(state.chains.length, 4);
    assert.ok(state.chains.every((chain) => chain.networkId === kept.id));
    const links = await namespaces.ip(node, ['link', 'show']);
    assert.match(links, /other0/);
    assert.match(links, /othertap0/);
    assert.match(await namespaces.exec(node, 'nft', ['list', 'ruleset']), /table inet other/);

    const settled = await host.inspect();
    await host.cleanup(keep);
    assert.deepEqual(await host.inspect(), settled, 'a second cleanup changes nothing');
  });

  it('refuses keep sets with ids it could not have made, before removing anything', async () => {
    await assert.rejects(
      host.cleanup({ networks: new Set(['default/web']), vms: new Set() }),
      /"default\/web" is not an Imp network id/,
    );
    assert.equal((await host.inspect()).bridges.length, 1);
  });

  it('removes everything when nothing is kept', async () => {
    await host.cleanup({ networks: new Set(), vms: new Set() });
    assert.deepEqual(await host.inspect(), { bridges: [], taps: [], table: false, chains: [] });
    assert.match(await namespaces.exec(node, 'nft', ['list', 'ruleset']), /table inet other/);
  });
});

/** The namespace's links and Imp's rules as text, minus what changes on every reload. */
async function snapshot(namespaces: TestNamespaces, node: string, host: HostNetwork) {
  const links = JSON.parse(await namespaces.ip(node, ['-d', '-j', 'addr', 'show'])) as object[];
  const rules = await namespaces.exec(node, 'nft', ['list', 'table', 'inet', 'imp']);
  const state = await host.inspect();
  return {
    links: JSON.stringify(links).replace(/"(gc_timer|[a-z_]+_timer)":[\d.]+/g, ''),
    rules,
    chains: state.chains.map((chain) => ({ ...chain, rules: chain.rules.length })),
  };
}
