/**
 * The few parts of OCI and Docker manifests the store reads itself: picking this node's
 * platform from a multi-arch index, and the runtime settings in an image's config.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { digestPattern } from './reference.ts';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** What the guest init needs from the image config to start the workload. */
export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  /** `NAME=value` strings, in image order. */
  env: string[];
  workingDir: string;
  /** Empty means root, as in the OCI spec. */
  user: string;
  /** The signal that asks the workload to stop (`SIGQUIT`, `3`); empty means SIGTERM. */
  stopSignal: string;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  platform?: Partial<Platform>;
}

/** The platform of this node, in OCI's words. */
export function hostPlatform(): Platform {
  const architecture = { x64: 'amd64', arm64: 'arm64' }[process.arch as string] ?? process.arch;
  return { os: 'linux', architecture };
}

/** Parses a manifest as bytes from a registry; returns its entries when it is an index. */
export function indexEntries(raw: Buffer): Descriptor[] | undefined {
  let parsed: { manifests?: unknown; layers?: unknown; fsLayers?: unknown };
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new Error('the registry sent a manifest that is not JSON', { cause: err });
  }
  if (Array.isArray(parsed.manifests)) return parsed.manifests as Descriptor[];
  if (Array.isArray(parsed.layers) || Array.isArray(parsed.fsLayers)) return undefined;
  throw new Error('the registry sent something that is neither an image manifest nor an index');
}

/**
 * Picks the manifest for `platform` from an index. An entry with no variant is preferred
 * when none is asked for, because variants (amd64 v3, say) need CPUs a node may lack.
 */
export function selectPlatform(entries: Descriptor[], platform: Platform): string {
  const matching = entries.filter(
    (entry) =>
      entry.platform?.os === platform.os &&
      entry.platform.architecture === platform.architecture &&
      (!platform.variant || entry.platform.variant === platform.variant),
  );
  const chosen = matching.find((entry) => !entry.platform?.variant) ?? matching[0];
  if (!chosen) {
    const offered = entries
      .map((entry) => platformName(entry.platform))
      .filter((name) => name !== 'unknown/unknown');
    throw new Error(
      `no ${platformName(platform)} image in the index (it offers ${offered.join(', ') || 'none'})`,
    );
  }
  if (!digestPattern.test(chosen.digest)) {
    throw new Error(`the index names an unsupported digest ${chosen.digest}`);
  }
  return chosen.digest;
}

function platformName(platform: Partial<Platform> | undefined): string {
  const name = `${platform?.os ?? 'unknown'}/${platform?.architecture ?? 'unknown'}`;
  return platform?.variant ? `${name}/${platform.variant}` : name;
}

/** Reads the config of the single image in the OCI layout at `layoutDir`. */
export async function readImageConfig(layoutDir: string): Promise<ImageConfig> {
  const index = await readJson<{ manifests?: Descriptor[] }>(join(layoutDir, 'index.json'));
  const manifestDigest = index.manifests?.[0]?.digest;
  if (!manifestDigest) throw new Error(`${layoutDir} holds no image`);
  const manifest = await readJson<{ config?: Descriptor }>(blobPath(layoutDir, manifestDigest));
  if (!manifest.config) throw new Error(`manifest ${manifestDigest} has no config`);
  const image = await readJson<{ config?: Record<string, unknown> }>(
    blobPath(layoutDir, manifest.config.digest),
  );
  const config = image.config ?? {};
  return {
    entrypoint: stringArray(config.Entrypoint),
    cmd: stringArray(config.Cmd),
    env: stringArray(config.Env),
    workingDir: typeof config.WorkingDir === 'string' ? config.WorkingDir : '',
    user: typeof config.User === 'string' ? config.User : '',
    stopSignal: typeof config.StopSignal === 'string' ? config.StopSignal : '',
  };
}

function blobPath(layoutDir: string, digest: string): string {
  if (!digestPattern.test(digest)) throw new Error(`unsupported digest ${digest}`);
  const [algorithm, hex] = digest.split(':') as [string, string];
  return join(layoutDir, 'blobs', algorithm, hex);
}

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

function stringArray(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item) => typeof item === 'string') : [];
}
