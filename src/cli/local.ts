/**
 * `imp local up`: Imp on this host with the quick-start running and reachable on loopback.
 * `imp local down`: stops a running `imp local up` and removes what it left.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ImpVMSpec, ImpVMStatus } from '../api/vm.ts';
import type { KubeObject } from '../kube/object.ts';
import { resources } from '../kube/resources.ts';
import { deleteNetns } from '../local/netns.ts';
import { LocalStack } from '../local/stack.ts';
import { createLogger } from '../log.ts';
import { parse, UsageError } from './args.ts';
import { startForward } from './forward.ts';
import { untilSignal } from './operator.ts';

export const localHelp = `imp local up [flags]    start Imp on this host and run the quick-start
imp local down          stop it and remove what it created
  --check               exit after the quick-start VM answered (for CI); also IMP_LOCAL_CHECK=1
  --port N              loopback port forwarded to quick-vm:80 (default 8080, or any free one)
  --firecracker-bin P   use Firecracker when KVM can run guests (also IMP_FIRECRACKER_BIN)
  --log-level LEVEL     level of .imp/imp.log (default info)`;

const projectRoot = join(import.meta.dirname, '..', '..');
const pidFile = join(projectRoot, '.imp', 'local.pid');

export async function runLocal(argv: string[]): Promise<void> {
  const [action, ...rest] = argv;
  if (action === 'up') return await up(rest);
  if (action === 'down') return await down();
  throw new UsageError('say "imp local up" or "imp local down"');
}

type VM = KubeObject<ImpVMSpec, ImpVMStatus>;

async function up(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    check: { type: 'boolean' },
    port: { type: 'string' },
    'firecracker-bin': { type: 'string' },
    'log-level': { type: 'string' },
  });
  const check = values.check || process.env.IMP_LOCAL_CHECK === '1';
  const requestedPort = parsePort(values.port);
  // One instance per project: a second would share the namespace, node and state dir.
  const running = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (running && running !== process.pid && (await isLocalUp(running))) {
    throw new Error(
      `imp local up is already running here (pid ${running}); stop it with Ctrl-C in its ` +
        'terminal or "npm run imp -- local down" first',
    );
  }
  await mkdir(dirname(pidFile), { recursive: true });
  await writeFile(pidFile, `${process.pid}\n`);
  const started = performance.now();
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)}s`;
  const progress = (line: string) => console.log(`[imp ${elapsed()}] ${line}`);

  const stack = await LocalStack.start({
    root: projectRoot,
    progress,
    logLevel: values['log-level'],
    firecrackerBin: values['firecracker-bin'] ?? process.env.IMP_FIRECRACKER_BIN,
  }).catch(async (err: unknown) => {
    await rm(pidFile, { force: true });
    throw err;
  });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    progress('stopping: VMs, agent, operator, registry, control plane');
    // A second Ctrl-C would leave VMs and their network behind: say what is going on. A
    // third one is taken at its word and ends the process at once.
    const patience = () => {
      progress('still stopping; Ctrl-C again abandons the VMs');
      for (const signal of ['SIGINT', 'SIGTERM'] as const) process.off(signal, patience);
    };
    process.on('SIGINT', patience);
    process.on('SIGTERM', patience);
    try {
      await stack.stop();
    } finally {
      process.off('SIGINT', patience);
      process.off('SIGTERM', patience);
    }
    await rm(pidFile, { force: true });
    progress('stopped; nothing left running');
  };
  // From here on VMs exist: an interrupt at any point stops them with the rest.
  const interrupted = untilSignal().then((signal) => {
    throw new Interrupted(signal);
  });
  interrupted.catch(() => {});
  try {
    await Promise.race([interrupted, bringUp()]);
  } catch (err) {
    await stop();
    if (err instanceof Interrupted) return;
    throw err;
  }
  if (check) return await stop();
  await interrupted.catch(() => {});
  await stop();

  async function bringUp() {
    const quickstart = join(projectRoot, 'examples', 'quickstart.yaml');
    progress(
      `applying examples/quickstart.yaml: ${(await stack.applyFile(quickstart)).join(', ')}`,
    );
    const vm = await waitRunning(stack, 'default', 'quick-vm', progress);
    if (stopping) return; // interrupted meanwhile: nothing more to start
    const forward = await startForward({
      localPort: requestedPort ?? (await freeDefaultPort()),
      endpoint: stack.agentEndpoint,
      namespace: 'default',
      vm: 'quick-vm',
      remotePort: 80,
      log: createLogger({ name: 'port-forward', level: 'warn' }),
    });
    stack.onStop(async () => forward.server.close());
    const url = `http://127.0.0.1:${forward.port}/`;
    const page = await fetchWithRetry(url);
    progress(`quick-vm (${vm.status?.ip} on node ${vm.status?.nodeName}) answered on ${url}:`);
    const title = /<title>([^<]*)<\/title>|<h1>([^<]*)<\/h1>/i.exec(page);
    console.log(`    ${(title?.[1] ?? title?.[2] ?? page.slice(0, 80)).trim()}`);
    console.log(nextSteps(url, stack));
  }
}

/** An interrupt (Ctrl-C, SIGTERM, a closed terminal) while Imp was coming up. */
class Interrupted extends Error {
  constructor(signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
  }
}

/** Waits for the VM to run, printing each new phase or condition reason on the way. */
async function waitRunning(
  stack: LocalStack,
  namespace: string,
  name: string,
  progress: (line: string) => void,
): Promise<VM> {
  const deadline = Date.now() + 10 * 60_000;
  let last = '';
  for (;;) {
    const vm = await stack.client.get<VM>(resources.ImpVM, name, namespace);
    const conditions = vm.status?.conditions ?? [];
    const provisioned = conditions.find((c) => c.type === 'Provisioned');
    const blocking = conditions.find((c) => c.status === 'False' && c.type !== 'Ready');
    const phase = vm.status?.phase ?? 'Pending';
    const detail =
      phase === 'Provisioning' && provisioned?.status === 'False'
        ? `${provisioned.reason}: ${provisioned.message}`
        : blocking
          ? `${blocking.reason}: ${blocking.message}`
          : '';
    const line = `${name}: ${phase}${detail ? ` (${detail})` : ''}`;
    if (line !== last) progress(line);
    last = line;
    if (phase === 'Running') return vm;
    if (phase === 'Failed' || phase === 'Succeeded') {
      throw new Error(`${name} stopped (${phase}); see .imp/imp.log and "imp console ${name}"`);
    }
    if (Date.now() > deadline) throw new Error(`${name} did not reach Running within 10 minutes`);
    await sleep(250);
  }
}

/** The `--port` value, checked before anything starts. */
function parsePort(requested: string | undefined): number | undefined {
  if (requested === undefined) return undefined;
  const port = Number(requested);
  if (requested.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`--port must be 0-65535 (got "${requested}")`);
  }
  return port;
}

/** 8080 when free, else any free port. */
async function freeDefaultPort(): Promise<number> {
  const { createServer } = await import('node:net');
  return await new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(0));
    probe.listen(8080, '127.0.0.1', () => probe.close(() => resolve(8080)));
  });
}

async function fetchWithRetry(url: string): Promise<string> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 40; attempt++) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      const text = await res.text();
      if (res.ok) return text;
      lastError = new Error(`HTTP ${res.status}`);
    } catch (err) {
      lastError = err;
    }
    await sleep(250);
  }
  throw new Error(`quick-vm did not answer on ${url}`, { cause: lastError });
}

function nextSteps(url: string, stack: LocalStack): string {
  const kc = '--kubeconfig .imp/kubeconfig';
  return `
Imp is running on this host (${stack.hypervisor.type}, ${stack.hypervisor.accel}).
Try, in another terminal:
  curl ${url}
  ${stack.kubectl} ${kc} get impvm,impnetwork
  npm run imp -- console quick-vm ${kc}
  npm run imp -- port-forward quick-vm 8081:80 ${kc}
Logs of the operator and agent: .imp/imp.log. Ctrl-C stops everything.`;
}

async function down(): Promise<void> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  // A stale pid file may name a pid the system has since given to another program.
  const wasRunning = pid > 0 && (await isLocalUp(pid));
  if (wasRunning) {
    process.kill(pid, 'SIGTERM');
    console.log(`asked imp local up (pid ${pid}) to stop`);
    const deadline = Date.now() + 120_000;
    while (isAlive(pid)) {
      if (Date.now() > deadline) throw new Error(`imp local up (pid ${pid}) did not stop in 2m`);
      await sleep(200);
    }
  }
  await deleteNetns('imp-local').catch(() => {});
  await rm(pidFile, { force: true });
  console.log(wasRunning ? 'local Imp is down' : 'imp local up was not running; nothing to stop');
}

async function isLocalUp(pid: number): Promise<boolean> {
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  return argv.includes('local') && argv.includes('up');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
