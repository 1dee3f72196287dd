// The pod's VM and the containers in it. One Sandbox per shim daemon: the first
// container's Create boots the VM; later containers of the pod join it.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { guestRootfs, HypervisorConfig, RuntimeConfig } from '../config/runtime-config';
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, KataError, NotFoundError, NotImplementedError, UnavailableError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { AgentChannel, GUEST_KERNEL_PARAMS, Hypervisor, VmConfig, VmNetwork } from '../hypervisors/hypervisor';
import { AgentClient, GuestDetails, GuestMetricsReport, TtrpcAgentClient } from './agent-client';
import { Container, ContainerParams } from './container';
import { StdioPaths } from './process-io';
import { ExitInfo, LOST_EXIT_STATUS, TaskProcess } from './task-process';
import { canonical, mountAll, MountSpec, mountsBelow, removeUnlessMounted, unmount } from './rootfs';
import { bindIntoShare, containerShareDir, setUpShare, ShareLayout, shareLayout } from './shared-fs';
import { ensureDirChain, removeDirIfEmpty } from './safe-paths';
import { validateId } from './identifiers';
import { writeProcessRecord } from '../lib/recorded-process';
import { guestSpec, OciSpec } from './spec';
import { PodNetwork } from './network';
import { mountShares, planVolumes } from './volumes';
import { ContainerDevices } from './devices';
import { HostKsm, memoryMergeFor } from './ksm';
import { agentHas, NETWORK_CALLS_IN_ORDER } from '../lib/agent-features';
import { GUEST_SHARED_DIR, SHARED_FS_TAG } from '../lib/guest-paths';
import { containerResources, hostSize, LinuxResources, vmSizing, VmSizing } from './resources';
import { cgroupRelativePath, HostCgroups, SandboxCgroup } from './host-cgroup';
import { VmSizer } from './vm-sizer';
import { DEBUG_CONSOLE_PORT_NAME } from '../lib/debug-console';
import { countingResize, installedSandboxObserver, ObservedSandbox, SandboxObserver } from './sandbox-observer';
import { Clone, discardClone, VmTemplates } from './vm-templates';
import type { WarmVm } from './warm-vm';

export { SHARED_FS_TAG };
/** The record of the daemon that owns a sandbox's state directory (pid + start time). */
export const SANDBOX_OWNER_FILE = 'owner';
/** The sandbox cgroup's record (host-cgroup.ts CgroupRecord), for `delete` after a crash. */
export const CGROUP_RECORD_FILE = 'cgroup.json';
const AGENT_PORT_NAME = 'agent.channel.0';
import { AGENT_VSOCK_PORT } from '../lib/vsock-ports';
export { AGENT_VSOCK_PORT };

/** sun_path is 108 bytes, NUL included. */
const UNIX_SOCKET_PATH_MAX = 107;
/** The longest socket name a driver puts in the work dir: 'firecracker-api.sock'. */
const LONGEST_SOCKET_NAME = 20;
/** Where work dirs whose readable path would be too long for a socket go, by hash. */
const HASHED_WORK_DIRS = '.hashed';

/** Whether every socket a driver puts in `workDir` has a path short enough for sun_path. */
export function fitsUnixSocketPaths(workDir: string): boolean {
  return Buffer.byteLength(workDir) + 1 + LONGEST_SOCKET_NAME <= UNIX_SOCKET_PATH_MAX;
}

/** The host end of the agent channel kind the driver takes, inside the sandbox's work dir. */
export function agentChannelFor(kind: AgentChannel['kind'], workDir: string): AgentChannel {
  switch (kind) {
    case 'virtio-serial':
      return { kind, socketPath: path.join(workDir, 'agent.sock'), portName: AGENT_PORT_NAME };
    case 'hybrid-vsock':
      // In a directory of its own: QEMU's vsock backend runs as nobody and creates it there.
      return { kind, socketPath: path.join(workDir, 'vsock', 'vsock.sock'), port: AGENT_VSOCK_PORT };
    case 'vsock':
      throw new NotImplementedError('a driver that offers the agent only AF_VSOCK cannot be used: Node has no AF_VSOCK sockets to dial it');
  }
}

/**
 * The VM a pod gets from the configuration, without its network (the sandbox attaches
 * that). Also what `kata-ts-runtime factory init` makes a template of.
 */
export function podVmConfig(config: RuntimeConfig, hypervisor: Pick<Hypervisor, 'agentChannelKind'>, pod: { id: string; workDir: string; sharedDir: string; sizing: VmSizing }): VmConfig {
  const h = config.hypervisor;
  return {
    id: pod.id,
    workDir: pod.workDir,
    binaryPath: h.path,
    accelerator: h.accelerator,
    kernelPath: h.kernel,
    rootfs: guestRootfs(config),
    kernelParams: [...GUEST_KERNEL_PARAMS, 'quiet', ...h.kernelParams],
    memoryMiB: pod.sizing.boot.memoryMiB,
    vcpus: pod.sizing.boot.vcpus,
    maxMemoryMiB: pod.sizing.room.memoryMiB,
    maxVcpus: pod.sizing.room.vcpus,
    memoryMerge: memoryMergeFor(config.runtime.ksm),
    seccompSandbox: h.seccompSandbox,
    agentChannel: agentChannelFor(hypervisor.agentChannelKind, pod.workDir),
    debugConsole: config.agent.debugConsole ? { socketPath: Sandbox.debugConsoleSocket(pod.workDir), portName: DEBUG_CONSOLE_PORT_NAME } : undefined,
    sharedDirectories: [{ tag: SHARED_FS_TAG, hostPath: pod.sharedDir }],
  };
}

export interface SandboxEvents {
  /** A process ended (reported by the agent, or because the VM died). */
  onProcessExit(container: Container, process: TaskProcess, exit: ExitInfo): void;
  /** The guest OOM-killed something in the container. */
  onOom(containerId: string): void;
}

/** How a process ends when the shim had to stop the VM under it (128 + SIGKILL). */
const KILLED_STATUS = 137;

/** At most this many OOM events per container in OOM_WINDOW_MS reach containerd. */
const OOM_EVENTS_PER_WINDOW = 10;
const OOM_WINDOW_MS = 60_000;
/** How long the OOM loop rests before asking again once reports exceed the budget. */
const OOM_FLOOD_PAUSE_MS = 1000;

/** How long an init's exit event waits for its execs' exits to go out first. */
const EXEC_EXITS_FIRST_MS = 2000;

/** The guest's side of a sandbox made (the agent's CreateSandbox), by whichever VM it is. */
type GuestSandboxSetUp = (agent: AgentClient) => Promise<void>;

/** A running VM whose agent answered; a clone's guest sandbox and pod network are set up by then (guestReady). */
interface StartedVm {
  agent: AgentClient;
  details: GuestDetails;
  guestReady: boolean;
}

/** Waits for every call; fails with the first failure (none is left to fail unheard). */
async function allSettledOrFirstError(calls: Array<Promise<unknown>>): Promise<void> {
  const failed = (await Promise.allSettled(calls)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** Kata's agent URL forms: the host end of the channel the agent listens on. */
function agentUrlOf(channel: AgentChannel): string {
  switch (channel.kind) {
    case 'virtio-serial':
      return `unix://${channel.socketPath}`;
    case 'hybrid-vsock':
      return `hvsock://${channel.socketPath}:${channel.port}`;
    case 'vsock':
      return `vsock://${channel.guestCid}:${channel.port}`;
  }
}

export class Sandbox implements ObservedSandbox {
  private readonly containers = new Map<string, Container>();
  /** Process specs of execs that were added but may not have started yet. */
  private readonly execSpecs = new WeakMap<TaskProcess, Buffer>();
  private agent: AgentClient | undefined;
  private network: PodNetwork | undefined;
  /** Block devices hot-plugged per container; the VM's end releases any left. Replaced with the driver when the VM is a clone. */
  private devices: ContainerDevices;
  /** Settles once the pod network's host side is wired (or failed to be): a clone's is wired while its agent sets the sandbox up. */
  private networkWired: Promise<void> = Promise.resolve();
  /** Grows the VM for its containers' resources; set once the agent answers. */
  private sizer: VmSizer | undefined;
  private destroyed = false;
  /** Set by killVm: the VM was stopped under the pod; no agent call is made any more. */
  private vmKilled = false;
  details: GuestDetails | undefined;
  /** Seconds from the VMM's launch to the agent's first answer (the metrics' boot duration). */
  bootSeconds: number | undefined;
  /** Host-private mount directory and the read-only view of it the guest gets. */
  readonly share: ShareLayout;
  /** The pod's cgroup on the host, when the spec names one; and where the shim was before it joined. */
  private cgroup: { sandbox: SandboxCgroup; host: HostCgroups; shimBefore: Map<string, string> } | undefined;
  /** The spare shim's VM this sandbox took (its work dir moved here), if it did. */
  private warm: WarmVm | undefined;
  /** The taken spare VM's clock being set (from the take on, beside the move and the cgroup's set-up). */
  private warmClock: Promise<void> | undefined;
  /** The taken spare VM's guest sandbox being made (asked for at the take too: it needs nothing of what follows). */
  private warmCreating: Promise<void> | undefined;

  private constructor(
    readonly id: string,
    readonly workDir: string,
    /** The driver passed in, or the clone's own when the VM starts from a template. */
    private hypervisor: Hypervisor,
    private readonly config: RuntimeConfig,
    private readonly events: SandboxEvents,
    private readonly logger: Logger,
    private readonly hostKsm: HostKsm,
    private readonly observer: SandboxObserver,
    private readonly templates: VmTemplates | undefined,
  ) {
    this.devices = new ContainerDevices(hypervisor, logger, undefined, observer);
    this.share = shareLayout(workDir);
  }

  /**
   * `<state_dir>/<namespace>/<sandbox>`, with state_dir canonicalised: two namespaces
   * may use the same sandbox id at once, and mount points are only recognised under
   * their canonical path.
   */
  static workDirFor(config: RuntimeConfig, namespace: string, sandboxId: string): string {
    const stateDir = canonical(config.runtime.stateDir);
    const readable = path.join(stateDir, validateId('namespace', namespace), validateId('sandbox', sandboxId));
    if (fitsUnixSocketPaths(readable)) return readable;
    // QEMU's sockets live here, and a Unix socket path has 107 bytes: a long
    // namespace plus a 64-character pod id would not fit. '.hashed' can be no
    // namespace (ids start with a letter or digit), so the two forms never collide.
    const hashed = path.join(stateDir, HASHED_WORK_DIRS, createHash('sha256').update(`${namespace}/${sandboxId}`).digest('hex').slice(0, 32));
    if (!fitsUnixSocketPaths(hashed)) {
      throw new InvalidArgumentError(`runtime state_dir ${stateDir} is too long: the VM's Unix sockets under it would exceed ${UNIX_SOCKET_PATH_MAX} bytes; choose a shorter state_dir`);
    }
    return hashed;
  }

  /** Creates the sandbox's work dir (workDirFor); fails if it exists: a previous shim did not clean up. */
  private static makeWorkDir(config: RuntimeConfig, namespace: string, sandboxId: string): string {
    const workDir = Sandbox.workDirFor(config, namespace, sandboxId);
    try {
      // mkdir -p in one go: another sandbox of the namespace may remove the parent between two calls.
      // (It answers the first directory it made: none means workDir was there already.)
      if (fs.mkdirSync(workDir, { recursive: true, mode: 0o700 }) === undefined) throw Object.assign(new Error('exists'), { code: 'EEXIST' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      throw new AlreadyExistsError(`sandbox ${sandboxId} in namespace ${namespace}: state directory ${workDir} already exists (a previous shim did not clean up; run 'containerd-shim-kata-v2 delete' or remove it)`);
    }
    return workDir;
  }

  /** The host side of the debug console (`kata-ts-runtime exec`), present while the VM runs if it has one. */
  static debugConsoleSocket(workDir: string): string {
    return path.join(workDir, 'debug-console.sock');
  }

  /**
   * Boots the VM and waits for its agent. On failure nothing is left behind.
   * `netnsPath`: the pod's network namespace (CRI made it and ran CNI in it), if any.
   * `hostKsm`: the host's KSM switch (tests pass one in a temporary directory).
   */
  static async start(params: {
    id: string;
    namespace: string;
    hostname: string;
    netnsPath?: string;
    /** The pod's first container's linux.cgroupsPath: the VMM (and the shim, with sandbox_cgroup_only) is accounted there. */
    cgroupsPath?: string;
    config: RuntimeConfig;
    hypervisor: Hypervisor;
    events: SandboxEvents;
    logger: Logger;
    hostKsm?: HostKsm;
    hostCgroups?: HostCgroups;
    /** Told when the work dir exists and goes, and of agent calls and hot-plugs (default: the daemon's, see sandbox-observer.ts). */
    observer?: SandboxObserver;
    /** Set when VM templates are on: the VM starts as a clone where it can, else cold. */
    templates?: VmTemplates;
    /** The VM a spare shim restored ahead ([factory] spare_vms): taken if it is the VM this pod gets, else ended. */
    warm?: WarmVm;
  }): Promise<Sandbox> {
    const { id, config } = params;
    let workDir: string;
    try {
      workDir = Sandbox.makeWorkDir(config, params.namespace, id);
    } catch (err) {
      // The spare's VM is this call's to take or end: nobody else holds it any more.
      await params.warm?.discard();
      throw err;
    }
    const sandbox = new Sandbox(id, workDir, params.hypervisor, config, params.events, params.logger, params.hostKsm ?? new HostKsm(), params.observer ?? installedSandboxObserver(), params.templates);
    try {
      // A late `delete` (of an earlier run of this id, or of another container of the pod) leaves alone what a live owner has.
      writeProcessRecord(path.join(workDir, SANDBOX_OWNER_FILE), process.pid);
      if (!(params.warm && (await sandbox.takeWarm(params.warm, params.hostname)))) await setUpShare(sandbox.share);
      await sandbox.observer.sandboxStarted(sandbox);
      // Before a template is made for it: a pod whose network is gone fails as it would have.
      if (params.netnsPath) PodNetwork.requireNetns(params.netnsPath);
      // Before the pod's cgroup: a template is every pod's, not this tenant's to pay for.
      const cloneable = sandbox.warm ? { clone: true, make: false } : await sandbox.prepareTemplate();
      if (params.cgroupsPath) sandbox.enterCgroup(params.hostCgroups ?? new HostCgroups(), params.cgroupsPath);
      await sandbox.boot(params.hostname, params.netnsPath, cloneable);
    } catch (err) {
      const console = params.hypervisor.consoleTail(2048).trim();
      await sandbox.destroy().catch((cleanupErr) => params.logger.error({ err: cleanupErr }, 'cleanup after failed start'));
      // Not taken before the failure: ended here (a taken one, the sandbox ended above).
      await params.warm?.discard().catch((cleanupErr) => params.logger.error({ err: cleanupErr }, "ending the spare shim's VM after the failed start"));
      if (console) params.logger.error({ console }, 'guest console before the failure');
      if (err instanceof KataError) throw err;
      throw new UnavailableError(`sandbox ${id}: VM start failed: ${(err as Error).message}`, { cause: err });
    }
    return sandbox;
  }

  hypervisorPid(): number {
    return this.hypervisor.pid() ?? 0;
  }

  agentUrl(): string {
    return agentUrlOf(agentChannelFor(this.hypervisor.agentChannelKind, this.workDir));
  }

  guestMetrics(timeoutMs: number): Promise<GuestMetricsReport> {
    return this.requireAgent().guestMetrics(timeoutMs);
  }

  container(id: string): Container {
    const container = this.containers.get(id);
    if (!container) throw new NotFoundError(`container ${id} not found in sandbox ${this.id}`);
    return container;
  }

  get containerCount(): number {
    return this.containers.size;
  }

  /**
   * Mounts containerd's rootfs at `hostRootfs` (a directory inside the bundle, checked
   * by the caller), shares it with the guest and creates the container there.
   */
  async createContainer(params: Omit<ContainerParams, 'mounts'>, spec: OciSpec, rootfs: MountSpec[], hostRootfs: string): Promise<Container> {
    const agent = this.requireAgent();
    if (this.containers.has(params.id)) throw new AlreadyExistsError(`container ${params.id} already exists in sandbox ${this.id}`);
    const logger = this.logger.child({ container: params.id });
    const privateDir = this.share.privateDir;
    // Checked before anything is mounted: a source that cannot be shared fails the Create.
    const volumes = await planVolumes(params.id, spec.mounts ?? [], privateDir);
    const devices = this.devices.plan(params.id, spec);
    const mounts: string[] = [];
    try {
      // The VM grows before the container exists, so its limits never exceed the guest.
      await this.requireSizer().fit(params.id, containerResources((spec.linux as { resources?: LinuxResources } | undefined)?.resources));
      if (rootfs.length > 0) {
        await mountAll(rootfs, hostRootfs);
        mounts.push(hostRootfs);
      }
      const sharedRootfs = ensureDirChain(privateDir, [params.id, 'rootfs']);
      await bindIntoShare(this.share, hostRootfs, sharedRootfs);
      mounts.push(sharedRootfs);
      mounts.push(...(await mountShares(volumes.shares, this.share)));
      await this.devices.plug(params.id, devices);
      const forGuest = guestSpec(spec, { containerId: params.id, rootfs: path.posix.join(GUEST_SHARED_DIR, params.id, 'rootfs'), mounts: volumes.mounts }, logger);
      await agent.createContainer({
        container_id: params.id,
        oci_spec_json: Buffer.from(JSON.stringify(forGuest)),
        stdin: Boolean(params.stdio.stdin),
        terminal: params.terminal,
        devices: devices.map((d) => d.guest),
      });
    } catch (err) {
      this.sizer?.forget(params.id);
      await this.devices.unplug(params.id);
      await unmountAll(mounts.reverse(), logger);
      this.removeDir(containerShareDir(this.share, params.id));
      if (this.destroyed) throw new UnavailableError(`container ${params.id}: sandbox ${this.id} was torn down while the container was being created`, { cause: err });
      throw err;
    }
    const container = new Container({ ...params, mounts: mounts.reverse() }, agent, logger);
    this.containers.set(params.id, container);
    return container;
  }

  /** Task Update: grows the VM for the new resources first, then the guest applies them (crun update). */
  async updateContainer(id: string, resourcesJson: Buffer): Promise<void> {
    this.container(id);
    const agent = this.requireAgent();
    const sizer = this.requireSizer();
    await sizer.fit(id, containerResources(JSON.parse(resourcesJson.toString('utf8')) as LinuxResources, sizer.resourcesOf(id)));
    await agent.updateContainer(id, resourcesJson);
  }

  /**
   * `afterLaunch` (poststart hooks) runs once the guest started the init and before the
   * process counts as running: a Kill or Delete waits for it, and the init's exit is
   * not watched (so not published) before it is done.
   */
  async startContainer(id: string, afterLaunch?: () => Promise<void>): Promise<number> {
    const container = this.container(id);
    const agent = this.requireAgent();
    return container.init.start(
      async () => {
        const pid = await agent.startContainer(id);
        await afterLaunch?.();
        return pid;
      },
      (exit) => void this.reportInitExit(container, exit),
    );
  }

  /** Registers an exec; it runs when started. */
  addExec(containerId: string, execId: string, stdio: StdioPaths, terminal: boolean, processJson: Buffer): TaskProcess {
    const proc = this.container(containerId).addExec(execId, stdio, terminal);
    this.execSpecs.set(proc, processJson);
    return proc;
  }

  async startExec(containerId: string, execId: string): Promise<number> {
    const container = this.container(containerId);
    const proc = container.process(execId);
    const agent = this.requireAgent();
    const processJson = this.execSpecs.get(proc) ?? Buffer.from('{}');
    return proc.start(
      () => agent.execProcess({ container_id: containerId, exec_id: execId, process_json: processJson, stdin: Boolean(proc.stdio.stdin), terminal: proc.terminal }),
      (exit) => this.events.onProcessExit(container, proc, exit),
    );
  }

  async deleteExec(containerId: string, execId: string): Promise<TaskProcess> {
    const proc = this.container(containerId).removeExec(execId);
    this.execSpecs.delete(proc);
    if (proc.guestPid && this.agent && !this.destroyed && !this.vmKilled) await this.agent.deleteProcess(containerId, execId).catch((err) => this.logger.warn({ err: (err as Error).message }, 'guest exec delete failed'));
    return proc;
  }

  /** Removes a stopped or never-started container from the guest and the host. */
  async deleteContainer(id: string): Promise<Container> {
    const container = this.container(id);
    if (container.status === 'running' || container.status === 'paused') throw new FailedPreconditionError(`container ${id} is ${container.status}; kill it before deleting`);
    if (this.agent && !this.destroyed && !this.vmKilled) {
      await this.agent.removeContainer(id).catch((err) => this.logger.warn({ container: id, err: (err as Error).message }, 'guest remove failed'));
      await this.devices.unplug(id);
    }
    await unmountAll(container.params.mounts, this.logger);
    this.removeDir(containerShareDir(this.share, id));
    this.containers.delete(id);
    this.sizer?.forget(id);
    return container;
  }

  private requireSizer(): VmSizer {
    this.requireAgent();
    return this.sizer!;
  }

  requireAgent(): AgentClient {
    if (!this.agent || this.destroyed || this.vmKilled) throw new UnavailableError(`sandbox ${this.id} has no running VM`);
    return this.agent;
  }

  /**
   * The last resort when the guest no longer does what it is told (a SIGKILL whose
   * exit never came): every process of the pod ends with 137 and its exit event, then
   * the VM is stopped. Delete and Shutdown work normally afterwards.
   */
  async killVm(reason: string): Promise<void> {
    if (this.destroyed || this.vmKilled) return;
    this.vmKilled = true;
    this.logger.error({ reason }, 'stopping the VM and ending every process of the pod');
    for (const container of this.containers.values()) {
      for (const proc of container.markAllExited(KILLED_STATUS)) this.events.onProcessExit(container, proc, proc.exit!);
    }
    this.agent?.close();
    await this.hypervisor.stop(0);
  }

  /** Stops the VM and removes everything the sandbox made. Safe to call twice. */
  async destroy(): Promise<void> {
    const wasDestroyed = this.destroyed;
    this.destroyed = true;
    if (this.agent && !wasDestroyed && !this.vmKilled) {
      await this.agent.destroySandbox().catch((err) => this.logger.warn({ err: (err as Error).message }, 'agent DestroySandbox failed'));
      this.agent.close();
    }
    await this.hypervisor.stop(5000);
    // Not adopted (the start failed before), or discarded: ending it twice is harmless.
    if (this.warm) await discardClone(this.warm.clone);
    this.leaveCgroup();
    // Not while a clone's taps are being wired: what wire() added after detach() looked would stay.
    await this.networkWired.catch(() => undefined);
    await this.network?.detach().catch((err) => this.logger.error({ err: (err as Error).message }, 'pod network detach failed'));
    for (const container of this.containers.values()) {
      container.markAllExited(137);
      await unmountAll(container.params.mounts, this.logger);
    }
    this.containers.clear();
    // Its socket lives in the work dir: closed before the dir goes.
    await this.observer.sandboxStopping(this).catch((err) => this.logger.warn({ err: (err as Error).message }, 'sandbox observer failed at teardown'));
    await unmountAll(mountsBelow(this.workDir), this.logger);
    this.removeDir(this.workDir);
    // The work dir was a bind of the spare's directory: its files lived there.
    await this.warm?.removeOrigin();
    // The namespace's directory goes with its last sandbox.
    removeDirIfEmpty(path.dirname(this.workDir));
  }

  /**
   * Takes the spare shim's VM as this sandbox's if it is the VM the pod gets (templates
   * on, restored from the template this pod's VM would be), moving its work dir here;
   * else ends it. True if taken.
   */
  private async takeWarm(warm: WarmVm, hostname: string): Promise<boolean> {
    const vm = this.templates && this.templateVmFor(this.config.hypervisor);
    // By key as the files are now: a spare restored before the guest was upgraded in place runs the old one.
    const refusal = !this.templates || !vm ? 'VM templates are off for this pod' : this.templates.keyFor(vm) !== warm.clone.templateKey ? "the pod's VM is another than the spare's (its configuration, its annotations or the guest's files differ)" : undefined;
    if (!refusal) {
      // The guest's clock needs nothing of what follows: it is set meanwhile (wakeWarm waits for it).
      const clock = warm.clone.agent.setGuestDateTime(Date.now());
      clock.catch(() => undefined); // wakeWarm's to report; moot if the VM is ended below
      // Nor does the guest's sandbox (its share is the spare's, which its warm-up mounted
      // ahead; a guest without WarmUp mounts it now, through the fsdev QEMU holds open):
      // made while the host moves the work dir and sets up the cgroup, when the guest is idle.
      const creating = this.guestSandboxSetUp(hostname)(warm.clone.agent);
      creating.catch(() => undefined); // startVm's to await; moot if the VM is ended
      try {
        // The moved work dir covers the record written into the sandbox's: one goes with it, so no instant shows none to a late `delete`.
        writeProcessRecord(path.join(warm.vm.workDir, SANDBOX_OWNER_FILE), process.pid);
        await warm.moveTo(this.workDir);
        this.warm = warm;
        this.warmClock = clock;
        this.warmCreating = creating;
        return true;
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "the spare shim's VM cannot be moved to the sandbox; ending it");
      }
    } else {
      this.logger.info({ reason: refusal }, "not taking the spare shim's VM; ending it");
    }
    await warm.discard().catch((err) => this.logger.warn({ err: (err as Error).message }, "ending the spare shim's VM failed"));
    return false;
  }

  /**
   * Creates the sandbox's cgroup and moves this daemon into it, so the VMM is born
   * there: every QEMU thread is charged to the pod from its first allocation. The
   * record lets `delete` remove the cgroup after a crash.
   */
  private enterCgroup(host: HostCgroups, cgroupsPath: string): void {
    const sandbox = SandboxCgroup.create(host, cgroupRelativePath(cgroupsPath));
    this.cgroup = { sandbox, host, shimBefore: host.cgroupsOf('self') };
    fs.writeFileSync(path.join(this.workDir, CGROUP_RECORD_FILE), JSON.stringify(sandbox.record), { mode: 0o600 });
    sandbox.join(process.pid);
    this.logger.info({ cgroup: sandbox.relPath, limits: sandbox.limits(), shimToo: this.config.runtime.sandboxCgroupOnly }, 'sandbox cgroup');
  }

  /** With sandbox_cgroup_only = false, the shim leaves the pod's cgroup once the VMM was born in it. */
  private moveShimToOverhead(): void {
    if (!this.cgroup || this.config.runtime.sandboxCgroupOnly) return;
    const overhead = this.config.runtime.overheadCgroup;
    const target = overhead ? new Map(this.cgroup.host.hierarchies().map((h) => [h, overhead])) : this.cgroup.shimBefore;
    if (overhead) for (const h of target.keys()) fs.mkdirSync(path.join(h, overhead), { recursive: true });
    SandboxCgroup.moveTo(process.pid, target);
  }

  /** Moves the shim out (the VMM is gone) and removes the cgroup's own directory. */
  private leaveCgroup(): void {
    if (!this.cgroup) return;
    const { sandbox, shimBefore } = this.cgroup;
    this.cgroup = undefined;
    try {
      SandboxCgroup.moveTo(process.pid, shimBefore);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "cannot move the shim back to its own cgroup; moving it to the root's");
      SandboxCgroup.moveTo(process.pid, new Map([...shimBefore.keys()].map((h) => [h, '/'])));
    }
    const failed = sandbox.remove();
    if (failed.length > 0) this.logger.error({ failed }, 'sandbox cgroup not removed');
  }

  private removeDir(dir: string): void {
    const stillMounted = removeUnlessMounted(dir);
    if (stillMounted.length > 0) this.logger.error({ dir, stillMounted }, 'not removing a directory that still has mounts below it');
  }

  /**
   * With VM templates on: whether this pod's VM is to be a clone, and whether the clone
   * may make its template (inside the pod's cgroup). The configuration's template is made
   * now, before the shim joins the pod's cgroup (VmTemplates.prepare). A template of a VM
   * the pod's own annotations made another is the pod's to pay for: made by the clone,
   * in the pod's cgroup, under its limits (a tenant choosing new values would otherwise
   * have the node boot VMs for it on no one's account). Annotations that leave the VM
   * the configuration's do not make it the pod's: a tenant must not get the shared
   * template built under its own CPU quota while every other pod waits for its lock.
   */
  private async prepareTemplate(): Promise<{ clone: boolean; make: boolean }> {
    if (!this.templates) return { clone: false, make: false };
    const vm = this.templateVmFor(this.config.hypervisor);
    const overrides = this.config.podOverrides;
    if (overrides && !this.templates.sameTemplate(vm, this.templateVmFor(overrides.asConfigured))) {
      this.logger.info({ annotations: overrides.annotations }, "the pod's annotations make its VM another than the configuration's: a template of it is made, if need be, in the pod's cgroup");
      return { clone: true, make: true };
    }
    return { clone: await this.templates.prepare(vm), make: false };
  }

  /**
   * This pod's VM as its template sees it, with `hypervisor` as its configuration. The
   * pod's cgroup limits are not known yet, and need not be: they are no part of the
   * VM's hardware (VmSizing.room).
   */
  private templateVmFor(hypervisor: HypervisorConfig): VmConfig {
    return podVmConfig({ ...this.config, hypervisor }, this.hypervisor, { id: this.id, workDir: this.workDir, sharedDir: this.share.guestDir, sizing: vmSizing(hypervisor, hostSize()) });
  }

  private async boot(hostname: string, netnsPath: string | undefined, cloneable: { clone: boolean; make: boolean }): Promise<void> {
    const h = this.config.hypervisor;
    // Hot-plug stays within the pod cgroup's limits (kubelet's, on the pod level above ours).
    const sizing = vmSizing(h, hostSize(), this.cgroup?.sandbox.limits());
    // First: a host that cannot do what the configuration asks fails before anything is set up.
    const ksm = this.config.runtime.ksm;
    this.logger.info({ ksm, host: this.hostKsm.apply(ksm) }, 'host KSM');
    const base = podVmConfig(this.config, this.hypervisor, { id: this.id, workDir: this.workDir, sharedDir: this.share.guestDir, sizing });
    const createSandbox = this.guestSandboxSetUp(hostname);
    const { agent, details, guestReady } = await this.startVm(base, netnsPath, cloneable, createSandbox);
    this.agent = agent;
    this.details = details;
    this.sizer = new VmSizer(sizing, countingResize(this.hypervisor, this.observer), agent, this.logger);
    if (!guestReady) await allSettledOrFirstError([createSandbox(agent), this.configureGuestNetwork(agent, details, [])]);
    // A clone's taps are wired on the host while the guest did the above; no container runs before.
    await this.networkWired;
    void this.forwardOomEvents(agent);
  }

  /** The guest's side of the sandbox: its hostname, and the pod's shared filesystem mounted. */
  private guestSandboxSetUp(hostname: string): GuestSandboxSetUp {
    const sharedFsKind = this.hypervisor.sharedFsKind ?? 'virtio-9p'; // the driver's kind: a clone's is the same
    return async (a: AgentClient) => a.createSandbox({ sandbox_id: this.id, hostname, shared_fs_tag: SHARED_FS_TAG, shared_dir_guest_path: GUEST_SHARED_DIR, shared_fs_type: sharedFsKind });
  }

  /**
   * The pod network in the guest: its interfaces, then its routes (a route needs its
   * interface). Sent at once, without a round trip between them, to an agent that runs
   * them in the order sent; one after another to an older one.
   * `macsPluggedAhead`: the guest MACs of the NICs a spare's VM was given before this
   * pod, which its first endpoints have (UpdateInterface plugged_hw_addr).
   */
  private async configureGuestNetwork(agent: AgentClient, details: GuestDetails, macsPluggedAhead: string[]): Promise<void> {
    if (!this.network) return;
    const calls: Array<() => Promise<unknown>> = this.network.endpoints.map(
      (e, i) => () => agent.updateInterface({ name: e.name, hw_addr: e.mac, mtu: e.mtu, addresses: e.addresses, ...(macsPluggedAhead[i] ? { plugged_hw_addr: macsPluggedAhead[i] } : {}) }),
    );
    const routes = this.network.routes;
    if (routes.length > 0) calls.push(() => agent.updateRoutes(routes));
    if (agentHas(details, NETWORK_CALLS_IN_ORDER)) return allSettledOrFirstError(calls.map((call) => call()));
    for (const call of calls) await call();
  }

  /**
   * Starts the VM with the pod network (into this.network): a clone where it can be one,
   * else a cold boot. A clone needs nothing of the pod to start (its VMM has a network
   * namespace of its own), so the pod's netns is read and its taps made while it
   * restores; its NICs are plugged and the taps wired once its agent answered. A cold
   * boot's VMM starts inside the pod's netns and needs its taps wired first.
   */
  private async startVm(base: VmConfig, netnsPath: string | undefined, cloneable: { clone: boolean; make: boolean }, createSandbox: GuestSandboxSetUp): Promise<StartedVm> {
    if (netnsPath) PodNetwork.requireNetns(netnsPath); // a pod whose network is gone fails before any VM starts
    // The taps are made (not wired: that is once they are back from a clone's VMM) while a
    // clone restores; but not those of NICs the spare's VM has already (plugged ahead,
    // their taps in its VMM's namespace), made only if that VM is not used after all.
    const pluggedAhead = this.warm?.nicMacsPluggedAhead.length ?? 0;
    const reading = netnsPath ? PodNetwork.read(netnsPath, this.logger).then(async (n) => (await n.makeTaps({ from: pluggedAhead }), n)) : Promise.resolve(undefined);
    reading.catch(() => undefined); // awaited below, once the clone is up (or not)
    let clone: Clone | undefined;
    let cloneSeconds = 0;
    try {
      const launched = performance.now();
      if (this.warm) {
        clone = await this.wakeWarm(this.warm);
        cloneSeconds = this.warm.restoreSeconds;
        // Its VM died or stopped answering: a clone restored now, as without a spare, before a cold boot.
        if (!clone) {
          clone = await this.templates?.startClone(base, this.observer.agentCall, { make: false });
          cloneSeconds = (performance.now() - launched) / 1000;
        }
      } else {
        clone = cloneable.clone ? await this.templates?.startClone(base, this.observer.agentCall, { make: cloneable.make }) : undefined;
        cloneSeconds = (performance.now() - launched) / 1000;
      }
    } catch (err) {
      this.network = await reading.catch(() => undefined); // so that destroy() removes the taps
      throw err;
    }
    const usingWarm = clone !== undefined && clone === this.warm?.clone;
    // The clone's guest makes its sandbox at once: that needs nothing of the pod's network
    // (a spare's VM was asked at the take).
    const creating = usingWarm ? this.warmCreating : clone && createSandbox(clone.agent);
    creating?.catch(() => undefined); // awaited once the clone is adopted; moot if it is discarded
    try {
      this.network = await reading;
      if (pluggedAhead > 0 && !usingWarm) await this.network?.makeTaps({ to: pluggedAhead });
    } catch (err) {
      if (clone) await discardClone(clone);
      throw err;
    }
    const network: VmNetwork | undefined = this.network && { netnsPath: this.network.netnsPath, nics: this.network.endpoints.map((e) => ({ tapName: e.tapName, mac: e.mac })) };
    let started: StartedVm | undefined = clone && (await this.adoptClone(clone, network, creating!, usingWarm ? this.warm!.nicMacsPluggedAhead : []));
    // VMM launch to the agent's first answer (sandbox-observer's boot duration), the pod network's wiring not counted.
    this.bootSeconds = cloneSeconds;
    if (!started) {
      // The clone's plug failed: a tap may have ended with its VMM's namespace.
      if (clone) await this.network?.remakeTaps();
      await this.network?.wire();
      const launched = performance.now();
      started = { ...(await this.bootCold({ ...base, network })), guestReady: false };
      this.bootSeconds = (performance.now() - launched) / 1000;
    }
    return started;
  }

  /**
   * The spare's VM, restored before this pod existed: its QEMU joins the pod's cgroup
   * (what it allocated before stays charged where the spare was: cgroup v1 moves no
   * charges on this kernel, v2 never does), and its clock is set again (asked for at the
   * take, answered by now or waited for here). Undefined (the
   * VM ended) if it no longer answers: the pod's VM then starts as without it.
   */
  private async wakeWarm(warm: WarmVm): Promise<Clone | undefined> {
    const { clone } = warm;
    try {
      const pid = clone.hypervisor.pid();
      if (pid === undefined) throw new Error('its VMM is gone');
      this.cgroup?.sandbox.join(pid);
      await this.warmClock;
      this.logger.info({ pid, restoredAheadSeconds: warm.restoreSeconds }, "VM taken from a spare shim (restored before the pod's start)");
      return clone;
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "the spare shim's VM cannot be used; the pod's VM starts as without it");
      await discardClone(clone);
      return undefined;
    }
  }

  /** Once the VMM runs (in the pod's cgroup): the shim may leave it, and the VM's end is watched. */
  private vmRunning(): void {
    this.moveShimToOverhead();
    this.hypervisor.exited.then((exit) => this.onVmExit(exit.code, exit.signal));
  }

  /**
   * The clone (its clock set) as this sandbox's VM, with the pod's NICs plugged and their
   * taps being wired (networkWired), and the guest's sandbox created (`creating`, asked
   * for already) and its pod network configured; undefined (the clone gone; startVm makes
   * the taps anew for the cold boot) if the NICs cannot be plugged. The guest does its
   * part while the host plugs the NICs: neither needs the other, and on 2 cores the two
   * overlap (QMP and QEMU's main loop against its vCPU). A NIC plugged ahead is in the
   * guest already; one plugged now is waited for by the agent (UpdateInterface).
   */
  private async adoptClone(clone: Clone, network: VmNetwork | undefined, creating: Promise<void>, macsPluggedAhead: string[]): Promise<StartedVm | undefined> {
    const configuring = this.configureGuestNetwork(clone.agent, clone.details, macsPluggedAhead);
    configuring.catch(() => undefined); // awaited once the clone is adopted; moot if it is discarded
    try {
      // Also with none: it fails if the clone died meanwhile.
      await clone.hypervisor.plugNics!(network);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "the pod's NICs cannot be plugged into the clone; booting cold");
      await discardClone(clone);
      return undefined;
    }
    // The guest does not need the host's side of its network before a container runs:
    // the taps are wired while the agent sets the sandbox up (boot() waits for it). A
    // failure fails the start, and wire() undid its part.
    const wiring = this.network?.wire();
    if (wiring) {
      wiring.catch(() => undefined);
      this.networkWired = wiring;
    }
    this.hypervisor = clone.hypervisor;
    this.devices = new ContainerDevices(clone.hypervisor, this.logger, undefined, this.observer);
    this.vmRunning();
    this.logger.info('VM started from its template');
    // A failure fails the start, with the VM the sandbox's to end (as a cold boot's
    // CreateSandbox); its agent client is not the sandbox's yet, so it is closed here.
    await allSettledOrFirstError([creating, configuring]).catch((err: unknown) => {
      clone.agent.close();
      throw err;
    });
    return { agent: clone.agent, details: clone.details, guestReady: true };
  }

  private async bootCold(vm: VmConfig): Promise<{ agent: AgentClient; details: GuestDetails }> {
    await this.hypervisor.start(vm);
    this.vmRunning();
    return TtrpcAgentClient.connect(vm.agentChannel, {
      bootTimeoutMs: this.config.agent.bootTimeoutMs,
      callTimeoutMs: this.config.agent.callTimeoutMs,
      vmExited: this.hypervisor.exited,
      logger: this.logger,
      observeCall: this.observer.agentCall,
      channelReady: this.hypervisor.agentChannelReady?.bind(this.hypervisor),
    });
  }

  /**
   * The agent reports OOM kills through a blocking call; keep one outstanding. What it
   * reports is the guest's word: only containers of this sandbox are passed on, each at
   * most OOM_EVENTS_PER_WINDOW times per OOM_WINDOW_MS, so a broken or hostile agent
   * can neither speak for other containers nor flood containerd.
   */
  private async forwardOomEvents(agent: AgentClient): Promise<void> {
    const recent = new Map<string, number[]>();
    let refused = 0;
    while (!this.destroyed) {
      try {
        const id = await agent.getOomEvent();
        const known = this.containers.has(id);
        // Unknown ids share one budget: the guest chooses them, and must not grow this map or the log.
        const key = known ? id : '';
        const now = Date.now();
        const times = (recent.get(key) ?? []).filter((t) => now - t < OOM_WINDOW_MS);
        recent.set(key, [...times, now].slice(-OOM_EVENTS_PER_WINDOW - 1));
        if (times.length >= OOM_EVENTS_PER_WINDOW) {
          if (refused++ % 1000 === 0) this.logger.warn({ container: known ? id : undefined, refused }, 'OOM reports arrive faster than containerd needs them; dropping them');
          // A guest answering at once, forever, must not spin the daemon.
          await new Promise((r) => setTimeout(r, OOM_FLOOD_PAUSE_MS));
          continue;
        }
        if (!known) {
          this.logger.warn({ reported: String(id).slice(0, 100) }, 'the guest reported an OOM for a container this sandbox does not have; ignored');
          continue;
        }
        this.events.onOom(id);
      } catch (err) {
        if (!this.destroyed) this.logger.warn({ err: (err as Error).message }, 'OOM event stream ended');
        return;
      }
    }
  }

  /** runc's shim publishes an init's exit after its execs' exits; so do we. */
  private async reportInitExit(container: Container, exit: ExitInfo): Promise<void> {
    const execs = container.runningExecs().map((p) => p.wait());
    if (execs.length > 0) await Promise.race([Promise.all(execs), new Promise((r) => setTimeout(r, EXEC_EXITS_FIRST_MS))]);
    this.events.onProcessExit(container, container.init, exit);
  }

  private onVmExit(code: number | null, signal: string | null): void {
    if (this.destroyed || this.vmKilled) return;
    this.logger.error({ code, signal, console: this.hypervisor.consoleTail(1024) }, 'the VM exited unexpectedly');
    for (const container of this.containers.values()) {
      for (const proc of container.markAllExited(LOST_EXIT_STATUS)) this.events.onProcessExit(container, proc, proc.exit!);
    }
  }
}

async function unmountAll(targets: string[], logger: Logger): Promise<void> {
  for (const target of targets) {
    await unmount(target).catch((err) => logger.error({ target, err: (err as Error).message }, 'unmount failed'));
  }
}
