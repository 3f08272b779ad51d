/**
 * Imp on one host with no cluster to bring: a real control plane, the operator and one
 * agent, with VM networks inside a network namespace and VMs reached through loopback
 * port-forwards. `imp local up` and the end-to-end tests both run this.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { parseAllDocuments } from 'yaml';
import type { Agent } from '../agent/agent.ts';
import { createNodeAgent } from '../agent/node.ts';
import { startAgentServer } from '../agent/server.ts';
import { kinds } from '../api/kinds.ts';
import { renderCrdFiles } from '../api/manifests.ts';
import { isConflict, KubeClient } from '../kube/client.ts';
import type { KubeObject } from '../kube/object.ts';
import { type Resource, resources } from '../kube/resources.ts';
import { fileLogger } from '../log.ts';
import { Operator } from '../operator/operator.ts';
import { ControlPlane } from './controlplane.ts';
import { defaultCacheDir, publishNginxStandIn } from './images.ts';
import { deleteNetns, recreateNetns } from './netns.ts';
import { freePort } from './ports.ts';
import { checkPrerequisites, chooseHypervisor, type HypervisorChoice } from './preflight.ts';
import { LocalRegistry } from './registry.ts';

export const SYSTEM_NAMESPACE = 'imp-system';
const FIELD_MANAGER = 'imp-local';

export interface LocalStackOptions {
  /** The project root: `.imp/` (kubeconfig, state) lives here. */
  root: string;
  progress: (line: string) => void;
  /** Log level for the in-process operator and agent (their JSON goes to `.imp/imp.log`). */
  logLevel?: string;
  firecrackerBin?: string;
  /** Network namespace name (default imp-local). */
  netns?: string;
  cacheDir?: string;
}

export class LocalStack {
  readonly kubeconfigPath: string;
  readonly hypervisor: HypervisorChoice;
  readonly client: KubeClient;
  private currentAgent: Agent;
  private readonly makeAgent: () => Promise<{
    agent: Agent;
    stop: (stopVMs?: boolean) => Promise<void>;
  }>;
  private stopAgent: (stopVMs?: boolean) => Promise<void>;
  readonly netns: string;
  /** The kubectl binary the control plane was built with. */
  readonly kubectl: string;
  /** host:port of the agent's tunnel and console server. */
  readonly agentEndpoint: string;
  private readonly cleanups: (() => Promise<unknown>)[];

  private constructor(fields: {
    kubeconfigPath: string;
    hypervisor: HypervisorChoice;
    client: KubeClient;
    agent: { agent: Agent; stop: (stopVMs?: boolean) => Promise<void> };
    makeAgent: () => Promise<{ agent: Agent; stop: (stopVMs?: boolean) => Promise<void> }>;
    netns: string;
    agentEndpoint: string;
    kubectl: string;
    cleanups: (() => Promise<unknown>)[];
  }) {
    this.kubectl = fields.kubectl;
    this.agentEndpoint = fields.agentEndpoint;
    this.kubeconfigPath = fields.kubeconfigPath;
    this.hypervisor = fields.hypervisor;
    this.client = fields.client;
    this.currentAgent = fields.agent.agent;
    this.stopAgent = fields.agent.stop;
    this.makeAgent = fields.makeAgent;
    this.netns = fields.netns;
    this.cleanups = fields.cleanups;
  }

  static async start(options: LocalStackOptions): Promise<LocalStack> {
    const { progress } = options;
    const impDir = join(options.root, '.imp');
    const cacheDir = options.cacheDir ?? defaultCacheDir();
    const netns = options.netns ?? 'imp-local';
    const cleanups: (() => Promise<unknown>)[] = [];
    const undo = async () => {
      for (const fn of cleanups.reverse()) await fn().catch(() => {});
    };
    try {
      await checkPrerequisites();
      const hypervisor = await chooseHypervisor(options.firecrackerBin);
      progress(`hypervisor: ${hypervisor.type} (${hypervisor.accel}) because ${hypervisor.reason}`);
      await mkdir(impDir, { recursive: true });
      // JSON logs of the in-process operator and agent go to a file, progress to the terminal.
      await writeFile(join(impDir, 'imp.log'), '');
      const log = fileLogger(join(impDir, 'imp.log'), options.logLevel);

      progress('starting the control plane (kube-apiserver + etcd)');
      const kubeconfigPath = join(impDir, 'kubeconfig');
      const plane = await ControlPlane.start({ kubeconfigPath, onProgress: progress });
      cleanups.push(() => plane.stop());
      cleanups.push(() => rm(kubeconfigPath, { force: true }));
      const client = KubeClient.load(kubeconfigPath);
      cleanups.push(async () => client.close());

      progress('installing the imp.dev CRDs');
      await installCrds(client);
      await ensureObject(client, resources.Namespace, {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: SYSTEM_NAMESPACE },
      });

      progress('starting a local registry with the quick-start image');
      const registry = await LocalRegistry.start({ dataDir: join(cacheDir, 'local-registry') });
      cleanups.push(() => registry.stop());
      await publishNginxStandIn(registry.host, { cacheDir });
      await client.apply(
        resources.ClusterImpConfig,
        {
          metadata: { name: 'default' },
          spec: {
            registryMirrors: [{ registry: 'docker.io', endpoints: [registry.url], insecure: true }],
          },
        },
        FIELD_MANAGER,
      );

      progress(`starting the operator and an agent (VM networks in namespace ${netns})`);
      const node = `imp-${hostname()
        .toLowerCase()
        .replace(/[^a-z0-9-]/g, '-')}`.slice(0, 63);
      await ensureObject(client, resources.Node, {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: {
          name: node,
          labels: { 'kubernetes.io/hostname': node, 'imp.dev/local': 'true' },
        },
      });
      await recreateNetns(netns);
      cleanups.push(() => deleteNetns(netns));
      const operator = new Operator({
        client,
        log: log.child({ component: 'operator' }),
        namespace: SYSTEM_NAMESPACE,
        identity: 'local',
      });
      await operator.start();
      cleanups.push(() => operator.stop());
      const agentPort = await freePort();
      const makeAgent = async () => {
        const agent = createNodeAgent(client, log.child({ component: 'agent' }), {
          node,
          namespace: SYSTEM_NAMESPACE,
          stateDir: join(impDir, 'state'),
          cacheDir,
          hypervisor: hypervisor.type,
          accel: hypervisor.accel,
          firecrackerBin: options.firecrackerBin,
          netns,
          endpoint: `127.0.0.1:${agentPort}`,
        });
        const server: FastifyInstance = await startAgentServer(
          agent,
          { host: '127.0.0.1', port: agentPort },
          log,
          netns,
        );
        try {
          await agent.start();
        } catch (err) {
          // A half-started agent (say, the kernel download failed) must not keep its port.
          await agent.stop({ stopVMs: false }).catch(() => {});
          await server.close();
          throw err;
        }
        return {
          agent,
          stop: async (stopVMs = false) => {
            await agent.stop({ stopVMs });
            await server.close();
          },
        };
      };
      progress('preparing the guest kernel (downloaded from Debian once, then cached)');
      const agent = await makeAgent();
      const stack = new LocalStack({
        kubeconfigPath,
        hypervisor,
        client,
        agent,
        makeAgent,
        netns,
        agentEndpoint: `127.0.0.1:${agentPort}`,
        kubectl: plane.binaries.kubectl,
        cleanups,
      });
      cleanups.push(() => stack.stopAgentAndVMs());
      return stack;
    } catch (err) {
      await undo();
      throw err;
    }
  }

  get agent(): Agent {
    return this.currentAgent;
  }

  /**
   * Stops the agent, leaving its VMs running, and starts a new one on the same state dir,
   * as a node agent's restart or upgrade would.
   */
  async restartAgent(): Promise<Agent> {
    await this.stopAgent();
    const next = await this.makeAgent();
    this.currentAgent = next.agent;
    this.stopAgent = next.stop;
    return next.agent;
  }

  private async stopAgentAndVMs(): Promise<void> {
    await this.stopAgent(true);
  }
  /** Applies every object in a YAML file (server-side apply, so re-applying is harmless). */
  async applyFile(path: string): Promise<string[]> {
    const applied: string[] = [];
    for (const doc of parseAllDocuments(await readFile(path, 'utf8'))) {
      const object = doc.toJS() as KubeObject | null;
      if (!object) continue;
      const resource = resourceFor(object.kind);
      await this.client.apply(resource, object, FIELD_MANAGER);
      applied.push(`${object.kind}/${object.metadata.name}`);
    }
    return applied;
  }

  /** Runs `fn` first when the stack stops. */
  onStop(fn: () => Promise<unknown>): void {
    this.cleanups.push(fn);
  }

  /** Stops the VMs, the agent, the operator, the registry and the control plane. */
  async stop(): Promise<void> {
    for (const fn of this.cleanups.reverse()) {
      await fn().catch(() => {});
    }
    this.cleanups.length = 0;
  }
}

function resourceFor(kind: string): Resource {
  const match = Object.values(resources).find((r) => r.kind === kind);
  if (!match) throw new Error(`local mode cannot apply kind ${kind}`);
  return match;
}

async function ensureObject(client: KubeClient, resource: Resource, object: KubeObject) {
  try {
    await client.create(resource, object);
  } catch (err) {
    if (!isConflict(err)) throw err;
  }
}

/** Applies the CRDs and waits until the API server serves every kind. */
export async function installCrds(client: KubeClient): Promise<void> {
  const { parse } = await import('yaml');
  for (const text of renderCrdFiles().values()) {
    await client.apply(resources.CustomResourceDefinition, parse(text), FIELD_MANAGER);
  }
  const deadline = Date.now() + 60_000;
  for (const info of Object.values(kinds)) {
    for (;;) {
      const crd = await client.get<
        KubeObject<unknown, { conditions?: { type: string; status: string }[] }>
      >(resources.CustomResourceDefinition, `${info.plural}.imp.dev`);
      if (crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'))
        break;
      if (Date.now() > deadline) throw new Error(`CRD ${info.plural}.imp.dev not established`);
      await sleep(100);
    }
  }
}
