/**
 * VM root disks. hack/make-rootdisk.sh owns what a root disk contains (the image's files plus
 * the guest init under /.imp); this module runs it once per image and disk size, then gives
 * each VM a copy of that base with the VM's own /.imp/workload.sh written in.
 *
 * Why copy instead of running the script per VM: measured with a 950 MB root filesystem,
 * `mkfs.ext4 -d` took 6.4 s and a sparse copy of the result 3.4 s; on XFS or btrfs the copy is
 * a reflink and nearly free. For tiny images both take tens of milliseconds, and the script's
 * setup (busybox applet links) makes a per-VM build cost about 0.4 s.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { runTool } from './run.ts';

/** Where the workload config lives on the disk; the guest init reads it (docs/guest.md). */
export const workloadPath = '/.imp/workload.sh';

/** Tools and files the base disk is made from; their contents key the base disk cache. */
export interface RootDiskRecipe {
  /** hack/make-rootdisk.sh; the guest files it installs sit in `../guest` next to it. */
  script: string;
  /** Static busybox installed as the guest's /.imp/bin. */
  busybox: string;
  /** Static tini that reaps the workload's orphans. */
  tini: string;
}

/** The recipe as found in this repository, with Debian's static busybox and tini. */
export function defaultRootDiskRecipe(): RootDiskRecipe {
  const repo = join(import.meta.dirname, '..', '..', '..');
  return {
    script: join(repo, 'hack', 'make-rootdisk.sh'),
    busybox: '/usr/bin/busybox',
    tini: '/usr/bin/tini-static',
  };
}

/** A digest of everything that ends up on a base disk besides the image itself. */
export async function recipeHash(recipe: RootDiskRecipe): Promise<string> {
  const guestDir = join(dirname(recipe.script), '..', 'guest');
  const guestFiles = (await readdir(guestDir, { withFileTypes: true }))
    .filter((entry) => entry.isFile())
    .map((entry) => join(guestDir, entry.name))
    .sort();
  const hash = createHash('sha256');
  for (const file of [recipe.script, recipe.busybox, recipe.tini, ...guestFiles]) {
    hash.update(`${basename(file)}\0`);
    hash.update(await readFile(file));
  }
  return hash.digest('hex');
}

export interface BaseDiskRequest {
  recipe: RootDiskRecipe;
  rootfsDir: string;
  outPath: string;
  sizeKiB: number;
  /** Scratch space on the same filesystem as `outPath`. */
  workDir: string;
  timeoutMs: number;
}

/**
 * Runs make-rootdisk.sh with a placeholder workload. The placeholder has no command, so a VM
 * whose own workload never got written fails with the init's BadWorkloadConfig instead of
 * running something else.
 */
export async function buildBaseDisk(request: BaseDiskRequest): Promise<void> {
  const placeholder = join(request.workDir, 'placeholder-workload.sh');
  await writeFile(placeholder, '# Replaced for each VM by the agent.\n', { mode: 0o644 });
  const partial = `${request.outPath}.partial-${randomBytes(6).toString('hex')}`;
  try {
    await runTool(
      'bash',
      [request.recipe.script, request.rootfsDir, partial, `${request.sizeKiB}k`, placeholder],
      {
        label: 'make-rootdisk.sh',
        timeoutMs: request.timeoutMs,
        env: { ...process.env, BUSYBOX: request.recipe.busybox, TINI: request.recipe.tini },
      },
    );
    await rename(partial, request.outPath);
  } finally {
    await rm(partial, { force: true });
  }
}

export interface VmDiskRequest {
  base: string;
  outPath: string;
  /** The text of /.imp/workload.sh. */
  workload: string;
  workDir: string;
  timeoutMs: number;
}

/**
 * Copies the base disk to `outPath` (sparse, and a reflink where the filesystem can) and
 * writes the VM's workload config into the copy with debugfs, which edits the image without
 * mounting it. An existing `outPath` is replaced only once the new disk is complete.
 */
export async function writeVmDisk(request: VmDiskRequest): Promise<void> {
  const partial = `${request.outPath}.partial-${randomBytes(6).toString('hex')}`;
  const options = { timeoutMs: request.timeoutMs };
  try {
    await runTool('cp', ['--reflink=auto', '--sparse=always', request.base, partial], options);
    // A relative source path keeps the debugfs command line free of quoting problems.
    await writeFile(join(request.workDir, 'workload.sh'), request.workload, { mode: 0o644 });
    const commands = `rm ${workloadPath}\nwrite workload.sh ${workloadPath}\n`;
    const commandFile = join(request.workDir, 'debugfs-commands');
    await writeFile(commandFile, commands);
    await runTool('debugfs', ['-w', '-f', commandFile, partial], {
      ...options,
      cwd: request.workDir,
    });
    // debugfs exits 0 even when a command fails, so read the file back.
    const { stdout } = await runTool('debugfs', ['-R', `cat ${workloadPath}`, partial], options);
    if (stdout.toString() !== request.workload) {
      throw new Error(`debugfs did not write ${workloadPath} into ${partial}`);
    }
    await rename(partial, request.outPath);
  } finally {
    await rm(partial, { force: true });
  }
}
