/**
 * The node's image store. It pulls images with skopeo through the mirrors ClusterImpConfig
 * names, keeps every blob once in a content-addressed directory that all images share,
 * unpacks each image once with umoci, and builds VM root disks from the result.
 *
 * On disk, under `cacheDir`:
 *   blobs/sha256/<hex>     every blob of every image, checked by skopeo against its digest
 *   layouts/<hex>/         one OCI layout per image manifest; its blobs/ links to ../../blobs
 *   bundles/<hex>/rootfs/  the unpacked root filesystem
 *   images/<hex>.json      written last, so its presence means the image is complete
 *   refs/<hash>.json       the manifest a reference last resolved to on this platform
 *   disks/<key>.ext4       base root disks, copied for each VM
 *   tmp/                   work in progress, cleared when the first store of a process opens
 * One store owns a cache directory at a time; nothing is ever deleted from it yet.
 */
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { Logger } from '../../log.ts';
import { type DockerConfigJson, toSkopeoAuth } from './auth.ts';
import { exists, readJson, renameUnlessPresent, sha256, writeJsonAtomic } from './files.ts';
import { hostPlatform, type ImageConfig, type Platform, readImageConfig } from './manifest.ts';
import { digestPattern, type ImageReference, parseReference } from './reference.ts';
import {
  buildBaseDisk,
  defaultRootDiskRecipe,
  type RootDiskRecipe,
  recipeHash,
  writeVmDisk,
} from './rootdisk.ts';
import { runTool } from './run.ts';
import { type Resolved, Skopeo } from './skopeo.ts';
import { type PullSource, parseMirrors, pullSources, type RegistryMirror } from './sources.ts';

export interface ImageStoreOptions {
  /** Absolute path; it must not contain `:`, which skopeo and umoci read as a separator. */
  cacheDir: string;
  log: Logger;
  /** From ClusterImpConfig `spec.registryMirrors`. */
  mirrors?: readonly RegistryMirror[];
  /** When false, a registry with mirrors is reached only through them. Default true. */
  fallBackToOrigin?: boolean;
  /** Which image of a multi-arch index to run; default linux and this node's architecture. */
  platform?: Platform;
  rootDisk?: RootDiskRecipe;
  timeouts?: Partial<Timeouts>;
}

export interface Timeouts {
  /** Reading one manifest. */
  resolveMs: number;
  /** Copying one image's blobs. */
  downloadMs: number;
  unpackMs: number;
  diskMs: number;
}

const defaultTimeouts: Timeouts = {
  resolveMs: 60_000,
  downloadMs: 30 * 60_000,
  unpackMs: 10 * 60_000,
  diskMs: 10 * 60_000,
};

/** As in Kubernetes: IfNotPresent trusts what a reference resolved to before. */
export type PullPolicy = 'IfNotPresent' | 'Always';

export interface PullOptions {
  /** Merged image pull secrets; also used for mirrors, looked up by the mirror's host. */
  auth?: DockerConfigJson;
  policy?: PullPolicy;
  /** Pulls of the same reference are shared; only the first caller's callback hears. */
  onProgress?: (event: PullProgress) => void;
}

export interface PullProgress {
  image: string;
  step: 'resolving' | 'downloading' | 'unpacking';
  /** A source label, a tool's progress line or a digest. */
  detail: string;
}

export interface PulledImage {
  /** The reference in canonical form, e.g. `docker.io/library/nginx:1.27-alpine`. */
  reference: string;
  /** Digest of the image manifest that runs (for a multi-arch image, this node's entry). */
  digest: string;
  /** Digest of the multi-arch index the reference named, if it named one. */
  indexDigest?: string;
  config: ImageConfig;
  /** The unpacked root filesystem; shared by every user of the image, so read only. */
  rootfsDir: string;
  /** True when nothing was fetched, because the reference was already resolved and stored. */
  fromCache: boolean;
}

export interface RootDiskRequest {
  /** An image this store has pulled. */
  digest: string;
  /** The VM's disk; replaced if it exists. */
  outPath: string;
  sizeBytes: number;
  /** The VM's /.imp/workload.sh (format: docs/guest.md). */
  workload: string;
}

interface StoredImage {
  digest: string;
  config: ImageConfig;
}

interface StoredRef {
  reference: string;
  digest: string;
  indexDigest?: string;
}

/** The tag each per-image OCI layout uses for its one image. */
const layoutTag = 'image';

/** Pulls images and builds root disks on one node. */
/** Cache dirs whose tmp/ this process has already cleared. */
const clearedTmp = new Set<string>();

export class ImageStore {
  private readonly cacheDir: string;
  private readonly log: Logger;
  private readonly mirrors: ReturnType<typeof parseMirrors>;
  private readonly fallBackToOrigin: boolean;
  private readonly platform: Platform;
  private readonly recipe: RootDiskRecipe;
  private readonly timeouts: Timeouts;
  private readonly skopeo: Skopeo;
  private readonly inFlight = new Map<string, Promise<unknown>>();
  private opened: Promise<void> | undefined;
  private recipeDigest: Promise<string> | undefined;

  constructor(options: ImageStoreOptions) {
    if (!isAbsolute(options.cacheDir) || options.cacheDir.includes(':')) {
      throw new Error(`image cache directory ${options.cacheDir} must be absolute, without ':'`);
    }
    this.cacheDir = options.cacheDir;
    this.log = options.log;
    this.mirrors = parseMirrors(options.mirrors ?? []);
    this.fallBackToOrigin = options.fallBackToOrigin ?? true;
    this.platform = options.platform ?? hostPlatform();
    this.recipe = options.rootDisk ?? defaultRootDiskRecipe();
    this.timeouts = { ...defaultTimeouts, ...options.timeouts };
    this.skopeo = new Skopeo({ configDir: this.cacheDir, tmpDir: this.dir('tmp') });
  }

  /**
   * Makes the image `reference` available on the node and returns its digest, runtime config
   * and unpacked root filesystem. Tries each mirror of the image's registry in order, then
   * the registry itself; picks this node's platform from a multi-arch index.
   * Errors name the reference and what every source answered.
   */
  async pull(reference: string, options: PullOptions = {}): Promise<PulledImage> {
    const ref = parseReference(reference);
    const policy = options.policy ?? 'IfNotPresent';
    // Callers with other credentials get their own attempt: theirs may be the ones that work.
    const credentials = sha256(JSON.stringify(options.auth ?? {}));
    const key = `pull ${ref.name} ${policy} ${credentials}`;
    return await this.once(key, () => this.pullOnce(ref, policy, options));
  }

  /**
   * Writes a root disk for one VM: the image's files, the guest init and `workload`, in an
   * ext4 filesystem of `sizeBytes`. The part shared by all VMs of an image is built once.
   */
  async buildRootDisk(request: RootDiskRequest): Promise<{ baseCached: boolean }> {
    const what = `building root disk ${request.outPath} from ${request.digest}`;
    try {
      if (!digestPattern.test(request.digest)) throw new Error('the digest is not sha256:<hex>');
      if (!Number.isSafeInteger(request.sizeBytes) || request.sizeBytes <= 0) {
        throw new Error(`disk size ${request.sizeBytes} is not a positive number of bytes`);
      }
      await this.open();
      const image = await this.readImage(request.digest);
      if (!image) throw new Error('the image is not in the store; pull it first');
      const sizeKiB = Math.ceil(request.sizeBytes / 4096) * 4;
      this.recipeDigest ??= recipeHash(this.recipe);
      const key = sha256(`${await this.recipeDigest}\n${image.digest}\n${sizeKiB}`).slice(0, 32);
      const base = join(this.dir('disks'), `${key}.ext4`);
      const baseCached = await exists(base);
      if (!baseCached) {
        await this.once(`disk ${key}`, () =>
          this.inWorkDir('disk-', (workDir) =>
            buildBaseDisk({
              recipe: this.recipe,
              rootfsDir: this.rootfsDir(image.digest),
              outPath: base,
              sizeKiB,
              workDir,
              timeoutMs: this.timeouts.diskMs,
            }),
          ),
        );
      }
      await this.inWorkDir('vmdisk-', (workDir) =>
        writeVmDisk({ ...request, base, workDir, timeoutMs: this.timeouts.diskMs }),
      );
      return { baseCached };
    } catch (err) {
      throw new Error(`${what}: ${messageOf(err)}`, { cause: err });
    }
  }

  private async pullOnce(
    ref: ImageReference,
    policy: PullPolicy,
    options: PullOptions,
  ): Promise<PulledImage> {
    try {
      await this.open();
      if (policy === 'IfNotPresent') {
        const cached = await this.lookup(ref);
        if (cached) return cached;
      }
      const started = performance.now();
      const progress = (step: PullProgress['step'], detail: string) =>
        options.onProgress?.({ image: ref.name, step, detail });
      this.log.info({ image: ref.name }, 'pulling image');
      const resolved = await this.inWorkDir('pull-', async (workDir) => {
        const authFile = join(workDir, 'auth.json');
        await writeFile(authFile, JSON.stringify(toSkopeoAuth(options.auth ?? {})), {
          mode: 0o600,
        });
        return await this.download(ref, authFile, progress);
      });
      progress('unpacking', resolved.digest);
      const image = await this.once(`unpack ${resolved.digest}`, () =>
        this.unpack(resolved.digest),
      );
      const stored: StoredRef = { reference: ref.name, ...resolved };
      await writeJsonAtomic(this.refPath(ref), stored);
      const durationMs = Math.round(performance.now() - started);
      this.log.info({ image: ref.name, digest: image.digest, durationMs }, 'pulled image');
      return this.result(stored, image, false);
    } catch (err) {
      throw new Error(`pulling ${ref.name}: ${messageOf(err)}`, { cause: err });
    }
  }

  /** Resolves the reference at each source in turn and copies the image from the first. */
  private async download(
    ref: ImageReference,
    authFile: string,
    progress: (step: PullProgress['step'], detail: string) => void,
  ): Promise<Resolved> {
    const failures: Error[] = [];
    for (const source of pullSources(ref, this.mirrors, this.fallBackToOrigin)) {
      try {
        progress('resolving', source.label);
        const resolved = await this.skopeo.resolve(
          ref,
          source,
          authFile,
          this.platform,
          this.timeouts.resolveMs,
        );
        if (!(await exists(this.layoutDir(resolved.digest)))) {
          await this.once(`download ${resolved.digest}`, () =>
            this.copy(source, resolved.digest, authFile, (line) => progress('downloading', line)),
          );
        }
        this.log.debug({ image: ref.name, source: source.label }, 'image source answered');
        return resolved;
      } catch (err) {
        this.log.warn({ image: ref.name, source: source.label, err }, 'image source failed');
        failures.push(new Error(`${source.label}: ${messageOf(err)}`, { cause: err }));
      }
    }
    throw new AggregateError(failures, failures.map((failure) => failure.message).join('; '));
  }

  /** Copies one image into its own OCI layout under layouts/, sharing blobs/. */
  private async copy(source: PullSource, digest: string, authFile: string, onLine: Lines) {
    // tmp/layout-<random> sits as deep as layouts/<hex>, so the relative link to the shared
    // blobs, which umoci follows, stays valid after the rename.
    await this.inWorkDir('layout-', async (layoutDir) => {
      await symlink(join('..', '..', 'blobs'), join(layoutDir, 'blobs'));
      await this.skopeo.copy({
        source,
        digest,
        authFile,
        layoutDir,
        blobsDir: this.dir('blobs'),
        tag: layoutTag,
        timeoutMs: this.timeouts.downloadMs,
        onLine,
      });
      await renameUnlessPresent(layoutDir, this.layoutDir(digest));
    });
  }

  /**
   * Unpacks an image's layers, whiteouts applied, into its bundle. As root, umoci keeps the
   * files' owners from the image (nginx's cache belongs to uid 101); `--rootless` would make
   * root own everything, so it is used only when the agent runs unprivileged.
   */
  private async unpack(digest: string): Promise<StoredImage> {
    const existing = await this.readImage(digest);
    if (existing) return existing;
    const layout = this.layoutDir(digest);
    const config = await readImageConfig(layout);
    const rootless = process.getuid?.() !== 0;
    await this.inWorkDir('bundle-', async (workDir) => {
      const bundle = join(workDir, 'bundle');
      await runTool(
        'umoci',
        [
          'unpack',
          ...(rootless ? ['--rootless'] : []),
          '--image',
          `${layout}:${layoutTag}`,
          bundle,
        ],
        { timeoutMs: this.timeouts.unpackMs },
      );
      // A bundle without images/<hex>.json is left from an interrupted unpack.
      await rm(this.bundleDir(digest), { recursive: true, force: true });
      await rename(bundle, this.bundleDir(digest));
    });
    const image: StoredImage = { digest, config };
    await writeJsonAtomic(this.imagePath(digest), image);
    return image;
  }

  /** The stored image a reference resolved to before, if it is still complete. */
  private async lookup(ref: ImageReference): Promise<PulledImage | undefined> {
    const stored = await readJson<StoredRef>(this.refPath(ref));
    if (!stored) return undefined;
    const image = await this.readImage(stored.digest);
    if (!image || !(await exists(this.rootfsDir(stored.digest)))) return undefined;
    this.log.debug({ image: ref.name, digest: stored.digest }, 'image already present');
    return this.result(stored, image, true);
  }

  private result(stored: StoredRef, image: StoredImage, fromCache: boolean): PulledImage {
    return {
      reference: stored.reference,
      digest: image.digest,
      ...(stored.indexDigest ? { indexDigest: stored.indexDigest } : {}),
      config: image.config,
      rootfsDir: this.rootfsDir(image.digest),
      fromCache,
    };
  }

  private async readImage(digest: string): Promise<StoredImage | undefined> {
    return await readJson<StoredImage>(this.imagePath(digest));
  }

  /** Prepares the cache directory once; a failure (a full disk, say) is retried next time. */
  private open(): Promise<void> {
    this.opened ??= (async () => {
      // Leftovers of an earlier process go; a store replaced in this process (new mirror
      // settings) may still be pulling into tmp/, so it is cleared once per process.
      if (!clearedTmp.has(this.cacheDir)) {
        clearedTmp.add(this.cacheDir);
        await rm(this.dir('tmp'), { recursive: true, force: true });
      }
      for (const name of ['blobs/sha256', 'layouts', 'bundles', 'images', 'refs', 'disks', 'tmp']) {
        await mkdir(this.dir(name), { recursive: true });
      }
      await this.skopeo.prepare();
    })().catch((err: unknown) => {
      this.opened = undefined;
      throw new Error(`preparing the image cache in ${this.cacheDir}`, { cause: err });
    });
    return this.opened;
  }

  /** Runs `fn` once for concurrent callers with the same key; later callers share its result. */
  private once<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const running = this.inFlight.get(key);
    if (running) return running as Promise<T>;
    const started = fn().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, started);
    return started;
  }

  private async inWorkDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(this.dir('tmp'), prefix));
    try {
      return await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private dir(name: string): string {
    return join(this.cacheDir, name);
  }
  private layoutDir(digest: string): string {
    return join(this.dir('layouts'), hexOf(digest));
  }
  private bundleDir(digest: string): string {
    return join(this.dir('bundles'), hexOf(digest));
  }
  private rootfsDir(digest: string): string {
    return join(this.bundleDir(digest), 'rootfs');
  }
  private imagePath(digest: string): string {
    return join(this.dir('images'), `${hexOf(digest)}.json`);
  }
  /** A reference resolves per platform: one index, a different image on arm64. */
  private refPath(ref: ImageReference): string {
    const { os, architecture, variant } = this.platform;
    const key = `${ref.name}\n${os}/${architecture}/${variant ?? ''}`;
    return join(this.dir('refs'), `${sha256(key)}.json`);
  }
}

type Lines = (line: string) => void;

function hexOf(digest: string): string {
  return digest.slice(digest.indexOf(':') + 1);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
