/** Locates (or builds, through hack/kube-binaries.sh) kube-apiserver, etcd and kubectl. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';

export interface KubeBinaries {
  dir: string;
  kubeApiserver: string;
  etcd: string;
  kubectl: string;
}

const script = join(import.meta.dirname, '..', '..', 'hack', 'kube-binaries.sh');

/**
 * Resolves the control-plane binaries. A cold cache builds them from the Go module proxy,
 * which takes minutes; the script's progress lines are passed to `onProgress`.
 */
export async function kubeBinaries(
  onProgress: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<KubeBinaries> {
  const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderrTail = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    const text = chunk.toString();
    stderrTail = (stderrTail + text).slice(-4000);
    for (const line of text.split('\n')) if (line.startsWith('[kube-binaries]')) onProgress(line);
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) {
    throw new Error(`hack/kube-binaries.sh failed with exit code ${code}:\n${stderrTail}`);
  }
  const dir = stdout.trim().split('\n').at(-1) ?? '';
  return {
    dir,
    kubeApiserver: join(dir, 'kube-apiserver'),
    etcd: join(dir, 'etcd'),
    kubectl: join(dir, 'kubectl'),
  };
}
