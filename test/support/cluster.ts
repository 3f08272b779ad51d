/** Test helpers around a real control plane: start it, install CRDs, run kubectl. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ControlPlane } from '../../src/local/controlplane.ts';

export const repoRoot = join(import.meta.dirname, '..', '..');
export const crdDir = join(repoRoot, 'config', 'crd', 'bases');

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs kubectl against the plane; never throws for a non-zero exit. */
export function kubectl(
  plane: ControlPlane,
  args: string[],
  input?: string,
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(plane.binaries.kubectl, ['--kubeconfig', plane.kubeconfigPath, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** Like kubectl(), but throws with kubectl's stderr when it fails. */
export async function kubectlOk(plane: ControlPlane, args: string[], input?: string) {
  const result = await kubectl(plane, args, input);
  if (result.code !== 0) {
    throw new Error(`kubectl ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  }
  return result.stdout;
}

/** Starts a control plane with Imp's CRDs installed and established. */
export async function startPlaneWithCrds(): Promise<ControlPlane> {
  const plane = await ControlPlane.start({ onProgress: (line) => console.error(line) });
  try {
    await kubectlOk(plane, ['apply', '--server-side', '-f', crdDir]);
    await kubectlOk(plane, [
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd',
      '--all',
    ]);
    return plane;
  } catch (err) {
    await plane.stop();
    throw err;
  }
}
