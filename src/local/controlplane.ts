/**
 * A real Kubernetes control plane (etcd + kube-apiserver) on loopback, for tests and for
 * `imp local up`. Ports are ephemeral, state lives in a temporary directory, and `stop()`
 * removes all of it.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type KubeBinaries, kubeBinaries } from './binaries.ts';
import { freePort } from './ports.ts';
import { type ManagedProcess, removeOnExit, startProcess } from './process.ts';

export interface ControlPlaneOptions {
  binaries?: KubeBinaries;
  /** Keep state here instead of a fresh temporary directory. */
  dataDir?: string;
  /** Where to write the admin kubeconfig (default: `<dataDir>/kubeconfig`). */
  kubeconfigPath?: string;
  onProgress?: (line: string) => void;
  startTimeoutMs?: number;
  /** Extra kube-apiserver flags, appended last so they override Imp's. */
  apiServerArgs?: string[];
}

export class ControlPlane {
  readonly dataDir: string;
  readonly kubeconfigPath: string;
  readonly server: string;
  readonly token: string;
  readonly binaries: KubeBinaries;
  private readonly processes: ManagedProcess[];
  private readonly ownsDataDir: boolean;
  private readonly forgetDataDir: () => void;

  private constructor(fields: {
    dataDir: string;
    kubeconfigPath: string;
    server: string;
    token: string;
    binaries: KubeBinaries;
    processes: ManagedProcess[];
    ownsDataDir: boolean;
    forgetDataDir: () => void;
  }) {
    this.dataDir = fields.dataDir;
    this.kubeconfigPath = fields.kubeconfigPath;
    this.server = fields.server;
    this.token = fields.token;
    this.binaries = fields.binaries;
    this.processes = fields.processes;
    this.ownsDataDir = fields.ownsDataDir;
    this.forgetDataDir = fields.forgetDataDir;
  }

  /** Starts etcd and kube-apiserver and waits until the API server is ready. */
  static async start(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const progress = options.onProgress ?? (() => {});
    const binaries = options.binaries ?? (await kubeBinaries(progress));
    const ownsDataDir = !options.dataDir;
    const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'imp-controlplane-')));
    const forgetDataDir = ownsDataDir ? removeOnExit(dataDir) : () => true;
    const kubeconfigPath = options.kubeconfigPath ?? join(dataDir, 'kubeconfig');
    const processes: ManagedProcess[] = [];
    try {
      const etcdUrl = await startEtcd(binaries, dataDir, processes);
      const { server, token } = await startApiServer(
        binaries,
        dataDir,
        etcdUrl,
        processes,
        options.apiServerArgs ?? [],
      );
      const plane = new ControlPlane({
        dataDir,
        kubeconfigPath,
        server,
        token,
        binaries,
        processes,
        ownsDataDir,
        forgetDataDir,
      });
      const ca = await plane.waitReady(options.startTimeoutMs ?? 60_000);
      await writeKubeconfig(kubeconfigPath, server, token, ca);
      progress(`control plane ready at ${server}`);
      return plane;
    } catch (err) {
      await Promise.all(processes.map((p) => p.stop()));
      if (ownsDataDir) await rm(dataDir, { recursive: true, force: true });
      forgetDataDir();
      throw new Error('starting the local control plane failed', { cause: err });
    }
  }

  /**
   * Polls `/readyz` until it answers 200, or fails with the log tail of a process that died.
   * Returns the API server's self-signed certificate chain, which clients then trust.
   */
  private async waitReady(timeoutMs: number): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    const caFile = join(this.dataDir, 'certs', 'apiserver.crt');
    let lastError: unknown;
    while (Date.now() < deadline) {
      for (const p of this.processes) {
        if (p.child.exitCode !== null) {
          throw new Error(`${p.name} exited early: ${await logTail(p.logFile)}`);
        }
      }
      try {
        const ca = await readFile(caFile);
        const status = await httpsStatus(`${this.server}/readyz`, this.token, ca);
        if (status === 200) return ca;
        lastError = new Error(`readyz answered ${status}`);
      } catch (err) {
        lastError = err;
      }
      await sleep(200);
    }
    throw new Error(`kube-apiserver not ready after ${timeoutMs} ms`, { cause: lastError });
  }

  /** Stops both processes and removes the data directory if this plane created it. */
  async stop(): Promise<void> {
    for (const p of [...this.processes].reverse()) await p.stop();
    if (this.ownsDataDir) await rm(this.dataDir, { recursive: true, force: true });
    this.forgetDataDir();
  }
}

async function startEtcd(
  binaries: KubeBinaries,
  dataDir: string,
  processes: ManagedProcess[],
): Promise<string> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const clientUrl = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const args = [
    `--name=imp`,
    `--data-dir=${join(dataDir, 'etcd')}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=imp=${peerUrl}`,
    // Throwaway state: durability costs fsyncs that only slow tests down.
    '--unsafe-no-fsync=true',
    '--log-level=warn',
  ];
  processes.push(startProcess('etcd', binaries.etcd, args, join(dataDir, 'etcd.log')));
  return clientUrl;
}

async function startApiServer(
  binaries: KubeBinaries,
  dataDir: string,
  etcdUrl: string,
  processes: ManagedProcess[],
  extraArgs: string[],
): Promise<{ server: string; token: string }> {
  const port = await freePort();
  const token = randomBytes(24).toString('hex');
  const certDir = join(dataDir, 'certs');
  const tokenFile = join(dataDir, 'tokens.csv');
  await writeFile(tokenFile, `${token},imp-admin,imp-admin,"system:masters"\n`, { mode: 0o600 });
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const saKey = join(dataDir, 'sa.key');
  const saPub = join(dataDir, 'sa.pub');
  await writeFile(saKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  await writeFile(saPub, publicKey.export({ type: 'spki', format: 'pem' }));
  const args = [
    `--etcd-servers=${etcdUrl}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${port}`,
    `--cert-dir=${certDir}`,
    `--token-auth-file=${tokenFile}`,
    '--authorization-mode=RBAC',
    '--service-cluster-ip-range=10.96.0.0/16',
    `--service-account-issuer=https://127.0.0.1:${port}`,
    `--service-account-key-file=${saPub}`,
    `--service-account-signing-key-file=${saKey}`,
    '--allow-privileged=true',
    '--disable-admission-plugins=ServiceAccount',
    '--enable-priority-and-fairness=false',
    '--v=0',
    ...extraArgs,
  ];
  processes.push(
    startProcess('kube-apiserver', binaries.kubeApiserver, args, join(dataDir, 'apiserver.log')),
  );
  return { server: `https://127.0.0.1:${port}`, token };
}

async function writeKubeconfig(
  path: string,
  server: string,
  token: string,
  ca: Buffer,
): Promise<void> {
  const text = `apiVersion: v1
kind: Config
clusters:
- name: imp-local
  cluster:
    server: ${server}
    certificate-authority-data: ${ca.toString('base64')}
users:
- name: imp-admin
  user:
    token: ${token}
contexts:
- name: imp-local
  context:
    cluster: imp-local
    user: imp-admin
current-context: imp-local
`;
  await writeFile(path, text, { mode: 0o600 });
}

function httpsStatus(url: string, token: string, ca: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { authorization: `Bearer ${token}` }, ca }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.setTimeout(2000, () => req.destroy(new Error('readyz timed out')));
    req.end();
  });
}

async function logTail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').slice(-20).join('\n');
}
