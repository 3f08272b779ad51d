/** The network namespace local mode keeps every VM network in. */
import { runTool } from '../agent/image/run.ts';

export async function netnsExists(name: string): Promise<boolean> {
  const { stdout } = await runTool('ip', ['netns', 'list'], { timeoutMs: 10_000 });
  return stdout
    .toString()
    .split('\n')
    .some((line) => line.split(/\s/)[0] === name);
}

/** Creates `name` fresh (removing a leftover from a crashed run) with loopback up. */
export async function recreateNetns(name: string): Promise<void> {
  if (await netnsExists(name)) await deleteNetns(name);
  await runTool('ip', ['netns', 'add', name], { timeoutMs: 10_000 });
  await runTool('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { timeoutMs: 10_000 });
}

/** Deletes the namespace; its bridges, TAPs and rules go with it. */
export async function deleteNetns(name: string): Promise<void> {
  if (!(await netnsExists(name))) return;
  await runTool('ip', ['netns', 'del', name], { timeoutMs: 10_000 });
}
