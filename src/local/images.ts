/**
 * Builds the "nginx stand-in", a real OCI image made from Debian's static busybox with no
 * Docker daemon and no network, and publishes it to a registry. Tests pull it as
 * `docker.io/library/nginx:1.27-alpine` through a mirror; `imp local up` serves it as the
 * quick-start image. Its entrypoint runs `busybox httpd` on port 80 over a web root whose
 * page contains `nginxStandInMarker`.
 *
 * The image has three layers, so pulls exercise layer order and whiteouts: a base with
 * busybox, /etc files and a placeholder page; a layer deleting the placeholder; the web root.
 * The OCI layout is cached under `<cache>/images/`, keyed by a hash of this recipe.
 */
import { createHash } from 'node:crypto';
import {
  chmod,
  chown,
  mkdir,
  mkdtemp,
  readFile,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { runTool } from '../agent/image/run.ts';

/** Text on the stand-in's index page, to recognise it in an HTTP answer or on a disk. */
export const nginxStandInMarker = 'Imp nginx stand-in';
/** Where the stand-in is published, as `nginx:1.27-alpine` is on Docker Hub. */
export const nginxStandInRepository = 'library/nginx';
export const nginxStandInTag = '1.27-alpine';

/** The web server user, as in the real nginx image; it owns /var/cache/nginx. */
const nginxUid = 101;

const indexHtml = `<!DOCTYPE html>
<html><head><title>${nginxStandInMarker}</title></head>
<body><h1>${nginxStandInMarker}</h1><p>Served by busybox httpd inside an Imp microVM.</p></body>
</html>
`;

const recipe = {
  version: 1,
  indexHtml,
  entrypoint: ['/bin/busybox', 'httpd', '-f', '-p', '80', '-h', '/usr/share/nginx/html'],
  env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
  workingDir: '/',
  passwd: 'root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\n',
  group: 'root:x:0:\nnginx:x:101:\n',
};

/** A built stand-in: one OCI layout holding the image, a dummy arm64 twin and an index. */
export interface StandInLayout {
  layoutDir: string;
  /** Tags in the layout: `amd64` (the real image), `arm64` (same layers), `index` (both). */
  digests: { amd64: string; arm64: string; index: string };
}

/** `$IMP_CACHE_DIR`, or `~/.cache/imp`: where Imp's tools cache what they build. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.IMP_CACHE_DIR || join(homedir(), '.cache', 'imp');
}

/** Builds the stand-in's OCI layout, or returns the cached one built from the same recipe. */
export async function buildNginxStandIn(
  options: { cacheDir?: string; busybox?: string } = {},
): Promise<StandInLayout> {
  const busybox = options.busybox ?? '/usr/bin/busybox';
  const hash = createHash('sha256')
    .update(JSON.stringify(recipe))
    .update(await readFile(busybox))
    .digest('hex')
    .slice(0, 16);
  const imagesDir = join(options.cacheDir ?? defaultCacheDir(), 'images');
  const layoutDir = join(imagesDir, `nginx-stand-in-${hash}`);
  const cached = await readDigests(layoutDir).catch(async (err) => {
    // A layout without a complete index.json is left from a crash; anything else was renamed
    // into place whole, so only a missing layout is normal here.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      await rm(layoutDir, { recursive: true, force: true });
    }
    return undefined;
  });
  if (cached) return { layoutDir, digests: cached };

  await mkdir(imagesDir, { recursive: true });
  const work = await mkdtemp(join(imagesDir, '.build-'));
  try {
    await buildLayout(join(work, 'layout'), join(work, 'trees'), busybox);
    await rename(join(work, 'layout'), layoutDir).catch((err) => {
      // A concurrent build (another test process) got there first; its result is as good.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    });
    return { layoutDir, digests: await readDigests(layoutDir) };
  } catch (err) {
    throw new Error(`building the nginx stand-in image in ${layoutDir}`, { cause: err });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function umoci(args: string[]): Promise<void> {
  await runTool('umoci', args, { timeoutMs: 120_000 });
}

async function buildLayout(layout: string, trees: string, busybox: string): Promise<void> {
  const asRoot = process.getuid?.() === 0;
  // Unprivileged, umoci maps the builder to root so the image still belongs to root.
  const rootless = asRoot ? [] : ['--rootless'];
  const image = `${layout}:amd64`;
  await umoci(['init', '--layout', layout]);
  await umoci(['new', '--image', image]);

  const base = join(trees, 'base');
  await makeBase(base, busybox, asRoot);
  await umoci(['insert', ...rootless, '--image', image, base, '/']);
  const placeholder = '/usr/share/nginx/html/placeholder.txt';
  await umoci(['insert', ...rootless, '--image', image, '--whiteout', placeholder]);
  const web = join(trees, 'web');
  await writeTree(web, { 'usr/share/nginx/html/index.html': recipe.indexHtml });
  await umoci(['insert', ...rootless, '--image', image, web, '/']);

  const config = [
    ...recipe.entrypoint.flatMap((word) => ['--config.entrypoint', word]),
    ...recipe.env.flatMap((entry) => ['--config.env', entry]),
    ['--config.workingdir', recipe.workingDir],
    ['--config.exposedports', '80/tcp', '--os', 'linux', '--architecture', 'amd64'],
  ].flat();
  await umoci(['config', '--image', image, ...config, '--history.created_by', 'imp stand-in']);
  // Same layers, other architecture: enough for a node to prove it picks its own platform.
  await umoci(['config', '--image', image, '--tag', 'arm64', '--architecture', 'arm64']);
  await umoci(['gc', '--layout', layout]);
  await addIndex(layout);
}

async function makeBase(dir: string, busybox: string, asRoot: boolean): Promise<void> {
  await writeTree(dir, {
    'etc/passwd': recipe.passwd,
    'etc/group': recipe.group,
    'usr/share/nginx/html/placeholder.txt': 'removed by the next layer\n',
  });
  await mkdir(join(dir, 'bin'), { recursive: true });
  await runTool('cp', [busybox, join(dir, 'bin', 'busybox')], { timeoutMs: 30_000 });
  const { stdout } = await runTool(busybox, ['--list-full'], { timeoutMs: 30_000 });
  for (const path of stdout.toString().split('\n')) {
    if (!path || path === 'bin/busybox') continue;
    await mkdir(dirname(join(dir, path)), { recursive: true, mode: 0o755 });
    await symlink('/bin/busybox', join(dir, path));
  }
  for (const path of ['tmp', 'var/cache/nginx', 'root']) {
    await mkdir(join(dir, path), { recursive: true, mode: 0o755 });
  }
  await chmod(join(dir, 'tmp'), 0o1777);
  if (asRoot) await chown(join(dir, 'var/cache/nginx'), nginxUid, nginxUid);
}

/** Writes files under `dir`; every directory gets 0755, including `dir`, which becomes `/`. */
async function writeTree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true, mode: 0o755 });
    await writeFile(join(dir, path), content, { mode: 0o644 });
  }
  await chmod(dir, 0o755);
}

interface IndexJson {
  manifests: { mediaType: string; digest: string; size: number; annotations?: object }[];
}

/** Writes an OCI index over the amd64 and arm64 images, tagged `index`. */
async function addIndex(layout: string): Promise<void> {
  const indexPath = join(layout, 'index.json');
  const top = JSON.parse(await readFile(indexPath, 'utf8')) as IndexJson;
  const entry = (tag: string, architecture: string) => {
    const found = top.manifests.find((m) => tagOf(m) === tag);
    if (!found) throw new Error(`tag ${tag} missing from ${indexPath}`);
    const { annotations: _, ...descriptor } = found;
    return { ...descriptor, platform: { architecture, os: 'linux' } };
  };
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [entry('amd64', 'amd64'), entry('arm64', 'arm64')],
  };
  const bytes = Buffer.from(JSON.stringify(index));
  const hex = createHash('sha256').update(bytes).digest('hex');
  await writeFile(join(layout, 'blobs', 'sha256', hex), bytes);
  top.manifests.push({
    mediaType: index.mediaType,
    digest: `sha256:${hex}`,
    size: bytes.length,
    annotations: { 'org.opencontainers.image.ref.name': 'index' },
  });
  await writeFile(indexPath, JSON.stringify(top));
}

async function readDigests(layoutDir: string): Promise<StandInLayout['digests']> {
  const top = JSON.parse(await readFile(join(layoutDir, 'index.json'), 'utf8')) as IndexJson;
  const digest = (tag: string) => {
    const found = top.manifests.find((m) => tagOf(m) === tag);
    if (!found) throw new Error(`tag ${tag} missing from ${layoutDir}`);
    return found.digest;
  };
  return { amd64: digest('amd64'), arm64: digest('arm64'), index: digest('index') };
}

function tagOf(descriptor: { annotations?: object }): string | undefined {
  return (descriptor.annotations as Record<string, string> | undefined)?.[
    'org.opencontainers.image.ref.name'
  ];
}

export interface PublishOptions {
  /** `index` publishes the multi-arch index with both images. Default `amd64`. */
  tag?: 'amd64' | 'arm64' | 'index';
  /** Default `library/nginx:1.27-alpine`. */
  repositoryAndTag?: string;
  /** For test registries only: skopeo takes them on its command line, visible to `ps`. */
  credentials?: { username: string; password: string };
  cacheDir?: string;
}

/**
 * Publishes the stand-in to the plain-HTTP registry at `registryHost` (e.g. 127.0.0.1:5000)
 * with its digests unchanged, so what a pull resolves to can be compared with the layout's.
 */
export async function publishNginxStandIn(
  registryHost: string,
  options: PublishOptions = {},
): Promise<StandInLayout & { reference: string }> {
  const layout = await buildNginxStandIn(options.cacheDir ? { cacheDir: options.cacheDir } : {});
  const tag = options.tag ?? 'amd64';
  const target = options.repositoryAndTag ?? `${nginxStandInRepository}:${nginxStandInTag}`;
  const reference = `${registryHost}/${target}`;
  const args = [
    '--insecure-policy',
    'copy',
    '--dest-tls-verify=false',
    '--preserve-digests',
    ...(tag === 'index' ? ['--all'] : []),
    ...(options.credentials
      ? ['--dest-creds', `${options.credentials.username}:${options.credentials.password}`]
      : []),
    `oci:${layout.layoutDir}:${tag}`,
    `docker://${reference}`,
  ];
  try {
    await runTool('skopeo', args, { timeoutMs: 120_000 });
  } catch (err) {
    throw new Error(`publishing the nginx stand-in to ${reference}`, { cause: err });
  }
  return { ...layout, reference };
}
