/** Builds and removes the chroot the jailer runs one VM in. */
import { chown, copyFile, link, mkdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { VmLayout } from './layout.ts';
import type { JailerOptions } from './options.ts';

/**
 * Creates the jail's root with every file the VM needs. A stale jail of the same id (left by
 * a crash) is removed first: the jailer refuses to create device nodes that already exist.
 * Files are hard-linked when the jail is on the same filesystem, copied otherwise.
 */
export async function prepareJail(layout: VmLayout, jailer: JailerOptions): Promise<void> {
  const jail = layout.jail;
  if (!jail) return;
  await rm(jail.dir, { recursive: true, force: true });
  await mkdir(jail.root, { recursive: true });
  for (const file of jail.files) {
    const target = join(jail.root, file.inJail);
    await linkOrCopy(file.hostPath, target);
    // A hard link shares its inode (and owner) with the host file, and a kernel or read-only
    // image may serve VMs of other uids: only the VM's own files change owner.
    if (file.ownedByJail) await chown(target, jailer.uid, jailer.gid);
  }
  // Firecracker v1.7 refuses to log to a file that does not exist yet.
  for (const path of [layout.logPath, layout.metricsPath]) {
    await writeFile(path, '', { flag: 'a' });
    await chown(path, jailer.uid, jailer.gid);
  }
  // The unprivileged VMM creates its socket and snapshot files in the root.
  await chown(jail.root, jailer.uid, jailer.gid);
}

/**
 * Removes the jail after the VMM has exited, keeping Firecracker's log and metrics by moving
 * them next to the console log, and removes the VM's cgroups when the driver named their
 * parent. Missing pieces are not an error: cleanup may run twice.
 */
export async function removeJail(
  layout: VmLayout,
  jailer: JailerOptions,
  id: string,
  runDir: string,
): Promise<void> {
  const jail = layout.jail;
  if (!jail) return;
  await moveFile(layout.logPath, join(runDir, 'firecracker.log')).catch(() => undefined);
  await moveFile(layout.metricsPath, join(runDir, 'metrics.json')).catch(() => undefined);
  await rm(jail.dir, { recursive: true, force: true });
  for (const dir of cgroupDirs(jailer, id)) await removeCgroup(dir);
}

/**
 * A cgroup can only be removed once empty, and the kernel may still count the VMM for a short
 * while after it has been reaped, so EBUSY is retried for up to a second.
 */
async function removeCgroup(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= 20)
        throw new Error(`remove cgroup ${dir}`, { cause: error });
      await delay(50);
    }
  }
}

/**
 * The cgroup directories the jailer creates for `id`. Only known when the parent cgroup is
 * set; the jailer's own default parent depends on its version.
 */
export function cgroupDirs(jailer: JailerOptions, id: string): string[] {
  if (jailer.parentCgroup === undefined || !jailer.cgroups) return [];
  if (jailer.cgroupVersion === 2) return [join('/sys/fs/cgroup', jailer.parentCgroup, id)];
  // Version 1 has one hierarchy per controller, named by the cgroup file's prefix.
  const controllers = new Set(Object.keys(jailer.cgroups).map((file) => file.split('.')[0]));
  return [...controllers].map((controller) =>
    join('/sys/fs/cgroup', controller ?? '', jailer.parentCgroup ?? '', id),
  );
}

async function linkOrCopy(source: string, target: string): Promise<void> {
  try {
    await link(source, target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') {
      throw new Error(`cannot place ${source} in the jail as ${target}`, { cause: error });
    }
    await copyFile(source, target);
  }
}

/** Renames `source` to `target`, copying when they are on different filesystems. */
export async function moveFile(source: string, target: string): Promise<void> {
  try {
    await rename(source, target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    await copyFile(source, target);
    await rm(source, { force: true });
  }
}
