/**
 * The Firecracker driver against a real Firecracker binary and the project's tiny guest:
 * boot, pause, resume, snapshot, restore, stop (forced and graceful), adopt, a network
 * namespace and the jailer. Firecracker cannot come from a package registry, so the binary is
 * named by IMP_FIRECRACKER_BIN (and IMP_JAILER_BIN for the jailer); see docs/firecracker.md.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { FirecrackerDriver } from '../../src/agent/vmm/firecracker/driver.ts';
import type { FirecrackerMachine } from '../../src/agent/vmm/firecracker/machine.ts';
import type { FirecrackerDriverOptions } from '../../src/agent/vmm/firecracker/options.ts';
import type { MachineSpec } from '../../src/agent/vmm/types.ts';
import {
  bootedLine,
  buildTinyGuest,
  ctrlAltDelLine,
  lastTick,
  RecordingLogger,
  waitForConsole,
} from '../fixtures/tiny-guest/harness.ts';

const firecrackerBin = process.env.IMP_FIRECRACKER_BIN;
const jailerBin = process.env.IMP_JAILER_BIN;
const verbose = !!process.env.IMP_TEST_VERBOSE;
const isRoot = process.getuid?.() === 0;

const noBinary =
  'IMP_FIRECRACKER_BIN is not set: point it at a firecracker binary (v1.7 or newer) to run ' +
  'these tests; Firecracker cannot be installed from a registry here, see docs/firecracker.md';

let workDir = '';
let kernelPath = '';
const machines = new Set<FirecrackerMachine>();

/** Skips `t` with the reason when something it needs is missing; true when it may go on. */
function ready(t: TestContext, needs: { root?: boolean; jailer?: boolean } = {}): boolean {
  if (!firecrackerBin) t.skip(noBinary);
  else if (needs.root && !isRoot) t.skip('needs root (network namespaces, jailer)');
  else if (needs.jailer && !jailerBin) t.skip('IMP_JAILER_BIN is not set: no jailer to test');
  else return true;
  return false;
}

function newDriver(extra: Partial<FirecrackerDriverOptions> = {}) {
  const log = new RecordingLogger(verbose);
  return {
    log,
    driver: new FirecrackerDriver({ firecrackerBin: firecrackerBin ?? '', log, ...extra }),
  };
}

/** A 64 MiB VM with a 1 MiB root drive (the guest ignores it; Firecracker opens it). */
async function specFor(id: string, extra: Partial<MachineSpec> = {}): Promise<MachineSpec> {
  const drive = join(workDir, `${id}.img`);
  await writeFile(drive, Buffer.alloc(1024 * 1024));
  return {
    id,
    vcpus: 1,
    memoryMiB: 64,
    kernelPath,
    bootArgs: 'console=ttyS0 reboot=k panic=1',
    drives: [{ id: 'root', path: drive, readOnly: false, isRoot: true }],
    networkInterfaces: [],
    runDir: join(workDir, id),
    ...extra,
  };
}

function track(machine: FirecrackerMachine): FirecrackerMachine {
  machines.add(machine);
  void machine.exited.then(() => machines.delete(machine));
  return machine;
}

/** The process is gone and its API socket removed. */
function assertGone(pid: number, socketPath: string): void {
  assert.equal(existsSync(`/proc/${pid}`), false, `process ${pid} still exists`);
  assert.equal(existsSync(socketPath), false, `${socketPath} still exists`);
}

before(async () => {
  if (!firecrackerBin) {
    console.log(`# firecracker driver tests skipped: ${noBinary}`);
    return;
  }
  workDir = await mkdtemp(join(tmpdir(), 'imp-fc-'));
  kernelPath = buildTinyGuest(workDir);
  const version = execFileSync(firecrackerBin, ['--version'], { encoding: 'utf8' });
  console.log(`# firecracker driver tests with ${version.split('\n')[0]} (${firecrackerBin})`);
});

after(async () => {
  for (const machine of machines) await machine.kill();
  if (workDir && !process.env.IMP_TEST_KEEP) await rm(workDir, { recursive: true, force: true });
});

describe('Firecracker driver lifecycle', () => {
  const { log, driver } = newDriver();
  let first: FirecrackerMachine | undefined;
  let restored: FirecrackerMachine | undefined;
  const snapshot = { statePath: '', memoryPath: '' };
  let tickAtSnapshot = 0;

  it('boots the tiny guest and shows its serial output', async (t) => {
    if (!ready(t)) return;
    first = track(await driver.create(await specFor('life-a')));
    assert.equal((await first.describe()).state, 'Not started');
    await first.start();
    await waitForConsole(first.consoleLogPath, bootedLine);
    await waitForConsole(first.consoleLogPath, /tick 2\n/);
    assert.equal((await first.describe()).state, 'Running');
  });

  it('pauses: the guest prints nothing while paused', async (t) => {
    if (!ready(t) || !first) return;
    await first.pause();
    assert.equal((await first.describe()).state, 'Paused');
    const before = await readFile(first.consoleLogPath, 'utf8');
    await delay(1_500);
    assert.equal(await readFile(first.consoleLogPath, 'utf8'), before);
  });

  it('resumes: the guest prints new ticks', async (t) => {
    if (!ready(t) || !first) return;
    const tick = await lastTick(first.consoleLogPath);
    await first.resume();
    assert.equal((await first.describe()).state, 'Running');
    await waitForConsole(first.consoleLogPath, new RegExp(`tick ${tick + 1}\\n`));
  });

  it('reports CPU time and memory of the VMM process', async (t) => {
    if (!ready(t) || !first) return;
    const stats = await first.stats();
    assert.ok((stats.cpuSeconds ?? -1) >= 0);
    assert.ok((stats.rssBytes ?? 0) > 0);
  });

  it("refuses a snapshot of a running VM with Firecracker's reason", async (t) => {
    if (!ready(t) || !first) return;
    const files = { statePath: join(workDir, 'x.state'), memoryPath: join(workDir, 'x.mem') };
    await assert.rejects(
      first.snapshot(files),
      /^FirecrackerApiError: write a full snapshot to .*x\.state: Firecracker answered 400: .+/,
    );
  });

  it('writes a full snapshot while paused', async (t) => {
    if (!ready(t) || !first) return;
    await first.pause();
    tickAtSnapshot = await lastTick(first.consoleLogPath);
    snapshot.statePath = join(workDir, 'a.state');
    snapshot.memoryPath = join(workDir, 'a.mem');
    await first.snapshot(snapshot);
    assert.ok((await stat(snapshot.statePath)).size > 0);
    assert.equal((await stat(snapshot.memoryPath)).size, 64 * 1024 * 1024);
  });

  it('restores the snapshot into a new process that goes on counting', async (t) => {
    if (!ready(t) || !first) return;
    restored = track(await driver.restore(await specFor('life-b'), snapshot, false));
    assert.notEqual(restored.pid, first.pid);
    assert.equal((await restored.describe()).state, 'Paused');
    await restored.resume();
    // The pause may have cut a line in two; the restored guest then ends that line first.
    await waitForConsole(restored.consoleLogPath, new RegExp(`tick ${tickAtSnapshot + 2}\\n`));
    const output = await readFile(restored.consoleLogPath, 'utf8');
    assert.doesNotMatch(output, bootedLine, 'a restored guest does not boot again');
    const firstTick = Number(/imp-tiny-guest: tick (\d+)\n/.exec(output)?.[1]);
    const expected = [tickAtSnapshot + 1, tickAtSnapshot + 2];
    assert.ok(expected.includes(firstTick), `counting went on from ${tickAtSnapshot}`);
  });

  it('stops a guest that cannot react by killing it after the timeout', async (t) => {
    if (!ready(t) || !first) return;
    // A paused guest never sees Ctrl-Alt-Del: this exercises the timeout-then-SIGKILL path.
    const { pid, socketPath } = first;
    await first.stop(1_000);
    assert.equal(await first.exited, 'SIGKILL');
    assert.ok(log.saw('did not shut down in time'));
    assertGone(pid, socketPath);
  });

  it('stops a running guest through Ctrl-Alt-Del', async (t) => {
    if (!ready(t) || !restored) return;
    const { pid, socketPath } = restored;
    await restored.stop(5_000);
    assert.equal(await restored.exited, 0);
    await waitForConsole(restored.consoleLogPath, ctrlAltDelLine, 0);
    assertGone(pid, socketPath);
  });

  it("names the failed step and Firecracker's reason when configuration fails", async (t) => {
    if (!ready(t)) return;
    const spec = await specFor('life-c');
    const missing = join(workDir, 'missing.img');
    spec.drives[0] = { id: 'root', path: missing, readOnly: false, isRoot: true };
    await assert.rejects(driver.create(spec), (error: Error) => {
      assert.equal(error.message, 'create VM life-c');
      assert.match(
        String((error.cause as Error).message),
        /^attach drive root \(.*missing\.img\): Firecracker answered 400: .+/,
      );
      return true;
    });
    assert.equal(existsSync(join(spec.runDir, 'firecracker.sock')), false);
  });
});

describe('Firecracker driver after an agent restart', () => {
  it('adopts a running VMM, and refuses a pid that is not that VMM', async (t) => {
    if (!ready(t)) return;
    const balloon = { amountMiB: 0, deflateOnOom: true, statsPollingIntervalSeconds: 1 };
    const spec = await specFor('adopt-a');
    const original = track(await newDriver({ balloon }).driver.create(spec));
    await original.start();
    await waitForConsole(original.consoleLogPath, bootedLine);

    const { log, driver } = newDriver({ balloon });
    await assert.rejects(driver.adopt(spec, process.pid), (error: Error) =>
      /not a Firecracker/.test(String((error.cause as Error).message)),
    );
    const other = await specFor('adopt-b');
    await assert.rejects(driver.adopt(other, original.pid), (error: Error) =>
      /does not hold the API socket/.test(String((error.cause as Error).message)),
    );

    assert.equal(await driver.ownsProcess(spec, original.pid), true);
    assert.equal(await driver.ownsProcess(other, original.pid), false, 'another VM id');
    assert.equal(await driver.ownsProcess(spec, process.pid), false, 'not a Firecracker');
    const adopted = await driver.adopt(spec, original.pid);
    assert.equal(adopted.pid, original.pid);
    assert.equal((await adopted.describe()).state, 'Running');
    // The tiny guest has no balloon driver: process figures, no guest memory figures.
    const stats = await adopted.stats();
    assert.ok((stats.rssBytes ?? 0) > 0);
    assert.equal(stats.memoryTotalBytes, undefined);
    assert.equal(log.saw('no balloon statistics'), false);

    await adopted.stop(5_000);
    assert.equal(await adopted.exited, 'unknown');
    assert.equal(await original.exited, 0);
    assertGone(original.pid, original.socketPath);
  });
});

describe('Firecracker driver in a network namespace', () => {
  const netns = `imp-fct-${process.pid}`;
  let created = false;

  after(() => {
    if (created) execFileSync('ip', ['netns', 'delete', netns]);
  });

  it('runs the VMM inside the namespace, wired to a TAP there', async (t) => {
    if (!ready(t, { root: true })) return;
    execFileSync('ip', ['netns', 'add', netns]);
    created = true;
    execFileSync('ip', ['-n', netns, 'tuntap', 'add', 'dev', 'imptap0', 'mode', 'tap']);
    execFileSync('ip', ['-n', netns, 'link', 'set', 'imptap0', 'up']);
    const nic = { id: 'eth0', tapName: 'imptap0', mac: '06:00:0a:00:00:02' };
    const spec = await specFor('netns-a', { netns, networkInterfaces: [nic] });
    const machine = track(await newDriver().driver.create(spec));
    await machine.start();
    await waitForConsole(machine.consoleLogPath, bootedLine);

    const inNamespace = (await stat(`/proc/${machine.pid}/ns/net`)).ino;
    assert.equal(inNamespace, (await stat(`/run/netns/${netns}`)).ino);
    // Adoption looks the socket up in the VMM's own namespace.
    const adopted = await newDriver().driver.adopt(spec, machine.pid);
    assert.equal((await adopted.describe()).state, 'Running');

    await machine.stop(5_000);
    assert.equal(await machine.exited, 0);
    assertGone(machine.pid, machine.socketPath);
  });
});

describe('Firecracker driver through the jailer', () => {
  it('boots, snapshots and restores jailed VMs, then removes their jails', async (t) => {
    if (!ready(t, { root: true, jailer: true })) return;
    const jailer = {
      binaryPath: jailerBin ?? '',
      uid: 65534,
      gid: 65534,
      chrootBaseDir: join(workDir, 'jail'),
      cgroupVersion: 1 as const,
      cgroups: { 'cpu.shares': '512' },
      parentCgroup: `imp-test-${process.pid}`,
    };
    const { driver } = newDriver({ jailer });
    const jails = join(jailer.chrootBaseDir, basename(firecrackerBin ?? ''));
    const firstSpec = await specFor('jail-a');
    const first = track(await driver.create(firstSpec));
    assert.equal(first.socketPath, join(jails, 'jail-a/root/firecracker.sock'));
    await first.start();
    await waitForConsole(first.consoleLogPath, /tick 1\n/);
    assert.equal((await stat(`/proc/${first.pid}`)).uid, 65534, 'the VMM runs unprivileged');
    // A jailed VMM's paths are inside its chroot; its id still tells it apart.
    assert.equal(await driver.ownsProcess(firstSpec, first.pid), true);
    assert.equal(await driver.ownsProcess(await specFor('jail-x'), first.pid), false);
    assert.ok(existsSync(`/sys/fs/cgroup/cpu/${jailer.parentCgroup}/jail-a`));

    await first.pause();
    const tick = await lastTick(first.consoleLogPath);
    const files = { statePath: join(workDir, 'j.state'), memoryPath: join(workDir, 'j.mem') };
    await first.snapshot(files);
    assert.ok((await stat(files.memoryPath)).size > 0);
    await first.stop(500);
    assert.equal(existsSync(join(jails, 'jail-a')), false);
    assert.ok((await stat(join(workDir, 'jail-a/firecracker.log'))).size > 0);
    assert.equal(existsSync(`/sys/fs/cgroup/cpu/${jailer.parentCgroup}/jail-a`), false);

    const restored = track(await driver.restore(await specFor('jail-b'), files, true));
    await waitForConsole(restored.consoleLogPath, new RegExp(`tick ${tick + 2}\\n`));
    await restored.stop(5_000);
    assert.equal(await restored.exited, 0);
    assert.equal(existsSync(join(jails, 'jail-b')), false);
    await rmdir(`/sys/fs/cgroup/cpu/${jailer.parentCgroup}`).catch(() => {});
  });
});
