/**
 * A real OCI registry on loopback (Debian's `docker-registry`, the distribution registry 2.8),
 * for tests and for `imp local up`, which serves the quick-start image from it.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.ts';
import { type ManagedProcess, startProcess } from './process.ts';

export interface RegistryOptions {
  /** Keep the registry's storage here (kept on stop) instead of a fresh temporary directory. */
  dataDir?: string;
  port?: number;
  /** Require these credentials (HTTP basic auth), to test image pull secrets. */
  basicAuth?: { username: string; password: string };
  binary?: string;
  startTimeoutMs?: number;
}

/** A running registry. It speaks plain HTTP: clients must allow that for its address. */
export class LocalRegistry {
  /** `127.0.0.1:<port>`, as it appears in image references. */
  readonly host: string;
  /** `http://127.0.0.1:<port>`, as a registry mirror endpoint. */
  readonly url: string;
  readonly dataDir: string;
  private readonly process: ManagedProcess;
  private readonly ownsDataDir: boolean;

  private constructor(host: string, dataDir: string, process: ManagedProcess, owns: boolean) {
    this.host = host;
    this.url = `http://${host}`;
    this.dataDir = dataDir;
    this.process = process;
    this.ownsDataDir = owns;
  }

  /** Starts the registry and waits until it answers `GET /v2/`. */
  static async start(options: RegistryOptions = {}): Promise<LocalRegistry> {
    const ownsDataDir = !options.dataDir;
    const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'imp-registry-')));
    const port = options.port ?? (await freePort());
    const host = `127.0.0.1:${port}`;
    try {
      await mkdir(join(dataDir, 'storage'), { recursive: true });
      const configPath = join(dataDir, 'config.yml');
      await writeFile(configPath, await registryConfig(dataDir, host, options.basicAuth));
      const child = startProcess(
        'docker-registry',
        options.binary ?? '/usr/bin/docker-registry',
        ['serve', configPath],
        join(dataDir, 'registry.log'),
      );
      const registry = new LocalRegistry(host, dataDir, child, ownsDataDir);
      await registry.waitReady(options.startTimeoutMs ?? 15_000);
      return registry;
    } catch (err) {
      if (ownsDataDir) await rm(dataDir, { recursive: true, force: true });
      throw new Error(`starting the local registry on ${host} failed`, { cause: err });
    }
  }

  /** Stops the registry and removes its storage if this registry created it. */
  async stop(): Promise<void> {
    await this.process.stop();
    if (this.ownsDataDir) await rm(this.dataDir, { recursive: true, force: true });
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (this.process.child.exitCode !== null || this.process.child.signalCode !== null) {
        const log = await readFile(this.process.logFile, 'utf8').catch(() => '');
        await this.process.stop();
        throw new Error(`docker-registry exited early: ${log.slice(-2000)}`);
      }
      try {
        // 401 means up and asking for credentials, which is ready too.
        const response = await fetch(`${this.url}/v2/`);
        if (response.status === 200 || response.status === 401) return;
        lastError = new Error(`GET /v2/ answered ${response.status}`);
      } catch (err) {
        lastError = err;
      }
      await sleep(50);
    }
    await this.process.stop();
    throw new Error(`docker-registry not ready after ${timeoutMs} ms`, { cause: lastError });
  }
}

async function registryConfig(
  dataDir: string,
  host: string,
  basicAuth: RegistryOptions['basicAuth'],
): Promise<string> {
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(join(dataDir, 'storage'))}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${host}`,
    // A fixed secret silences a warning; uploads never cross registry instances here.
    `  secret: ${randomBytes(16).toString('hex')}`,
  ];
  if (basicAuth) {
    const htpasswd = join(dataDir, 'htpasswd');
    await writeFile(htpasswd, `${basicAuth.username}:${bcrypt(basicAuth.password)}\n`);
    lines.push('auth:', '  htpasswd:', '    realm: imp', `    path: ${JSON.stringify(htpasswd)}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The registry accepts only bcrypt in htpasswd files, and Node has no bcrypt. Perl's crypt()
 * is the C library's, which on Debian (libxcrypt) does bcrypt, and Perl is always there.
 * The password goes through stdin so that it never shows in the process list.
 */
function bcrypt(password: string): string {
  const salt = randomBytes(16).toString('base64').replace(/[+/=]/g, '.').slice(0, 22);
  const script = 'my $p = <STDIN>; print crypt($p, $ARGV[0])';
  const hash = execFileSync('perl', ['-e', script, `$2b$05$${salt}`], {
    input: password,
    encoding: 'utf8',
  });
  if (!hash.startsWith('$2b$')) throw new Error('the C library crypt() cannot do bcrypt');
  return hash;
}
