/**
 * The agent's per-VM lifecycle: provision (image, disk, network), start the VMM, watch the
 * guest come up, handle exits by restart policy, and tear everything down on deletion. Each
 * step is visible in the VM's conditions and events, and every fact needed after an agent
 * restart is in the state store before the step that depends on it.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { FIELD_MANAGER_AGENT, FINALIZER_AGENT } from '../../api/agentlease.ts';
import { findCondition } from '../../api/conditions.ts';
import { isNotFound, type KubeClient } from '../../kube/client.ts';
import type { Result } from '../../kube/controller.ts';
import type { EventRecorder } from '../../kube/events.ts';
import { addFinalizer, removeFinalizers } from '../../kube/finalizers.ts';
import { keyOf } from '../../kube/object.ts';
import { resources } from '../../kube/resources.ts';
import { apiTime } from '../../kube/time.ts';
import type { Logger } from '../../log.ts';
import { ConsoleWatcher } from '../guest/console.ts';
import { workloadScript } from '../guest/workload.ts';
import type { RegistryMirror } from '../image/sources.ts';
import type { ImageStore } from '../image/store.ts';
import type { AgentMetrics } from '../metrics.ts';
import { networkId, vmId, vmTapName } from '../network/names.ts';
import type { KernelSource, VMNetworking } from '../ports.ts';
import type { StateStore, VMRecord } from '../state.ts';
import { readProcStat } from '../vmm/proc.ts';
import type { Driver, Machine, MachineSpec } from '../vmm/types.ts';
import type { Informers } from './informers.ts';
import {
  diskPath,
  effectiveSpec,
  ProvisionError,
  pullAuth,
  resolveEnv,
  runDir,
  shortId,
  vmNetwork,
} from './provision.ts';
import {
  type AgentStatus,
  currentAgentStatus,
  type ImpVM,
  setAgentCondition,
  statusFromRecord,
} from './status.ts';

export interface ReconcilerOptions {
  client: KubeClient;
  log: Logger;
  node: string;
  informers: Informers;
  state: StateStore;
  driver: Driver;
  /** The image store configured with the cluster's current registry mirrors. */
  images: (mirrors: RegistryMirror[]) => ImageStore;
  networking: VMNetworking;
  kernel: KernelSource;
  events: EventRecorder;
  metrics: AgentMetrics;
  /** Run VMMs inside this network namespace (local mode and tests). */
  netns?: string;
  /** Graceful shutdown budget before the VMM is killed. */
  stopTimeoutMs?: number;
  /** Called when a VM needs another look (VMM exit). */
  enqueue: (key: string) => void;
}

const BOOT_POLL_MS = 250;

export class VMReconciler {
  private readonly opts: ReconcilerOptions;
  private readonly machines = new Map<string, Machine>();
  private readonly consoles = new Map<string, ConsoleWatcher>();
  private readonly perVM = new Map<string, Promise<unknown>>();

  constructor(options: ReconcilerOptions) {
    this.opts = options;
  }

  /** VMs with a live VMM on this node. */
  get running(): number {
    return this.machines.size;
  }

  machine(uid: string): Machine | undefined {
    return this.machines.get(uid);
  }

  reconcile = async (key: string): Promise<Result> => {
    const uid = this.opts.informers.vms.get(key)?.metadata.uid;
    if (!uid) return undefined; // gone: the sweep cleans what it left
    return await this.serial(uid, async () => {
      const vm = this.opts.informers.vms.get(key);
      return vm?.metadata.uid === uid ? await this.reconcileVM(vm) : undefined;
    });
  };

  /**
   * Runs `task` after every earlier task for the same VM: reconciles and teardowns from
   * informer events or the sweep never interleave on one VM.
   */
  private serial<T>(uid: string, task: () => Promise<T>): Promise<T> {
    const previous = this.perVM.get(uid) ?? Promise.resolve();
    const next = previous.then(task, task);
    const settled = next.catch(() => {});
    this.perVM.set(uid, settled);
    void settled.then(() => {
      if (this.perVM.get(uid) === settled) this.perVM.delete(uid);
    });
    return next;
  }

  private async reconcileVM(vm: ImpVM): Promise<Result> {
    const uid = vm.metadata.uid!;
    if (vm.metadata.deletionTimestamp || vm.status?.nodeName !== this.opts.node) {
      await this.teardownNow(uid, vm);
      await removeFinalizers(this.opts.client, resources.ImpVM, vm, [FINALIZER_AGENT]);
      return undefined;
    }
    // The cached VM may be stale: a VM whose deletion began meanwhile is not provisioned.
    const fresh = await addFinalizer(this.opts.client, resources.ImpVM, vm, FINALIZER_AGENT);
    if (fresh.metadata.deletionTimestamp) {
      await this.teardownNow(uid, vm);
      await removeFinalizers(this.opts.client, resources.ImpVM, fresh, [FINALIZER_AGENT]);
      return undefined;
    }

    const record = (await this.opts.state.get(uid)) ?? this.newRecord(vm);
    const status = statusFromRecord(vm, record, this.machines.get(uid)?.pid);
    let result: Result;
    try {
      result = await this.step(vm, record, status);
    } catch (err) {
      // Every failure is shown on the VM; unexpected ones are also retried with back-off.
      const reason = err instanceof ProvisionError ? err.reason : 'ProvisionFailed';
      const message = errorChain(err);
      setAgentCondition(status, vm, 'Provisioned', false, reason, message);
      await this.opts.events.record(vm, 'Warning', reason, message);
      // A failing status write must not hide the failure it was about to report.
      await this.writeStatus(vm, status).catch((writeError: unknown) => {
        throw new Error(`report "${message}" on the VM`, { cause: writeError });
      });
      if (!(err instanceof ProvisionError)) throw err;
      return { requeueAfterMs: 15_000 };
    }
    await this.writeStatus(vm, status);
    return result;
  }

  /** Decides what the VM needs next and does it. */
  private async step(vm: ImpVM, record: VMRecord, status: AgentStatus): Promise<Result> {
    const machine = this.machines.get(record.uid);
    if (machine) return await this.observe(vm, record, machine, status);
    if (record.finished) return undefined;
    if (record.pid) {
      // The VMM went away since the last look: decide whether it comes back.
      return await this.handleExit(vm, record, status);
    }
    await this.provisionAndStart(vm, record, status);
    return { requeueAfterMs: BOOT_POLL_MS };
  }

  private newRecord(vm: ImpVM): VMRecord {
    return {
      uid: vm.metadata.uid!,
      namespace: vm.metadata.namespace!,
      name: vm.metadata.name,
      hypervisor: this.opts.driver.type,
      restartCount: 0,
    };
  }

  /** Image, disk, network and VMM, each reported as it happens. */
  private async provisionAndStart(vm: ImpVM, record: VMRecord, status: AgentStatus) {
    const { state, client, kernel, driver } = this.opts;
    const mirrors = this.opts.informers.configs.get('default')?.spec?.registryMirrors ?? [];
    const images = this.opts.images(mirrors);
    const progress = async (reason: string, message: string) => {
      setAgentCondition(status, vm, 'Provisioned', false, reason, message);
      await this.writeStatus(vm, status);
      await this.opts.events.record(vm, 'Normal', reason, message);
    };
    const spec = effectiveSpec(vm, this.opts.informers);
    const network = vmNetwork(vm, this.opts.informers);
    if (spec.networkName && !vm.status?.ip) {
      throw new ProvisionError('WaitingForAddress', 'the operator has not assigned an address yet');
    }
    const ns = vm.metadata.namespace!;

    // The image.
    await progress('Pulling', `pulling ${spec.image}`);
    const auth = await pullAuth(client, ns, spec.imagePullSecrets);
    let pulled: Awaited<ReturnType<ImageStore['pull']>>;
    try {
      pulled = await images.pull(spec.image, { auth });
    } catch (err) {
      throw new ProvisionError('ImagePullFailed', (err as Error).message, { cause: err });
    }
    record.imageDigest = pulled.digest;

    // The root disk, with the workload description for the guest init.
    await progress('BuildingDisk', `building a ${spec.diskMiB} MiB root disk`);
    const env = await resolveEnv(client, ns, spec.env);
    let workload: string;
    try {
      workload = workloadScript(pulled.config, {
        command: spec.command,
        args: spec.args,
        env,
        workingDir: spec.workingDir,
        user: spec.user,
      });
    } catch (err) {
      throw new ProvisionError('InvalidWorkload', (err as Error).message, { cause: err });
    }
    const vmDir = state.vmDir(record.uid);
    await state.put(record);
    await images.buildRootDisk({
      digest: pulled.digest,
      outPath: diskPath(vmDir),
      sizeBytes: spec.diskMiB * 1024 * 1024,
      workload,
    });

    // The network: the node's bridge for the ImpNetwork and a TAP for this VM.
    let tap: string | undefined;
    if (network && vm.status?.ip) {
      await progress('ConfiguringNetwork', `attaching to ${network.metadata.name}`);
      const netId = networkId(ns, network.metadata.name);
      // Recorded before they exist, so a concurrent sweep keeps what is being built.
      Object.assign(record, { networkId: netId, tap: vmTapName(record.uid) });
      await state.put(record);
      const prefix = network.spec!.subnet.split('/')[1];
      const gateway = network.status?.gateway ?? '';
      await this.opts.networking.ensureNetwork({
        id: netId,
        subnet: network.spec!.subnet,
        gateway,
        nat: network.spec?.nat?.enabled ?? false,
        blockMetadata: network.spec?.isolation?.blockMetadata ?? true,
        blockNode: network.spec?.isolation?.blockNode ?? true,
      });
      ({ tap } = await this.opts.networking.attachVM({ networkId: netId, vmId: vmId(record.uid) }));
      Object.assign(record, { networkId: netId, tap, ip: `${vm.status.ip}/${prefix}` });
    }

    // The VMM.
    const guestKernel = await kernel.kernel();
    const machineSpec: MachineSpec = {
      id: shortId(record.uid, 16),
      vcpus: spec.vcpus,
      memoryMiB: spec.memoryMiB,
      kernelPath: spec.kernel?.path ?? guestKernel.kernelPath,
      initrdPath: guestKernel.initrdPath,
      bootArgs: kernel.bootArgs({
        address: record.ip,
        gateway: network?.status?.gateway,
        dns: network?.spec?.dns?.servers ?? [],
        search: network?.spec?.dns?.searches ?? [],
        hostname: vm.spec?.hostname ?? vm.metadata.name,
        extra: spec.kernel?.bootArgs,
      }),
      drives: [{ id: 'root', path: diskPath(vmDir), readOnly: false, isRoot: true }],
      networkInterfaces:
        tap && vm.status?.mac ? [{ id: 'eth0', tapName: tap, mac: vm.status.mac }] : [],
      runDir: runDir(vmDir),
      netns: this.opts.netns,
    };
    setAgentCondition(
      status,
      vm,
      'Provisioned',
      true,
      'Provisioned',
      'image, disk and network ready',
    );
    const machine = await driver.create(machineSpec);
    record.machine = machineSpec;
    record.pid = machine.pid;
    record.startedAt = new Date().toISOString();
    delete record.exitCode;
    await state.put(record);
    await this.track(vm, record, machine, true);
    try {
      await machine.start();
    } catch (err) {
      this.machines.delete(record.uid);
      await machine.kill().catch(() => {});
      delete record.pid;
      await state.put(record);
      throw new ProvisionError('StartFailed', `starting the VMM: ${errorChain(err)}`, {
        cause: err,
      });
    }
    setAgentCondition(status, vm, 'Running', true, 'Started', `VMM pid ${machine.pid} started`);
    setAgentCondition(
      status,
      vm,
      'GuestReady',
      false,
      'Booting',
      'waiting for the guest to report',
    );
    status.vmmPid = machine.pid;
    status.exitCode = undefined;
    await this.opts.events.record(vm, 'Normal', 'Started', `${driver.type} VMM pid ${machine.pid}`);
  }

  /**
   * Remembers a live VMM and brings its VM back to the queue when it exits. A fresh VMM reads
   * its console from the current end; an adopted one from the start (last boot wins).
   */
  async track(
    vm: Pick<ImpVM, 'metadata'>,
    record: VMRecord,
    machine: Machine,
    fresh: boolean,
  ): Promise<void> {
    this.machines.set(record.uid, machine);
    const consoleWatcher = new ConsoleWatcher(machine.consoleLogPath);
    if (fresh) await consoleWatcher.skipExisting();
    this.consoles.set(record.uid, consoleWatcher);
    void machine.exited.then((how) => {
      if (this.machines.get(record.uid) !== machine) return;
      this.machines.delete(record.uid);
      this.opts.log.info({ vm: keyOf(vm.metadata), pid: machine.pid, how }, 'VMM exited');
      this.opts.enqueue(keyOf(vm.metadata));
    });
  }

  /** A VMM is running: watch for the guest's ready and exit markers. */
  private async observe(vm: ImpVM, record: VMRecord, machine: Machine, status: AgentStatus) {
    const consoleState = await this.consoles.get(record.uid)!.poll();
    status.vmmPid = machine.pid;
    if (consoleState.error) {
      const { reason, message } = consoleState.error;
      setAgentCondition(status, vm, 'GuestReady', false, reason, message || reason);
      return { requeueAfterMs: 1_000 };
    }
    if (consoleState.ready) {
      if (!record.runningAt) {
        const started = Date.parse(record.startedAt ?? new Date().toISOString());
        record.bootDurationSeconds = (Date.now() - started) / 1000;
        record.runningAt = apiTime(new Date());
        await this.opts.state.put(record);
        this.opts.metrics.bootSeconds.observe(record.bootDurationSeconds);
        await this.opts.events.record(
          vm,
          'Normal',
          'GuestReady',
          `guest ready after ${record.bootDurationSeconds.toFixed(2)}s`,
        );
      }
      Object.assign(status, statusFromRecord(vm, record, machine.pid));
      // Set again in full: the cached VM this status started from may predate the writes
      // made while provisioning.
      setAgentCondition(
        status,
        vm,
        'Provisioned',
        true,
        'Provisioned',
        'image, disk and network ready',
      );
      setAgentCondition(status, vm, 'Running', true, 'Running', `VMM pid ${machine.pid}`);
      setAgentCondition(status, vm, 'GuestReady', true, 'GuestReady', 'the guest reported ready');
      return undefined;
    }
    return { requeueAfterMs: BOOT_POLL_MS };
  }

  /** The VMM is gone: report it and restart or stop per the restart policy. */
  private async handleExit(vm: ImpVM, record: VMRecord, status: AgentStatus): Promise<Result> {
    const consoleState = await this.consoles.get(record.uid)?.poll();
    const exitCode = consoleState?.exitCode;
    const policy = effectiveSpec(vm, this.opts.informers).restartPolicy;
    const crashed = exitCode === undefined;
    const message = crashed
      ? `the VMM (pid ${record.pid}) exited without the workload finishing`
      : `the workload exited with code ${exitCode}`;
    await this.opts.events.record(
      vm,
      crashed ? 'Warning' : 'Normal',
      crashed ? 'VMMExited' : 'Exited',
      message,
    );
    this.opts.metrics.exits.inc({ kind: crashed ? 'crash' : 'exit' });
    // A VMM that could not be adopted may still run: stop it before anything replaces it.
    await this.killStray(record);
    record.exitCode = exitCode;
    delete record.pid;
    status.vmmPid = undefined;
    status.exitCode = exitCode;
    setAgentCondition(status, vm, 'GuestReady', false, crashed ? 'VMMExited' : 'Exited', message);

    const restart = policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0);
    if (!restart) {
      record.finished = exitCode === 0 ? 'Succeeded' : 'Failed';
      setAgentCondition(status, vm, 'Running', false, record.finished, message);
      await this.releaseNodeResources(record, false);
      await this.opts.state.put(record);
      return undefined;
    }
    record.restartCount++;
    setAgentCondition(status, vm, 'Running', false, 'Restarting', `${message}; restarting`);
    await this.releaseNodeResources(record, false);
    await this.opts.state.put(record);
    status.restartCount = record.restartCount;
    // Back off a VM that keeps failing: 1 s, 2 s, 4 s ... up to a minute.
    return { requeueAfterMs: Math.min(60_000, 1000 * 2 ** Math.min(record.restartCount - 1, 6)) };
  }

  /** Stops the VMM (gracefully first) and removes everything the VM had on this node. */
  teardown(uid: string, vm?: ImpVM): Promise<void> {
    return this.serial(uid, () => this.teardownNow(uid, vm));
  }

  private async teardownNow(uid: string, vm?: ImpVM): Promise<void> {
    const record = await this.opts.state.get(uid);
    const machine = this.machines.get(uid);
    if (machine) {
      this.machines.delete(uid);
      await machine.stop(this.opts.stopTimeoutMs ?? 10_000);
      if (vm)
        await this.opts.events.record(vm, 'Normal', 'Stopped', `VMM pid ${machine.pid} stopped`);
    } else if (record?.pid) {
      // A VMM this agent never adopted (it failed to): make sure it is gone.
      await this.killStray(record);
    }
    this.consoles.delete(uid);
    if (record) await this.releaseNodeResources(record, true);
    await this.opts.state.remove(uid);
  }

  /** Detaches the TAP; with `all`, the disk and run dir go too (via the state dir). */
  private async releaseNodeResources(record: VMRecord, all: boolean): Promise<void> {
    if (record.tap) await this.opts.networking.detachVM(vmId(record.uid));
    if (!all) {
      delete record.tap;
    }
  }

  private async writeStatus(vm: ImpVM, status: AgentStatus): Promise<void> {
    const before = JSON.stringify(currentAgentStatus(vm));
    if (JSON.stringify({ ...currentAgentStatus(vm), ...status }) === before) return;
    const body = Object.fromEntries(Object.entries(status).filter(([, v]) => v !== undefined));
    try {
      await this.opts.client.apply(
        resources.ImpVM,
        { metadata: { name: vm.metadata.name, namespace: vm.metadata.namespace }, status: body },
        FIELD_MANAGER_AGENT,
        'status',
      );
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /**
   * Kills the recorded VMM if it still runs and the driver recognises it as this VM's, so a
   * recycled pid is never hit. A record from before the machine spec was saved has no VMM.
   */
  private async killStray(record: VMRecord): Promise<void> {
    const { pid, machine } = record;
    if (!pid || !machine) return;
    if (!(await this.opts.driver.ownsProcess(machine as MachineSpec, pid))) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return; // it ended on its own meanwhile
    }
    // readProcStat sees a zombie (waiting for its parent) as gone: it no longer runs.
    for (let i = 0; i < 50 && (await readProcStat(pid)); i++) await sleep(100);
  }

  /** Lets go of every VMM without stopping them, for an agent that shuts down. */
  detachAll(): void {
    for (const machine of this.machines.values()) machine.detach();
    this.machines.clear();
    this.consoles.clear();
  }

  /** True while the guest has reported ready on the VM's current VMM. */
  isReady(vm: ImpVM): boolean {
    return findCondition(vm.status?.conditions, 'GuestReady')?.status === 'True';
  }
}

/** An error and its causes in one line, for a condition message. */
function errorChain(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e && parts.length < 5; e = (e as { cause?: unknown }).cause) {
    parts.push(e instanceof Error ? e.message : String(e));
  }
  return parts.join(': ');
}
