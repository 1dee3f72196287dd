// The containers a shim daemon serves, all in one sandbox (VM). The first Create
// boots the VM (for a CRI pod that is the pause container); later ones join it.
import { CRI_SANDBOX_ID } from '../lib/cri-annotations';
import { ConfigHints, LoadedConfig, recordConfigSource } from '../config/config-location';
import { RuntimeConfig } from '../config/runtime-config';
import { FailedPreconditionError, GrpcCode, grpcCodeOf, NotFoundError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { Hypervisor } from '../hypervisors/hypervisor';
import { Container } from './container';
import { MountSpec } from './rootfs';
import { VmTemplates } from './vm-templates';
import type { WarmVm } from './warm-vm';
import { Sandbox } from './sandbox';
import { refuseWhatAVmCannotMean } from './host-namespaces';
import { rootfsInsideBundle, validateId } from './identifiers';
import { ContainerHooks } from './oci-hooks';
import { readBundleSpec } from './spec';
import { ExitInfo, TaskProcess } from './task-process';

const SIGKILL = 9;
const DEFAULT_KILL_GRACE_MS = 10_000;

export interface CreateParams {
  id: string;
  bundle: string;
  rootfs: MountSpec[];
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
  /** ConfigPath from containerd's runtime options, if any (only the first Create's counts). */
  runtimeOptionsConfigPath?: string;
}

export interface ExecParams {
  containerId: string;
  execId: string;
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
  /** OCI Process as JSON. */
  processJson: Buffer;
}

export interface PodEvents {
  onExit(container: Container, process: TaskProcess, exit: ExitInfo): void;
  onOom(containerId: string): void;
}

export interface PodDeps {
  /** The containerd namespace this shim serves: the sandbox's state is keyed by it and the sandbox id. */
  namespace: string;
  /** Finds and reads the sandbox's configuration; called at the first Create, which knows the spec and options. */
  resolveConfig(hints: ConfigHints): LoadedConfig;
  /** The driver for the configured VMM. */
  newHypervisor(config: RuntimeConfig, logger: Logger): Hypervisor;
  /** The VM this daemon restored while it was a spare ([factory] spare_vms), handed over once. */
  takeWarmVm?(): WarmVm | undefined;
}

export class Pod {
  private sandbox: Sandbox | undefined;
  private starting: Promise<Sandbox> | undefined;
  /** The sandbox's one configuration, from its first Create; cleared if that sandbox fails to start. */
  private loaded: LoadedConfig | undefined;
  /** Set once teardown began: no Create may boot a VM that nothing would stop. */
  private tornDown = false;
  private destroying: Promise<void> | undefined;
  /** Whether any Create reached this pod: a daemon that never gets one was started for nothing. */
  private createSeen = false;

  constructor(
    private readonly deps: PodDeps,
    private readonly events: PodEvents,
    private readonly logger: Logger,
  ) {}

  async create(params: CreateParams): Promise<Container> {
    this.createSeen = true;
    if (this.tornDown) throw new FailedPreconditionError(`container ${params.id}: this shim is shutting down its sandbox; create the container again (a new shim will serve it)`);
    validateId('container', params.id);
    const spec = readBundleSpec(params.bundle);
    refuseWhatAVmCannotMean(spec); // hostNetwork/hostPID/hostIPC, Bidirectional mounts: before any VM boots
    const sandboxId = validateId('sandbox', spec.annotations?.[CRI_SANDBOX_ID] || params.id);
    // Before any VM boots for it: the rootfs must be a directory inside the bundle.
    const hostRootfs = rootfsInsideBundle(params.bundle, spec.root?.path);
    const netnsPath = spec.linux?.namespaces?.find((ns) => ns.type === 'network')?.path;
    const loaded = this.configFor({ runtimeOptionsPath: params.runtimeOptionsConfigPath, annotations: spec.annotations }, sandboxId);
    this.record(params.bundle, loaded);
    // Checked before any VM boots too; never a file the guest can write (its rootfs, the share under state_dir).
    const hooks = await ContainerHooks.fromSpec(spec, { id: params.id, bundle: params.bundle, guestWritable: [hostRootfs, loaded.config.runtime.stateDir] }, this.logger.child({ container: params.id }));
    const sandbox = await this.sandboxFor(sandboxId, spec.hostname || sandboxId.slice(0, 12), netnsPath, spec.linux?.cgroupsPath, loaded.config);
    const container = await sandbox.createContainer(
      { id: params.id, bundle: params.bundle, terminal: params.terminal, stdio: { stdin: params.stdin, stdout: params.stdout, stderr: params.stderr }, hooks },
      spec,
      params.rootfs,
      hostRootfs,
    );
    if (hooks) await this.runCreateHooks(sandbox, container, hooks);
    return container;
  }

  /**
   * prestart, then createRuntime hooks (runtime-spec lifecycle steps 3-4): the VM runs,
   * the rootfs and volumes are shared and the guest holds the spec, nothing started.
   * Kata runs them at the same point (katautils/create.go, after the sandbox's VM
   * started or the container was created in it). A failure fails the Create: the
   * container is removed as a Delete would (guest, devices, mounts, share), its
   * poststop hooks run (steps 12-13), and containerd gets the hook's error.
   */
  private async runCreateHooks(sandbox: Sandbox, container: Container, hooks: ContainerHooks): Promise<void> {
    try {
      await hooks.created(this.hypervisorPid());
    } catch (err) {
      await sandbox.deleteContainer(container.id).catch((cleanupErr: unknown) => this.logger.error({ container: container.id, err: (cleanupErr as Error).message }, 'removing the container after its hook failed'));
      await hooks.deleted(this.hypervisorPid());
      throw err;
    }
  }

  container(id: string): Container {
    if (!this.sandbox) throw new NotFoundError(`container ${id} not found: no sandbox has been created in this shim`);
    return this.sandbox.container(id);
  }

  process(id: string, execId: string): TaskProcess {
    return this.container(id).process(execId);
  }

  /** Starts the init ('' execId) or an exec; returns the started process. */
  async start(id: string, execId: string): Promise<TaskProcess> {
    const sandbox = this.requireSandbox(id);
    if (execId) {
      await sandbox.startExec(id, execId);
    } else {
      const hooks = this.container(id).params.hooks;
      // poststart: after the start, before Start answers and before the init's exit is watched.
      await sandbox.startContainer(id, hooks && (() => hooks.started(this.hypervisorPid())));
    }
    return this.process(id, execId);
  }

  exec(params: ExecParams): TaskProcess {
    validateId('exec', params.execId);
    return this.requireSandbox(params.containerId).addExec(params.containerId, params.execId, { stdin: params.stdin, stdout: params.stdout, stderr: params.stderr }, params.terminal, params.processJson);
  }

  /** Returns the exit when the signal ended a process that never started. */
  async kill(id: string, execId: string, signal: number, all: boolean): Promise<ExitInfo | undefined> {
    const proc = this.process(id, execId);
    // A Kill racing a Start acts on what the Start made: the process runs (signal it) or never will.
    // Looped: a Start that arrived while this Kill yielded must be waited for too, or the
    // Kill would mark exited a process that is being launched (and then runs unseen).
    do await proc.startSettled();
    while (proc.isStarting);
    // Checked before the agent is needed: after the VM was stopped (kill grace, VM
    // lost) every process is stopped, and containerd must hear NotFound, not Unavailable.
    if (proc.status === 'stopped') {
      if (all) return undefined; // killing what is already gone is fine (runc's shim agrees)
      throw new NotFoundError(`${proc.name}: process already finished`);
    }
    if (proc.status === 'created') {
      // Never started: nothing runs in the guest; it simply ends with the signal's
      // status, as runc's shim ends a created task. Marked before anything is awaited,
      // so a Start arriving meanwhile is refused rather than run behind our back.
      const exit = proc.markExited(128 + signal);
      // The agent is told so that it drops what it prepared; a guest that cannot be
      // told (it lost the container, or answers "not running") must not make the task
      // unkillable and so undeletable.
      // Not awaited: the exit is the host's to publish now, not after a slow or frozen guest answers.
      if (!execId) {
        void Promise.resolve()
          .then(() => this.sandbox!.requireAgent().signalProcess(id, '', signal, all))
          .catch((err) => this.logger.warn({ container: id, err: (err as Error).message }, 'guest refused the signal for a never-started container; ending it on the host'));
      }
      return exit;
    }
    if (signal === SIGKILL && !execId) return this.killInit(id, proc, all);
    // A paused container's processes only see the signal once thawed; SIGKILL works regardless.
    await this.sandbox!.requireAgent().signalProcess(id, execId, signal, all);
    return undefined;
  }

  /**
   * SIGKILL of a container's init must work whatever the guest does: if its exit has not
   * arrived within the grace period (the guest hangs, its agent died, QEMU is stopped),
   * the VM is stopped and every process of the pod ends with 137, as Kata does when the
   * agent is gone. The signal itself is bounded by the same grace.
   */
  private async killInit(id: string, proc: TaskProcess, all: boolean): Promise<undefined> {
    const sandbox = this.sandbox!;
    const graceMs = this.loaded?.config.runtime.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
    const deadline = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), graceMs).unref());
    const sent = sandbox.requireAgent().signalProcess(id, '', SIGKILL, all);
    const outcome = await Promise.race([sent.then(() => 'sent' as const), deadline]).catch((err: unknown) => err);
    // The guest's NotFound (it had already exited) arrives as its status code, not our class.
    if (outcome !== 'sent' && outcome !== 'late' && grpcCodeOf(outcome) === GrpcCode.NOT_FOUND) throw outcome;
    if (outcome !== 'sent') this.logger.warn({ container: id, err: outcome === 'late' ? 'no answer' : (outcome as Error).message }, 'the guest did not take the SIGKILL; waiting for the exit until the grace period ends');
    void Promise.race([proc.wait().then(() => 'exited' as const), deadline]).then((how) => {
      if (how === 'late') void sandbox.killVm(`SIGKILL of container ${id}: no exit within ${graceMs} ms`);
    });
    return undefined;
  }

  async pause(id: string): Promise<void> {
    const container = this.container(id);
    if (container.status !== 'running') throw new FailedPreconditionError(`container ${id} is ${container.status}; only a running container can be paused`);
    await this.sandbox!.requireAgent().pauseContainer(id);
    container.paused = true;
  }

  async resume(id: string): Promise<void> {
    const container = this.container(id);
    if (container.status !== 'paused') throw new FailedPreconditionError(`container ${id} is ${container.status}; only a paused container can be resumed`);
    await this.sandbox!.requireAgent().resumeContainer(id);
    container.paused = false;
  }

  async update(id: string, resourcesJson: Buffer): Promise<void> {
    const container = this.container(id);
    if (container.status !== 'running' && container.status !== 'paused') throw new FailedPreconditionError(`container ${id} is ${container.status}; cannot update its resources`);
    await this.sandbox!.updateContainer(id, resourcesJson);
  }

  async stats(id: string): Promise<{ type_url: string; value: Buffer }> {
    const container = this.container(id);
    if (container.status === 'created' || container.status === 'stopped') throw new FailedPreconditionError(`container ${id} is ${container.status}; it has no live metrics`);
    return this.sandbox!.requireAgent().statsContainer(id);
  }

  async resizeTerminal(id: string, execId: string, columns: number, rows: number): Promise<void> {
    const proc = this.process(id, execId);
    if (!proc.terminal) throw new FailedPreconditionError(`${proc.name} has no terminal to resize`);
    if (proc.status !== 'running') return; // containerd may resize before start or after exit
    await this.sandbox!.requireAgent().ttyWinResize(id, execId, columns, rows);
  }

  async closeStdin(id: string, execId: string): Promise<void> {
    await this.process(id, execId).closeStdin();
  }

  async pids(id: string): Promise<number[]> {
    const container = this.container(id);
    if (container.status === 'created' || container.status === 'stopped') return [];
    return this.sandbox!.requireAgent().listProcesses(id);
  }

  /** Deletes the container (execId '') or one of its execs; returns the process. */
  async delete(id: string, execId: string): Promise<TaskProcess> {
    const sandbox = this.requireSandbox(id);
    // A process still launching counts as created; deleting it now would let it run on unseen.
    const proc = this.process(id, execId);
    do await proc.startSettled();
    while (proc.isStarting);
    if (execId) return sandbox.deleteExec(id, execId);
    const container = await sandbox.deleteContainer(id);
    await container.params.hooks?.deleted(this.hypervisorPid()); // poststop: once deleted, before Delete answers
    return container.init;
  }

  get neverUsed(): boolean {
    return !this.createSeen;
  }

  get isEmpty(): boolean {
    return !this.sandbox || this.sandbox.containerCount === 0;
  }

  hypervisorPid(): number {
    return this.sandbox?.hypervisorPid() ?? 0;
  }

  /**
   * Stops the VM, also one still booting: containerd follows a Create it gave up on
   * (ctr interrupted, a deadline) with Shutdown while our start may still be running,
   * and that VM must not outlive the daemon.
   */
  async destroy(): Promise<void> {
    this.tornDown = true;
    // One teardown, awaited by every caller: a second Shutdown, or SIGTERM during one,
    // must not see "done" (and let the daemon exit) while the first is still unmounting.
    this.destroying ??= (async () => {
      const sandbox = this.sandbox ?? (await this.starting?.catch(() => undefined));
      this.sandbox = undefined;
      this.starting = undefined;
      await sandbox?.destroy();
    })();
    return this.destroying;
  }

  private requireSandbox(id: string): Sandbox {
    this.container(id);
    return this.sandbox!;
  }

  /** The first container (for a CRI pod: the pause container) decides the configuration, as in Kata. */
  private configFor(hints: ConfigHints, sandboxId: string): LoadedConfig {
    if (!this.loaded) {
      this.loaded = this.deps.resolveConfig(hints);
      this.logger.info({ sandbox: sandboxId, via: this.loaded.via, files: this.loaded.files }, 'configuration loaded');
      const ignored = this.loaded.ignoredKeys ?? [];
      if (ignored.length > 0) this.logger.warn({ sandbox: sandboxId, ignoredKeys: ignored.map((k) => `${k.key} (${k.file}): ${k.reason}`) }, `${ignored.length} configuration keys accepted with a warning (ignored, or enabling what an administrator should know)`);
    }
    return this.loaded;
  }

  /** Lets `delete` find the same configuration after a crash (it gets no runtime options). */
  private record(bundle: string, loaded: LoadedConfig): void {
    try {
      recordConfigSource(bundle, loaded);
    } catch (err) {
      this.logger.warn({ bundle, err: (err as Error).message }, 'cannot note the configuration in the bundle; a delete after a crash will search for it again');
    }
  }

  /** The first container (for a CRI pod: the pause container) decides hostname and network. */
  private async sandboxFor(sandboxId: string, hostname: string, netnsPath: string | undefined, cgroupsPath: string | undefined, config: RuntimeConfig): Promise<Sandbox> {
    if (this.sandbox) {
      if (this.sandbox.id !== sandboxId) throw new FailedPreconditionError(`this shim serves sandbox ${this.sandbox.id}, not ${sandboxId}`);
      return this.sandbox;
    }
    if (!this.starting) {
      const logger = this.logger.child({ sandbox: sandboxId });
      this.starting = Sandbox.start({
        id: sandboxId,
        namespace: this.deps.namespace,
        hostname,
        netnsPath,
        cgroupsPath,
        config,
        hypervisor: this.deps.newHypervisor(config, logger),
        warm: this.deps.takeWarmVm?.(),
        templates: config.factory.enableTemplate ? new VmTemplates(config.factory.templatePath, () => this.deps.newHypervisor(config, logger.child({ vm: 'template or clone' })), config.agent, logger) : undefined,
        events: { onProcessExit: (c, p, exit) => this.events.onExit(c, p, exit), onOom: (id) => this.events.onOom(id) },
        logger,
      });
      this.starting.then(
        (sandbox) => (this.sandbox = sandbox),
        () => {
          // A later Create starts over, reading the (perhaps corrected) configuration again.
          this.starting = undefined;
          this.loaded = undefined;
        },
      );
    }
    return this.starting;
  }
}
