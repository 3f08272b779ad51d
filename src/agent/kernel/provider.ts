/**
 * Where the guest kernel and initramfs come from: the node profile's paths when it names
 * them, else Debian's cloud kernel and Imp's initramfs, built and cached by the scripts in
 * `hack/` (docs/guest.md, "Scripts").
 */
import { execFile } from 'node:child_process';
import { open, readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { DriverLogger } from '../vmm/logger.ts';
import { type GuestBootParams, kernelCommandLine } from './cmdline.ts';

const run = promisify(execFile);

/** The kernel and initramfs a VM boots. */
export interface GuestKernelFiles {
  kernelPath: string;
  /** Unset when the node profile names a kernel but no initramfs (drivers built in). */
  initrdPath: string | undefined;
  /** The kernel release (`uname -r` in the guest), when it can be told. */
  release: string | undefined;
}

export interface GuestKernelOptions {
  /** The node profile's `kernel.path`; when set, no script runs for the kernel. */
  kernelPath?: string;
  /** The node profile's `kernel.initrdPath`. */
  initrdPath?: string;
  /** Where `guest-kernel.sh` and `build-initramfs.sh` are (default: this tree's `hack/`). */
  scriptsDir?: string;
  /** The scripts' cache (`IMP_CACHE_DIR`; their default is `~/.cache/imp`). */
  cacheDir?: string;
  /** Exact kernel package, e.g. `linux-image-6.1.0-57-cloud-amd64` (default: the newest). */
  kernelPackage?: string;
  log?: DriverLogger;
}

/** A first download of the kernel package can take a while on a slow mirror. */
const scriptTimeoutMs = 10 * 60_000;

const defaultScriptsDir = fileURLToPath(new URL('../../../hack/', import.meta.url));

/**
 * Returns the guest's kernel and initramfs. Paths from the options are used as given;
 * whatever is missing is made by `hack/guest-kernel.sh` and `hack/build-initramfs.sh`, which
 * cache their results, so later calls cost about a second (`apt-cache` resolving the
 * package) unless `kernelPackage` pins it.
 */
export async function provideGuestKernel(
  options: GuestKernelOptions = {},
): Promise<GuestKernelFiles> {
  if (options.kernelPath !== undefined) {
    return {
      kernelPath: options.kernelPath,
      initrdPath: options.initrdPath,
      release: await bzImageRelease(options.kernelPath),
    };
  }
  const scriptsDir = options.scriptsDir ?? defaultScriptsDir;
  const env = {
    ...process.env,
    ...(options.cacheDir === undefined ? {} : { IMP_CACHE_DIR: options.cacheDir }),
    ...(options.kernelPackage === undefined ? {} : { IMP_KERNEL_PACKAGE: options.kernelPackage }),
  };
  const kernelDir = await runScript(join(scriptsDir, 'guest-kernel.sh'), [], env);
  const release = await onlyEntry(join(kernelDir, 'lib/modules'));
  const initrdPath =
    options.initrdPath ??
    (await runScript(join(scriptsDir, 'build-initramfs.sh'), [kernelDir], env));
  const files = { kernelPath: join(kernelDir, 'vmlinuz'), initrdPath, release };
  options.log?.info(files, 'guest kernel ready');
  return files;
}

/**
 * The node's guest kernel, fetched once, and the command line for each VM; the shape the
 * agent's VM lifecycle asks of a kernel source.
 */
export class GuestKernelSource {
  private readonly options: GuestKernelOptions;
  private files: Promise<GuestKernelFiles> | undefined;

  constructor(options: GuestKernelOptions = {}) {
    this.options = options;
  }

  /** The kernel files; a failed attempt is retried on the next call. */
  kernel(): Promise<GuestKernelFiles> {
    if (!this.files) {
      this.files = provideGuestKernel(this.options);
      this.files.catch(() => {
        this.files = undefined;
      });
    }
    return this.files;
  }

  bootArgs(params: GuestBootParams): string {
    return kernelCommandLine(params);
  }
}

/** Runs a `hack/` script; its last stdout line is its result. */
async function runScript(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  let stdout: string;
  try {
    ({ stdout } = await run(script, args, { env, timeout: scriptTimeoutMs, maxBuffer: 1 << 20 }));
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trimEnd();
    const tail = stderr.split('\n').slice(-5).join('\n');
    throw new Error(`run ${basename(script)}${tail ? `; it said:\n${tail}` : ''}`, {
      cause: error,
    });
  }
  const result = stdout.trimEnd().split('\n').at(-1)?.trim();
  if (!result) throw new Error(`${basename(script)} printed no path`);
  return result;
}

async function onlyEntry(dir: string): Promise<string | undefined> {
  const entries = await readdir(dir).catch(() => []);
  return entries.length === 1 ? entries[0] : undefined;
}

/**
 * The release from a bzImage's setup header (Linux boot protocol 2.00+): the 16-bit field at
 * 0x20e points, less 0x200, to the NUL-terminated version string, whose first word is the
 * release. Undefined for anything else, e.g. an uncompressed vmlinux ELF.
 */
export async function bzImageRelease(path: string): Promise<string | undefined> {
  let file: Awaited<ReturnType<typeof open>> | undefined;
  try {
    file = await open(path, 'r');
    const header = Buffer.alloc(0x210);
    await file.read(header, 0, header.length, 0);
    if (header.toString('latin1', 0x202, 0x206) !== 'HdrS') return undefined;
    const offset = header.readUInt16LE(0x20e) + 0x200;
    const text = Buffer.alloc(256);
    const { bytesRead } = await file.read(text, 0, text.length, offset);
    const version = text.toString('latin1', 0, bytesRead).split('\0')[0] ?? '';
    return version.split(' ')[0] || undefined;
  } catch {
    return undefined;
  } finally {
    await file?.close();
  }
}
