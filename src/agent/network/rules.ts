/**
 * The nftables side of a node's VM networks. Imp keeps everything in one table of its own,
 * `inet imp`, and gives each network its own base chains, one per hook it needs:
 *
 *   net-<id>-prerouting   filter, priority raw:    drop guest traffic to the metadata address
 *   net-<id>-input        filter, priority filter: keep guests away from the node itself
 *   net-<id>-forward      filter, priority filter: keep guests away from other Imp networks
 *   net-<id>-postrouting  nat, priority srcnat:    masquerade guest traffic leaving the node
 *
 * Everything a network owns is therefore found by its chain names, and removing a network is
 * deleting its chains: no shared chain holds a jump that could be left dangling. Every rule
 * also carries a comment `imp:<id>:<purpose>` for people reading `nft list ruleset`.
 * Each script is loaded as one nftables transaction, so a node never runs half a rule set.
 */
import type { ResolvedNetwork } from './spec.ts';

export const tableFamily = 'inet';
export const tableName = 'imp';
const table = `${tableFamily} ${tableName}`;

export const hooks = ['prerouting', 'input', 'forward', 'postrouting'] as const;
export type Hook = (typeof hooks)[number];

const chainTypes: Record<Hook, string> = {
  // Before conntrack and before any DNAT another component may apply to the metadata
  // address, so a redirect to a local metadata proxy cannot sneak past the drop.
  prerouting: 'type filter hook prerouting priority raw; policy accept;',
  input: 'type filter hook input priority filter; policy accept;',
  forward: 'type filter hook forward priority filter; policy accept;',
  postrouting: 'type nat hook postrouting priority srcnat; policy accept;',
};

export const metadataAddress = '169.254.169.254';

/** The chain of network `networkId` on `hook`. */
export function chainName(networkId: string, hook: Hook): string {
  return `net-${networkId}-${hook}`;
}

/** The network a chain in Imp's table belongs to, if its name says. */
export function networkIdOfChain(name: string): string | undefined {
  return /^net-([0-9a-f]{8})-[a-z]+$/.exec(name)?.[1];
}

interface Rule {
  /** The nft rule body, without the comment. */
  body: string;
  /** Short kebab-case reason, kept in the rule's comment. */
  purpose: string;
}

/** The rules a network needs on each hook; a hook with none gets no chain. */
export function networkRules(net: ResolvedNetwork): Record<Hook, Rule[]> {
  const from = `iifname "${net.bridge}"`;
  const rules: Record<Hook, Rule[]> = { prerouting: [], input: [], forward: [], postrouting: [] };

  if (net.blockMetadata) {
    rules.prerouting.push({
      body: `${from} ip daddr ${metadataAddress} drop`,
      purpose: 'metadata',
    });
  }

  if (net.blockNode) {
    // Replies to connections the node opened (agent probes, port-forwards) must come back.
    rules.input.push({ body: `${from} ct state established,related accept`, purpose: 'replies' });
    rules.input.push({
      body: `${from} ip daddr ${net.gateway} icmp type echo-request accept`,
      purpose: 'gateway-ping',
    });
    if (net.dnsOnGateway) {
      rules.input.push({
        body: `${from} ip daddr ${net.gateway} meta l4proto { tcp, udp } th dport 53 accept`,
        purpose: 'gateway-dns',
      });
    }
    rules.input.push({ body: `${from} drop`, purpose: 'node' });
  }

  // Each network drops what it sends into another Imp bridge; with every network doing the
  // same, both directions are closed. Frames between ports of one bridge keep the same input
  // and output bridge even when br_netfilter shows them to these hooks, so they pass.
  rules.forward.push({
    body: `${from} oifname "imp-br-*" oifname != "${net.bridge}" drop`,
    purpose: 'other-networks',
  });

  if (net.nat) {
    rules.postrouting.push({
      body: `ip saddr ${net.subnet} oifname != "${net.bridge}" masquerade`,
      purpose: 'masquerade',
    });
  }
  return rules;
}

/**
 * The script that makes network `net`'s chains hold exactly its rules. Chains are created if
 * missing and flushed before their rules are added, within one transaction, so running it
 * again leaves the same rules (with new handles) and never duplicates.
 */
export function ensureScript(net: ResolvedNetwork): string {
  const lines = [`add table ${table}`];
  const rules = networkRules(net);
  for (const hook of hooks) {
    const chain = chainName(net.id, hook);
    if (rules[hook].length === 0) {
      lines.push(...deleteChainLines(chain));
      continue;
    }
    lines.push(`add chain ${table} ${chain} { ${chainTypes[hook]} }`);
    lines.push(`flush chain ${table} ${chain}`);
    for (const rule of rules[hook]) {
      lines.push(`add rule ${table} ${chain} ${rule.body} comment "imp:${net.id}:${rule.purpose}"`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The script that deletes the given chains, whether or not they exist, and the table too
 * when `dropTable` is set (the caller knows nothing else is left in it).
 */
export function removeScript(chains: string[], dropTable: boolean): string {
  const lines = [`add table ${table}`];
  if (dropTable) {
    lines.push(`delete table ${table}`);
  } else {
    for (const chain of chains) lines.push(...deleteChainLines(chain));
  }
  return `${lines.join('\n')}\n`;
}

/** All chains a network can own. */
export function networkChains(networkId: string): string[] {
  return hooks.map((hook) => chainName(networkId, hook));
}

/**
 * Deleting a chain that does not exist fails, and nftables 1.0.6 has no `destroy`; adding
 * it first (a no-op when it exists, also for a base chain) makes the pair always succeed.
 */
function deleteChainLines(chain: string): string[] {
  return [`add chain ${table} ${chain}`, `delete chain ${table} ${chain}`];
}

export interface RuleState {
  handle: number;
  comment?: string;
}

export interface ChainState {
  name: string;
  /** The network that owns the chain, when its name says. */
  networkId?: string;
  hook?: string;
  handle: number;
  rules: RuleState[];
}

/** Reads the chains and rules of Imp's table from `nft -j list table inet imp`. */
export function parseTable(json: unknown): ChainState[] {
  const items = (json as { nftables?: unknown[] }).nftables ?? [];
  const chains = new Map<string, ChainState>();
  for (const item of items as Record<string, Record<string, unknown>>[]) {
    const chain = item.chain;
    if (chain && chain.table === tableName && chain.family === tableFamily) {
      const name = String(chain.name);
      const networkId = networkIdOfChain(name);
      chains.set(name, {
        name,
        ...(networkId ? { networkId } : {}),
        ...(typeof chain.hook === 'string' ? { hook: chain.hook } : {}),
        handle: Number(chain.handle),
        rules: [],
      });
    }
  }
  for (const item of items as Record<string, Record<string, unknown>>[]) {
    const rule = item.rule;
    if (!rule || rule.table !== tableName || rule.family !== tableFamily) continue;
    chains.get(String(rule.chain))?.rules.push({
      handle: Number(rule.handle),
      ...(typeof rule.comment === 'string' ? { comment: rule.comment } : {}),
    });
  }
  return [...chains.values()];
}
