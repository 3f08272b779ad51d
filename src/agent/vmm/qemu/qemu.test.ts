/**
 * The QEMU driver against real QEMU under TCG, Debian's cloud kernel (hack/guest-kernel.sh),
 * Imp's initramfs and a busybox root disk (hack/make-rootdisk.sh). The guests sit on a bridge
 * in a network namespace this test creates; nothing reaches them, or leaves, any other way.
 * Needs root (namespaces, TAPs), qemu-system-x86_64 and busybox-static.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { kernelCommandLine } from '../../kernel/cmdline.ts';
import { type GuestKernelFiles, provideGuestKernel } from '../../kernel/provider.ts';
import type { DriverLogger } from '../logger.ts';
import type { MachineSpec } from '../types.ts';
import { QemuDriver } from './driver.ts';
import type { QemuMachine } from './machine.ts';
import type { QemuDriverOptions } from './options.ts';

const run = promisify(execFile);
const repoDir = join(import.meta.dirname, '../../../..');
const verbose = !!process.env.IMP_TEST_VERBOSE;

const netns = `imp-qemu-test-${process.pid}`;
const gateway = '10.216.0.1';
const prefix = 24;
/** A booted guest has printed nothing after this long: one of TCG's rare hangs. */
const silentBootMs = 15_000;
const readyTimeoutMs = 45_000;

/** Why these tests cannot run here, if they cannot. */
function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for network namespaces and TAP devices';
  for (const tool of ['qemu-system-x86_64', 'busybox', 'mkfs.ext4', 'ip']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed`;
    }
  }
  return undefined;
}
const skipReason = missing();

/** Keeps the driver's log lines for assertions; echoes them when IMP_TEST_VERBOSE is set. */
class TestLog implements DriverLogger {
  readonly lines: { level: string; fields: object; message: string }[] = [];
  debug(fields: object, message: string): void {
    this.record('debug', fields, message);
  }
  info(fields: object, message: string): void {
    this.record('info', fields, message);
  }
  warn(fields: object, message: string): void {
    this.record('warn', fields, message);
  }
  error(fields: object, message: string): void {
    this.record('error', fields, message);
  }
  saw(text: string): boolean {
    return this.lines.some((line) => line.message.includes(text));
  }
  private record(level: string, fields: object, message: string): void {
    this.lines.push({ level, fields, message });
    if (verbose) process.stderr.write(`${level} ${message} ${JSON.stringify(fields)}\n`);
  }
}

let workDir = '';
let kernel: GuestKernelFiles;
const token = `imp-qemu-test-${process.pid}`;
const machines = new Set<QemuMachine>();

function track(machine: QemuMachine): QemuMachine {
  machines.add(machine);
  void machine.exited.then(() => machines.delete(machine));
  return machine;
}

function newDriver(extra: Partial<QemuDriverOptions> = {}) {
  const log = new TestLog();
  const options: QemuDriverOptions = {
    log,
    accel: 'tcg',
    balloon: { statsPollingIntervalSeconds: 2 },
    ...extra,
  };
  return { log, driver: new QemuDriver(options) };
}

/** A 256 MiB, one-vCPU VM on `tap` with address 10.216.0.`host`. */
function specFor(name: string, disk: string, tap: string, host: number): MachineSpec {
  return {
    id: name,
    vcpus: 1,
    memoryMiB: 256,
    kernelPath: kernel.kernelPath,
    ...(kernel.initrdPath ? { initrdPath: kernel.initrdPath } : {}),
    bootArgs: kernelCommandLine({
      address: `10.216.0.${host}/${prefix}`,
      gateway,
      dns: [gateway],
      hostname: name,
    }),
    drives: [{ id: 'root', path: disk, readOnly: false, isRoot: true }],
    networkInterfaces: [
      { id: 'eth0', tapName: tap, mac: `52:54:00:16:00:${host.toString(16).padStart(2, '0')}` },
    ],
    runDir: join(workDir, name),
    netns,
  };
}

/** Expects `promise` to fail with an error whose messages, causes included, match `pattern`. */
async function rejectsWith(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    const messages: string[] = [];
    for (let e = error; e instanceof Error; e = e.cause) messages.push(e.message);
    assert.match(messages.join(': '), pattern);
    return true;
  });
}

/** Fetches `path` from the guest at `ip`, from inside the namespace. */
async function fetchPage(ip: string, path: string, seconds = 5): Promise<string> {
  // Debian's static busybox wget crashes with -T; timeout(1) bounds the request instead.
  const { stdout } = await run('ip', [
    'netns',
    'exec',
    netns,
    'timeout',
    String(seconds),
    'busybox',
    'wget',
    '-qO-',
    `http://${ip}${path}`,
  ]);
  return stdout;
}

/** Fetches until the guest answers: IMP_READY comes just before the workload starts. */
async function fetchWhenUp(ip: string, path: string): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      return await fetchPage(ip, path);
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await delay(200);
    }
  }
}

/** The guest's uptime in seconds, from its CGI script. */
async function guestUptime(ip: string): Promise<number> {
  return Number((await fetchPage(ip, '/cgi-bin/uptime')).trim().split(/\s+/)[0]);
}

/**
 * Creates and boots `spec` until the console shows IMP_READY. TCG boots hang rarely, before
 * printing anything or early in the kernel; such a boot is retried once with a fresh QEMU.
 */
async function boot(t: TestContext, driver: QemuDriver, spec: MachineSpec): Promise<QemuMachine> {
  for (let attempt = 1; ; attempt++) {
    await rm(join(spec.runDir, 'console.log'), { force: true });
    const started = Date.now();
    const machine = track(await driver.create(spec));
    assert.equal((await machine.status()).status, 'prelaunch');
    await machine.start();
    const outcome = await waitForReady(machine.consoleLogPath, started);
    if (outcome === 'ready') {
      const line = /^IMP_READY .*$/m.exec(await readFile(machine.consoleLogPath, 'utf8'));
      t.diagnostic(`${spec.id}: ${line?.[0]} ${Date.now() - started} ms after launch`);
      return machine;
    }
    await machine.kill();
    if (attempt >= 2) assert.fail(`${spec.id} did not boot twice: ${outcome}`);
    t.diagnostic(`${spec.id}: boot hung (${outcome}); retrying with a fresh QEMU`);
  }
}

async function waitForReady(consolePath: string, started: number): Promise<string> {
  for (;;) {
    const text = await readFile(consolePath, 'utf8').catch(() => '');
    if (/^IMP_READY /m.test(text)) return 'ready';
    const error = /IMP_ERROR.*/.exec(text);
    if (error) assert.fail(`guest reported ${error[0]}`);
    const elapsed = Date.now() - started;
    if (text === '' && elapsed > silentBootMs) return `no output after ${silentBootMs} ms`;
    if (elapsed > readyTimeoutMs) return `no IMP_READY after ${readyTimeoutMs} ms`;
    await delay(50);
  }
}

/** A busybox root disk serving a page and the guest's uptime, stopped by `stopSignal`. */
async function makeRootDisk(name: string, stopSignal: string): Promise<string> {
  const rootfs = join(workDir, 'rootfs');
  if (!existsSync(rootfs)) {
    await mkdir(join(rootfs, 'bin'), { recursive: true });
    await mkdir(join(rootfs, 'etc'));
    await mkdir(join(rootfs, 'www/cgi-bin'), { recursive: true });
    const busybox = execFileSync('sh', ['-c', 'command -v busybox'], { encoding: 'utf8' }).trim();
    await copyFile(busybox, join(rootfs, 'bin/busybox'));
    await chmod(join(rootfs, 'bin/busybox'), 0o755);
    await writeFile(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    await writeFile(join(rootfs, 'etc/group'), 'root:x:0:\n');
    await writeFile(join(rootfs, 'www/index.html'), `${token}\n`);
    const uptime =
      '#!/bin/busybox sh\necho "Content-Type: text/plain"\necho\nbusybox cat /proc/uptime\n';
    await writeFile(join(rootfs, 'www/cgi-bin/uptime'), uptime, { mode: 0o755 });
  }
  const workload = join(workDir, `${name}.workload.sh`);
  const words = ['busybox', 'httpd', '-f', '-p', '80', '-h', '/www'];
  await writeFile(
    workload,
    `IMP_WORKDIR='/www'\nIMP_STOP_SIGNAL='${stopSignal}'\nimp_env 'PATH=/bin'\n` +
      words.map((word) => `imp_arg '${word}'\n`).join(''),
  );
  const script = join(repoDir, 'hack/make-rootdisk.sh');
  const disk = join(workDir, `${name}.img`);
  await run(script, [rootfs, disk, '64M', workload]);
  return disk;
}

async function ip(...args: string[]): Promise<void> {
  await run('ip', ['-n', netns, ...args]);
}

before(async () => {
  if (skipReason) return;
  workDir = await mkdtemp(join(tmpdir(), 'imp-qemu-'));
  kernel = await provideGuestKernel();
  await run('ip', ['netns', 'add', netns]);
  await ip('link', 'set', 'lo', 'up');
  await ip('link', 'add', 'br0', 'type', 'bridge');
  await ip('addr', 'add', `${gateway}/${prefix}`, 'dev', 'br0');
  await ip('link', 'set', 'br0', 'up');
  for (const tap of ['tap-a', 'tap-c']) {
    await ip('tuntap', 'add', 'dev', tap, 'mode', 'tap');
    await ip('link', 'set', tap, 'master', 'br0');
    await ip('link', 'set', tap, 'up');
  }
});

after(async () => {
  try {
    // Bounded: a cleanup that hangs must not keep the namespace alive.
    await Promise.race([
      Promise.allSettled([...machines].map((machine) => machine.kill())),
      delay(10_000),
    ]);
  } finally {
    if (!skipReason) {
      await run('ip', ['netns', 'del', netns]).catch(() => undefined);
      if (workDir && !process.env.IMP_TEST_KEEP) {
        await rm(workDir, { recursive: true, force: true });
      }
    }
  }
});

describe('QEMU driver with a real guest', { skip: skipReason ?? false }, () => {
  const { log, driver } = newDriver();
  const guestIp = '10.216.0.2';
  let specA: MachineSpec;
  let specB: MachineSpec;
  let first: QemuMachine | undefined;
  let restored: QemuMachine | undefined;
  let adopted: QemuMachine | undefined;
  let uptimeAtSnapshot = 0;
  const snapshot = { statePath: '', memoryPath: '' };

  it('boots to IMP_READY and serves a page through the TAP', async (t) => {
    const disk = await makeRootDisk('a', 'SIGTERM');
    specA = specFor('vm-a', disk, 'tap-a', 2);
    first = await boot(t, driver, specA);
    const started = Date.now();
    assert.equal((await fetchWhenUp(guestIp, '/')).trim(), token);
    t.diagnostic(`first page ${Date.now() - started} ms after IMP_READY`);
    const args = await readFile(`/proc/${first.pid}/cmdline`, 'utf8');
    assert.match(args, /tsc_early_khz=\d+ tsc=reliable/, 'TCG guests get the host TSC rate');
    assert.equal(existsSync(join(specA.runDir, 'qemu.pid')), true);
  });

  it('reports CPU time, memory and the balloon', async () => {
    assert.ok(first);
    const stats = await first.stats();
    assert.ok((stats.cpuSeconds ?? 0) > 1, `cpuSeconds ${stats.cpuSeconds}`);
    assert.ok((stats.rssBytes ?? 0) > 64 * 1024 * 1024, `rssBytes ${stats.rssBytes}`);
    assert.equal(stats.memoryTotalBytes, 256 * 1024 * 1024);
  });

  it('refuses to snapshot a running VM', async () => {
    assert.ok(first);
    const files = { statePath: join(workDir, 'running.state'), memoryPath: '' };
    await assert.rejects(first.snapshot(files), /must be paused, it is running/);
  });

  it('pauses and resumes', async () => {
    assert.ok(first);
    await first.pause();
    assert.deepEqual(await first.status(), { status: 'paused', running: false });
    await assert.rejects(fetchPage(guestIp, '/', 1), 'a paused guest does not answer');
    await first.resume();
    assert.deepEqual(await first.status(), { status: 'running', running: true });
    assert.equal((await fetchPage(guestIp, '/')).trim(), token);
  });

  it('snapshots a paused VM and restores it into a new process that keeps serving', async (t) => {
    assert.ok(first);
    uptimeAtSnapshot = await guestUptime(guestIp);
    await first.pause();
    snapshot.statePath = join(workDir, 'snapshot/vm.state');
    snapshot.memoryPath = join(workDir, 'snapshot/vm.mem');
    let started = Date.now();
    await first.snapshot(snapshot);
    t.diagnostic(`snapshot written in ${Date.now() - started} ms`);
    assert.ok((await stat(snapshot.statePath)).size > 1024 * 1024);
    assert.equal((await stat(snapshot.memoryPath)).size, 0, 'memory lives in the state file');
    assert.equal((await first.status()).status, 'postmigrate');

    // The TAP and the disk belong to one VM at a time; the paused original never ran again.
    await first.kill();
    assert.equal(await first.exited, 'SIGKILL');
    assert.equal(existsSync(join(specA.runDir, 'qmp.sock')), false, 'socket removed');

    specB = { ...specA, runDir: join(workDir, 'vm-a-restored') };
    started = Date.now();
    restored = track(await driver.restore(specB, snapshot, false));
    t.diagnostic(`snapshot loaded in ${Date.now() - started} ms`);
    assert.equal((await restored.status()).status, 'paused');
    await restored.resume();
    assert.equal((await fetchWhenUp(guestIp, '/')).trim(), token);
    const uptime = await guestUptime(guestIp);
    assert.ok(uptime >= uptimeAtSnapshot, `uptime ${uptime} < ${uptimeAtSnapshot}: rebooted?`);
    const console = await readFile(restored.consoleLogPath, 'utf8').catch(() => '');
    assert.doesNotMatch(console, /Linux version/, 'the restored guest did not boot again');
  });

  it('is adopted by a second driver instance, which checks what it adopts', async () => {
    assert.ok(restored);
    const other = newDriver();
    // The first agent goes away: QEMU serves one QMP client at a time.
    restored.detach();
    await rejectsWith(other.driver.adopt(specB, process.pid), /adopt VM vm-a: .*not a QEMU/);
    await rejectsWith(
      other.driver.adopt({ ...specB, runDir: join(workDir, 'elsewhere') }, restored.pid),
      /does not serve QMP at/,
    );
    await rejectsWith(other.driver.adopt(specB, 2 ** 22 + 1), /adopt VM vm-a: no process/);
    adopted = track(await other.driver.adopt(specB, restored.pid));
    assert.equal(adopted.pid, restored.pid);
    assert.deepEqual(await adopted.status(), { status: 'running', running: true });
    assert.equal((await fetchPage(guestIp, '/')).trim(), token);
  });

  it('stops gracefully: the guest reports IMP_EXIT and QEMU exits', async (t) => {
    assert.ok(adopted);
    const started = Date.now();
    await adopted.stop(20_000);
    t.diagnostic(`stopped in ${Date.now() - started} ms`);
    const console = await readFile(adopted.consoleLogPath, 'utf8');
    assert.match(console, /^IMP_STOPPING signal=TERM/m);
    // busybox httpd has no SIGTERM handler: it dies of the signal, 128 + 15.
    assert.match(console, /^IMP_EXIT code=143/m);
    assert.equal(await adopted.exited, 'unknown', 'an adopted process has no exit status');
    assert.equal(existsSync(`/proc/${adopted.pid}`), false, 'QEMU is gone');
    assert.equal(existsSync(join(specB.runDir, 'qmp.sock')), false, 'socket removed');
  });

  it('presses the power button again when the guest ignores the first press', async (t) => {
    const disk = await makeRootDisk('c', 'SIGWINCH');
    const spec = specFor('vm-c', disk, 'tap-c', 3);
    const machine = await boot(t, driver, spec);
    await fetchWhenUp('10.216.0.3', '/');
    const started = Date.now();
    await machine.stop(4_000);
    const took = Date.now() - started;
    t.diagnostic(`stopped by the second press in ${took} ms`);
    const console = await readFile(machine.consoleLogPath, 'utf8');
    assert.match(console, /^IMP_STOPPING signal=WINCH/m);
    assert.match(console, /^IMP_STOPPING signal=KILL/m);
    assert.match(console, /^IMP_EXIT code=137/m);
    assert.equal(await machine.exited, 0, 'the guest powered off');
    assert.ok(took >= 2_000, `stopped after ${took} ms, before the second press`);
    assert.ok(log.saw('pressing the power button again'));
  });

  it('kills a VM at once', async () => {
    const spec = { ...specFor('vm-d', '', 'tap-c', 4), drives: [], networkInterfaces: [] };
    const machine = track(await driver.create(spec));
    await machine.kill();
    assert.equal(await machine.exited, 'SIGKILL');
    assert.equal(existsSync(`/proc/${machine.pid}`), false);
    assert.equal(existsSync(join(spec.runDir, 'qemu.pid')), false, 'pidfile removed');
  });
});

describe('QEMU driver failures', { skip: skipReason ?? false }, () => {
  const base = (): MachineSpec => ({
    id: 'vm-f',
    vcpus: 1,
    memoryMiB: 64,
    kernelPath: kernel.kernelPath,
    bootArgs: 'console=ttyS0',
    drives: [],
    networkInterfaces: [],
    runDir: join(workDir, 'vm-f'),
  });

  it('says QEMU could not start when the binary is missing', async () => {
    const { driver } = newDriver({ qemuPath: join(workDir, 'no-qemu') });
    await assert.rejects(
      driver.create(base()),
      /^Error: start QEMU for VM vm-f: VMM exited \(spawn-error: ENOENT\)/,
    );
  });

  it("quotes QEMU's last words when it exits at once", async () => {
    const { driver } = newDriver();
    await assert.rejects(
      driver.create({ ...base(), kernelPath: join(workDir, 'no-kernel') }),
      (error: Error) => {
        assert.match(error.message, /VMM exited \(1\)/);
        assert.match(error.message, /could not open kernel file/);
        return true;
      },
    );
  });

  it('refuses to restore from a file that is no snapshot', async () => {
    const { driver } = newDriver();
    const files = { statePath: join(workDir, 'no.state'), memoryPath: '' };
    await assert.rejects(driver.restore(base(), files, true), /cannot read snapshot/);
    await writeFile(files.statePath, 'not a snapshot');
    await assert.rejects(driver.restore(base(), files, true), /is not a QEMU snapshot/);
  });

  it('fails a restore whose snapshot does not fit the VM', async () => {
    const { driver } = newDriver();
    const statePath = join(workDir, 'truncated.state');
    // A valid header followed by nothing QEMU can load.
    await writeFile(statePath, Buffer.from('QEVM\0\0\0\x03garbage', 'latin1'));
    await assert.rejects(
      driver.restore(base(), { statePath, memoryPath: '' }, true),
      /restore VM vm-f from .*truncated.state/,
    );
  });

  it('stops a VM that never started by killing it', async () => {
    const { log, driver } = newDriver();
    const machine = track(await driver.create(base()));
    await machine.stop(10_000);
    assert.equal(await machine.exited, 'SIGKILL');
    assert.ok(log.saw('guest never ran'));
  });
});
