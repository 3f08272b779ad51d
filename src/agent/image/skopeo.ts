/**
 * The store's use of skopeo: reading a manifest and copying an image by digest into an OCI
 * layout. skopeo checks every blob and the manifest against their digests as it copies.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256 } from './files.ts';
import { indexEntries, type Platform, selectPlatform } from './manifest.ts';
import type { ImageReference } from './reference.ts';
import { type RunResult, runTool } from './run.ts';
import type { PullSource } from './sources.ts';

/** The manifest a reference resolved to, and the index it came through, if any. */
export interface Resolved {
  digest: string;
  indexDigest?: string;
}

export interface CopyRequest {
  source: PullSource;
  digest: string;
  authFile: string;
  /** The layout to write; blobs go to `blobsDir` instead of its own blobs/. */
  layoutDir: string;
  blobsDir: string;
  /** Tag of the image inside the layout. */
  tag: string;
  timeoutMs: number;
  onLine: (line: string) => void;
}

/** skopeo with a policy and registries.conf of its own, kept in `configDir`. */
export class Skopeo {
  private readonly configDir: string;
  private readonly tmpDir: string;

  /** `tmpDir` takes skopeo's temporary files; on the cache's filesystem, renames are cheap. */
  constructor(options: { configDir: string; tmpDir: string }) {
    this.configDir = options.configDir;
    this.tmpDir = options.tmpDir;
  }

  /**
   * Writes the configuration. The node's own files must not add mirrors, aliases or rules
   * the cluster configuration does not show. Signatures are not checked; digests are.
   */
  async prepare(): Promise<void> {
    const policy = { default: [{ type: 'insecureAcceptAnything' }] };
    await writeFile(join(this.configDir, 'policy.json'), JSON.stringify(policy));
    await writeFile(join(this.configDir, 'registries.conf'), '');
  }

  /**
   * Reads the manifest `ref` names at `source` and, for an index, picks `platform`'s entry.
   * The copy then goes by digest, so a tag moved meanwhile cannot mix two images.
   */
  async resolve(
    ref: ImageReference,
    source: PullSource,
    authFile: string,
    platform: Platform,
    timeoutMs: number,
  ): Promise<Resolved> {
    const target = ref.digest ? `@${ref.digest}` : `:${ref.tag}`;
    const { stdout } = await this.run(
      [
        'inspect',
        '--raw',
        `--tls-verify=${source.tlsVerify}`,
        `--authfile=${authFile}`,
        `docker://${source.location}${target}`,
      ],
      timeoutMs,
    );
    const named = `sha256:${sha256(stdout)}`;
    if (ref.digest && ref.digest !== named) {
      throw new Error(`asked for manifest ${ref.digest}, received ${named}`);
    }
    const entries = indexEntries(stdout);
    if (!entries) return { digest: named };
    return { digest: selectPlatform(entries, platform), indexDigest: named };
  }

  /**
   * Copies one image into its own OCI layout, writing blobs to the shared blob directory.
   * Blobs already there are not fetched again.
   */
  async copy(request: CopyRequest): Promise<void> {
    await this.run(
      [
        'copy',
        `--src-tls-verify=${request.source.tlsVerify}`,
        `--src-authfile=${request.authFile}`,
        `--dest-shared-blob-dir=${request.blobsDir}`,
        `docker://${request.source.location}@${request.digest}`,
        `oci:${request.layoutDir}:${request.tag}`,
      ],
      request.timeoutMs,
      request.onLine,
    );
  }

  private async run(args: string[], timeoutMs: number, onLine?: (line: string) => void) {
    const global = ['--policy', join(this.configDir, 'policy.json')];
    const env = {
      ...process.env,
      CONTAINERS_REGISTRIES_CONF: join(this.configDir, 'registries.conf'),
      TMPDIR: this.tmpDir,
    };
    const result: RunResult = await runTool('skopeo', [...global, ...args], {
      label: `skopeo ${args[0]}`,
      timeoutMs,
      env,
      ...(onLine ? { onLine } : {}),
    });
    return result;
  }
}
