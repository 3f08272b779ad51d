/**
 * The node's image store against a real registry (Debian's docker-registry) holding the nginx
 * stand-in, pulled as docker.io/library/nginx through a mirror setting. No test reaches
 * beyond loopback: every store here is told not to fall back to Docker Hub itself.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { ImageStore, type ImageStoreOptions } from '../../src/agent/image/store.ts';
import { nginxStandInMarker } from '../../src/local/images.ts';
import { freePort } from '../../src/local/ports.ts';
import { type NginxRegistry, startNginxRegistry } from '../support/registry.ts';

const run = promisify(execFile);
const asRoot = process.getuid?.() === 0;
const workload = "imp_arg '/bin/busybox'\nimp_arg 'httpd'\nimp_arg '-f'\n";

interface LogLine {
  msg: string;
  level: number;
  [key: string]: unknown;
}

/** A store over a fresh cache directory, logging into `lines`, never pulling from origin. */
async function newStore(options: Partial<ImageStoreOptions> & { mirror?: object } = {}) {
  const cacheDir = await mkdtemp(join(tmpdir(), 'imp-image-test-'));
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const store = new ImageStore({ cacheDir, log, fallBackToOrigin: false, ...options });
  return { store, cacheDir, lines, cleanup: () => rm(cacheDir, { recursive: true, force: true }) };
}

async function blobInodes(cacheDir: string): Promise<Map<string, number>> {
  const dir = join(cacheDir, 'blobs', 'sha256');
  const inodes = new Map<string, number>();
  for (const name of await readdir(dir)) inodes.set(name, (await stat(join(dir, name))).ino);
  return inodes;
}

async function debugfsCat(disk: string, path: string): Promise<string> {
  const { stdout } = await run('debugfs', ['-R', `cat ${path}`, disk]);
  return stdout;
}

describe('image store', () => {
  let nginx: NginxRegistry;
  before(async () => {
    nginx = await startNginxRegistry();
  });
  after(async () => {
    await nginx?.stop();
  });

  test('pulls docker.io/library/nginx through a mirror and records its digest', async (t) => {
    const { store, cleanup } = await newStore({ mirrors: [nginx.mirror] });
    t.after(cleanup);
    const started = performance.now();
    const image = await store.pull('nginx:1.27-alpine');
    t.diagnostic(`first pull: ${Math.round(performance.now() - started)} ms`);

    assert.equal(image.reference, 'docker.io/library/nginx:1.27-alpine');
    assert.equal(image.digest, nginx.digests.amd64);
    assert.equal(image.indexDigest, undefined);
    assert.equal(image.fromCache, false);
    assert.deepEqual(image.config.entrypoint, [
      '/bin/busybox',
      'httpd',
      '-f',
      '-p',
      '80',
      '-h',
      '/usr/share/nginx/html',
    ]);
    assert.equal(image.config.workingDir, '/');
    assert.match(image.config.env.join(' '), /^PATH=/);
    const page = await readFile(join(image.rootfsDir, 'usr/share/nginx/html/index.html'), 'utf8');
    assert.match(page, new RegExp(nginxStandInMarker));
    // The second layer whites the placeholder out.
    await assert.rejects(stat(join(image.rootfsDir, 'usr/share/nginx/html/placeholder.txt')), {
      code: 'ENOENT',
    });
  });

  test('keeps the owners of image files', { skip: !asRoot && 'needs root' }, async (t) => {
    const { store, cleanup } = await newStore({ mirrors: [nginx.mirror] });
    t.after(cleanup);
    const image = await store.pull(nginx.image);
    const cache = await stat(join(image.rootfsDir, 'var/cache/nginx'));
    assert.equal(cache.uid, 101);
  });

  test('a second pull comes from the cache without the registry', async (t) => {
    const own = await startNginxRegistry();
    t.after(() => own.stop());
    const { store, cleanup } = await newStore({ mirrors: [own.mirror] });
    t.after(cleanup);
    const first = await store.pull(own.image);
    await own.stop();

    const started = performance.now();
    const second = await store.pull(own.image);
    t.diagnostic(`cached pull: ${(performance.now() - started).toFixed(1)} ms`);
    assert.equal(second.fromCache, true);
    assert.equal(second.digest, first.digest);
    assert.equal(second.rootfsDir, first.rootfsDir);
    // Proof that the registry is really gone: a pull that must ask it fails.
    await assert.rejects(store.pull(own.image, { policy: 'Always' }), /pulling docker\.io/);
  });

  test('resolves a multi-arch index to the node platform', async (t) => {
    const amd64 = await newStore({
      mirrors: [nginx.mirror],
      platform: { os: 'linux', architecture: 'amd64' },
    });
    t.after(amd64.cleanup);
    const image = await amd64.store.pull(nginx.multiArchImage);
    assert.equal(image.digest, nginx.digests.amd64);
    assert.equal(image.indexDigest, nginx.digests.index);

    // The arm64 entry is chosen on an arm64 node, so the choice is not "the first entry".
    // A second store on the same cache shares the layers already fetched.
    const arm64 = new ImageStore({
      cacheDir: amd64.cacheDir,
      log: pino({ level: 'silent' }),
      mirrors: [nginx.mirror],
      fallBackToOrigin: false,
      platform: { os: 'linux', architecture: 'arm64' },
    });
    const before = await blobInodes(amd64.cacheDir);
    const twin = await arm64.pull(nginx.multiArchImage);
    assert.equal(twin.digest, nginx.digests.arm64);
    // Blobs written again would have new inodes (skopeo renames a fresh file into place).
    const afterwards = await blobInodes(amd64.cacheDir);
    assert.ok(before.size >= 5, 'three layers, a config and a manifest');
    for (const [blob, inode] of before) assert.equal(afterwards.get(blob), inode, blob);
    assert.ok(afterwards.size > before.size, 'the arm64 manifest and config were added');
  });

  test('names the platforms on offer when the node platform is missing', async (t) => {
    const { store, cleanup } = await newStore({
      mirrors: [nginx.mirror],
      platform: { os: 'linux', architecture: 's390x' },
    });
    t.after(cleanup);
    await assert.rejects(store.pull(nginx.multiArchImage), (err: Error) => {
      assert.match(err.message, /^pulling docker\.io\/library\/nginx:multi: /);
      assert.match(err.message, /no linux\/s390x image in the index \(it offers linux\/amd64, /);
      return true;
    });
  });

  test('concurrent pulls of one reference share one download', async (t) => {
    const { store, lines, cleanup } = await newStore({ mirrors: [nginx.mirror] });
    t.after(cleanup);
    const [a, b] = await Promise.all([store.pull(nginx.image), store.pull('nginx:1.27-alpine')]);
    assert.deepEqual(a, b);
    assert.equal(lines.filter((line) => line.msg === 'pulling image').length, 1);
  });

  test('tries mirror endpoints in order and skips one that is down', async (t) => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const mirror = { ...nginx.mirror, endpoints: [dead, nginx.registry.url] };
    const { store, lines, cleanup } = await newStore({ mirrors: [mirror] });
    t.after(cleanup);
    const image = await store.pull(nginx.image);
    assert.equal(image.digest, nginx.digests.amd64);
    const failed = lines.filter((line) => line.msg === 'image source failed');
    assert.deepEqual(
      failed.map((line) => line.source),
      [`mirror ${dead}`],
    );
  });

  test('a bad reference fails with an error naming it', async (t) => {
    const { store, cleanup } = await newStore({ mirrors: [nginx.mirror] });
    t.after(cleanup);
    await assert.rejects(store.pull('Nginx:1.27'), /invalid image reference "Nginx:1\.27"/);
    await assert.rejects(store.pull('nginx:bad tag'), /invalid image reference "nginx:bad tag"/);
  });

  test('a missing image fails with an error naming it and the sources tried', async (t) => {
    const { store, cleanup } = await newStore({ mirrors: [nginx.mirror] });
    t.after(cleanup);
    const error = await store.pull('library/absent:1').then(
      () => assert.fail('pull of a missing image succeeded'),
      (err: Error) => err,
    );
    assert.match(error.message, /^pulling docker\.io\/library\/absent:1: /);
    assert.ok(error.message.includes(`mirror ${nginx.registry.url}`), error.message);
    assert.match(error.message, /manifest unknown|not found/i);
  });

  test('image pull secrets reach the registry', async (t) => {
    const basicAuth = { username: 'imp', password: 'pull-secret' };
    const own = await startNginxRegistry({ basicAuth });
    t.after(() => own.stop());
    const { store, cleanup } = await newStore({ mirrors: [own.mirror] });
    t.after(cleanup);

    await assert.rejects(
      store.pull(own.image),
      /pulling docker\.io\/.*(unauthorized|authentication)/i,
    );
    // Credentials are looked up by the host actually contacted, here the mirror.
    const auth = { auths: { [own.registry.host]: basicAuth } };
    const image = await store.pull(own.image, { auth });
    assert.equal(image.digest, own.digests.amd64);
  });

  test('builds a root disk holding the web root and the workload', async (t) => {
    const { store, cacheDir, cleanup } = await newStore({ mirrors: [nginx.mirror] });
    t.after(cleanup);
    const image = await store.pull(nginx.image);
    const first = join(cacheDir, 'vm-a.ext4');
    let started = performance.now();
    const built = await store.buildRootDisk({
      digest: image.digest,
      outPath: first,
      sizeBytes: 64 * 1024 * 1024,
      workload,
    });
    t.diagnostic(`first disk (base + copy): ${Math.round(performance.now() - started)} ms`);
    assert.equal(built.baseCached, false);

    assert.match(await debugfsCat(first, '/usr/share/nginx/html/index.html'), /nginx stand-in/);
    assert.equal(await debugfsCat(first, '/.imp/workload.sh'), workload);
    assert.equal((await stat(first)).size, 64 * 1024 * 1024);
    // A clean filesystem check: hard-linked staging and debugfs edits left nothing broken.
    await run('e2fsck', ['-fn', first]);

    const second = join(cacheDir, 'vm-b.ext4');
    const other = "imp_arg '/bin/busybox'\nimp_arg 'true'\n";
    started = performance.now();
    const copy = await store.buildRootDisk({
      digest: image.digest,
      outPath: second,
      sizeBytes: 64 * 1024 * 1024,
      workload: other,
    });
    t.diagnostic(
      `second disk (copy of cached base): ${Math.round(performance.now() - started)} ms`,
    );
    assert.equal(copy.baseCached, true);
    assert.equal(await debugfsCat(second, '/.imp/workload.sh'), other);
    assert.equal(await debugfsCat(first, '/.imp/workload.sh'), workload);
  });

  test('a root disk of an image never pulled fails clearly', async (t) => {
    const { store, cacheDir, cleanup } = await newStore();
    t.after(cleanup);
    const digest = `sha256:${'0'.repeat(64)}`;
    await assert.rejects(
      store.buildRootDisk({
        digest,
        outPath: join(cacheDir, 'vm.ext4'),
        sizeBytes: 64 << 20,
        workload,
      }),
      new RegExp(`building root disk .* from ${digest}: the image is not in the store`),
    );
  });

  test('a disk too small for the image fails naming the image', async (t) => {
    const { store, cacheDir, cleanup } = await newStore({ mirrors: [nginx.mirror] });
    t.after(cleanup);
    const image = await store.pull(nginx.image);
    await assert.rejects(
      store.buildRootDisk({
        digest: image.digest,
        outPath: join(cacheDir, 'vm.ext4'),
        sizeBytes: 1 << 20,
        workload,
      }),
      new RegExp(`building root disk .* from ${image.digest}: .*mkfs`),
    );
  });

  test('the pulled stand-in answers GET / when run as its config says', {
    skip: !asRoot && 'needs root for a network namespace and chroot',
  }, async (t) => {
    const { store, cleanup } = await newStore({ mirrors: [nginx.mirror] });
    t.after(cleanup);
    const image = await store.pull(nginx.image);
    // A private network namespace: port 80 there is nobody else's, and nothing leaves it.
    // unshare without --fork execs, so the server keeps its pid and nsenter can find it.
    const bringUpLoopback = '/bin/busybox ip link set lo up && exec "$@"';
    const server = spawn(
      'unshare',
      [
        '--net',
        '--',
        'chroot',
        image.rootfsDir,
        '/bin/busybox',
        'sh',
        '-c',
        bringUpLoopback,
      ].concat('sh', image.config.entrypoint),
      { stdio: 'ignore' },
    );
    t.after(() => server.kill('SIGKILL'));
    let page = '';
    for (let attempt = 0; attempt < 50 && !page; attempt++) {
      await sleep(100);
      const args = ['--net', '-t', String(server.pid), '--', 'busybox', 'wget', '-qO-'];
      page = await run('nsenter', [...args, 'http://127.0.0.1:80/']).then(
        (result) => result.stdout,
        () => '',
      );
    }
    assert.match(page, new RegExp(`<h1>${nginxStandInMarker}</h1>`));
  });
});
