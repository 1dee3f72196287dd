// The AgentService handlers: translate requests into container-manager calls.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { lookupType } from '../lib/protos';
import type { AgentHandlers, Decoded, katats } from '../lib/proto-types';
import { readCgroupMetrics } from './cgroup-stats';
import { GuestContainer, OciSpec } from './container';
import { applyDisks, findDisks } from './devices';
import { GuestProcess } from './guest-process';
import { GuestNetwork } from './network';
import { onlineCpuMem } from './online-cpu-mem';
import { setGuestDateTime } from './guest-clock';
import { readGuestMetrics } from './guest-metrics';
import { joinSandboxNamespaces } from './sandbox-namespaces';
import { applyPodNetworkSysctls, PROC_SYS_VALUE_REFUSED } from './pod-sysctls';
import { AGENT_FEATURES } from '../lib/agent-features';
import { SANDBOX_SHM_DIR, SANDBOX_SHM_SIZE } from '../lib/guest-paths';
import { readTrimmed } from '../lib/recorded-process';
import { OciRuntime } from './oci-runtime';
import { OomWatcher } from './oom-watcher';
import { sharedFsMountArgs } from './shared-fs-mount';
import { runCommand } from './guest-command';
import { warmUp, WarmUpGate } from './warm-up';

const DEFAULT_READ_LEN = 64 * 1024;
/** The guest's static busybox (guest/build.sh): the warm-up container's one file. */
const GUEST_BUSYBOX = '/usr/bin/busybox';
/** The warm-up container's cgroup: beside the pods', never one of theirs. */
const WARM_UP_CGROUP = '/katats-warm-up';

export interface AgentOptions {
  runtime: OciRuntime;
  bundlesRoot: string;
  /** WarmUp's scratch directory (removed after each). */
  warmUpDir: string;
  agentVersion: string;
  logger: Logger;
  /** Called after DestroySandbox answered: the agent exits and the guest powers off. */
  onDestroyed: () => void;
}

export class AgentService {
  private readonly containers = new Map<string, GuestContainer>();
  private sharedMount: string | undefined;
  /** What a WarmUp mounted ahead for CreateSandbox (sandboxMountsKey), until CreateSandbox came. */
  private mountedAhead: string | undefined;
  private readonly warmUpGate = new WarmUpGate();
  private readonly oomWatcher = new OomWatcher();
  private readonly network = new GuestNetwork();
  /** OOM kills not yet handed to the shim, and shims waiting for one. */
  private readonly oomQueue: string[] = [];
  private readonly oomWaiters: Array<(containerId: string) => void> = [];

  constructor(private readonly opts: AgentOptions) {
    this.oomWatcher.on('oom', (containerId: string) => {
      this.opts.logger.warn({ container: containerId }, 'container OOM-killed');
      const waiter = this.oomWaiters.shift();
      if (waiter) waiter(containerId);
      else this.oomQueue.push(containerId);
    });
  }

  handlers(): AgentHandlers {
    return {
      GetGuestDetails: (req) => this.guestDetails(req.without_boot_id),
      CreateSandbox: (req) => this.createSandbox(req),
      DestroySandbox: () => this.destroySandbox(),
      CreateContainer: async (req) => {
        const id = req.container_id;
        // Never beside a warm-up (the shim makes the sandbox first, which waits too).
        await this.warmUpGate.podArriving();
        // Hot-plugged disks may still be probing; wait before the duplicate check, so
        // no await separates that check from the insert.
        const disks = await findDisks(id, req.devices ?? []);
        if (this.containers.has(id)) throw new AlreadyExistsError(`container ${id} already exists in the guest`);
        const logger = this.opts.logger.child({ container: id });
        const sandboxPid = (sandboxId: string) => {
          const sandbox = this.containers.get(sandboxId);
          return sandbox?.status === 'running' || sandbox?.status === 'paused' ? sandbox.init?.pid : undefined;
        };
        const adjust = (spec: OciSpec) => {
          joinSandboxNamespaces(id, spec, sandboxPid);
          const applied = applyPodNetworkSysctls(id, spec);
          if (applied.length > 0) logger.info({ sysctls: applied }, "network sysctls set in the pod's (the guest's) network namespace");
          applyDisks(id, spec, disks);
        };
        this.containers.set(id, GuestContainer.create(id, req.oci_spec_json, req.stdin, this.opts.bundlesRoot, this.opts.runtime, logger, adjust));
        return {};
      },
      StartContainer: async (req) => {
        const container = this.container(req.container_id);
        const pid = await container.start();
        if (container.cgroupsPath) this.oomWatcher.watch(container.id, path.join('/sys/fs/cgroup', container.cgroupsPath, 'memory.events'));
        return { pid };
      },
      RemoveContainer: async (req) => {
        this.oomWatcher.unwatch(req.container_id);
        await this.container(req.container_id).remove();
        this.containers.delete(req.container_id);
        return {};
      },
      ExecProcess: async (req) => ({ pid: await this.container(req.container_id).exec(req.exec_id, req.process_json, req.stdin) }),
      DeleteProcess: async (req) => {
        this.container(req.container_id).removeExec(req.exec_id);
        return {};
      },
      PauseContainer: async (req) => {
        await this.container(req.container_id).pause();
        return {};
      },
      ResumeContainer: async (req) => {
        await this.container(req.container_id).resume();
        return {};
      },
      UpdateContainer: async (req) => {
        await this.container(req.container_id).update(req.resources_json);
        return {};
      },
      StatsContainer: async (req) => {
        const container = this.container(req.container_id);
        if (!container.cgroupsPath) throw new FailedPreconditionError(`container ${container.id} has no cgroup`);
        const { typeName, metrics } = readCgroupMetrics(container.cgroupsPath);
        const type = lookupType(typeName);
        return { type_url: typeName, value: Buffer.from(type.encode(type.fromObject(metrics)).finish()) };
      },
      GetOOMEvent: () =>
        new Promise((resolve) => {
          const queued = this.oomQueue.shift();
          if (queued !== undefined) resolve({ container_id: queued });
          else this.oomWaiters.push((containerId) => resolve({ container_id: containerId }));
        }),
      WaitProcess: async (req) => ({ status: await this.container(req.container_id).wait(req.exec_id) }),
      SignalProcess: async (req) => {
        await this.container(req.container_id).signal(req.exec_id, req.signal, req.all);
        return {};
      },
      ListProcesses: async (req) => ({ pids: this.container(req.container_id).pids() }),
      ReadStdout: async (req) => (await this.container(req.container_id).outputOf(req.exec_id)).stdout.read(req.max_len || DEFAULT_READ_LEN),
      ReadStderr: async (req) => (await this.container(req.container_id).outputOf(req.exec_id)).stderr.read(req.max_len || DEFAULT_READ_LEN),
      WriteStdin: async (req) => {
        const stdin = (await this.process(req)).stdin;
        if (!stdin || stdin.destroyed) throw new NotFoundError(`process ${req.container_id}/${req.exec_id || 'init'} has no open stdin`);
        const data = req.data;
        await new Promise<void>((resolve, reject) => stdin.write(data, (err) => (err ? reject(err) : resolve())));
        return { len: data.length };
      },
      TtyWinResize: async (req) => {
        (await this.process(req)).resize(req.columns, req.rows);
        return {};
      },
      CloseStdin: async (req) => {
        (await this.process(req)).stdin?.end();
        return {};
      },
      UpdateInterface: async (req) => {
        if (!req.interface) throw new InvalidArgumentError('UpdateInterface: the request names no interface');
        return this.network.updateInterface(req.interface);
      },
      UpdateRoutes: async (req) => ({ routes: await this.network.updateRoutes(req.routes?.routes ?? []) }),
      OnlineCpuMem: async (req) => {
        const online = await onlineCpuMem({ cpus: req.cpus ?? 0, memoryMiB: req.memory_mib ?? 0 });
        this.opts.logger.info({ want: { cpus: req.cpus, memoryMiB: req.memory_mib }, online }, 'hot-plugged CPUs and memory online');
        return { online_cpus: online.cpus, online_memory_mib: online.memoryMiB };
      },
      GetGuestMetrics: async () => readGuestMetrics(),
      SetGuestDateTime: async (req) => {
        const seconds = await setGuestDateTime(req.sec, req.usec);
        this.opts.logger.info({ seconds }, 'guest clock set');
        return {};
      },
      WarmUp: async (req) => {
        await this.warmUp(req);
        return {};
      },
    };
  }

  private container(id: string): GuestContainer {
    const container = this.containers.get(id);
    if (!container) throw new NotFoundError(`container ${id} not found in the guest`);
    return container;
  }

  /** The request's process; one still being started is waited for. */
  private process(req: { container_id: string; exec_id: string }): Promise<GuestProcess> {
    return this.container(req.container_id).ready(req.exec_id);
  }

  private async guestDetails(withoutBootId: boolean): Promise<katats.agent.v1.IGuestDetails> {
    return {
      agent_version: this.opts.agentVersion,
      kernel_release: os.release(),
      boot_id: withoutBootId ? '' : readTrimmed('/proc/sys/kernel/random/boot_id'),
      oci_runtime: await this.opts.runtime.version().catch((err) => `unavailable: ${(err as Error).message}`),
      features: AGENT_FEATURES,
    };
  }

  private async createSandbox(req: Decoded<katats.agent.v1.ICreateSandboxRequest>): Promise<object> {
    // The shim warms a VM up before it is a pod's; never both at once.
    await this.warmUpGate.podArriving();
    // Through /proc: no process for it.
    if (req.hostname) setHostname(req.hostname);
    const mountedAhead = await this.mountForSandbox(req);
    this.mountedAhead = undefined;
    this.opts.logger.info({ sandbox: req.sandbox_id, mountedAhead }, 'sandbox created');
    return {};
  }

  /**
   * Mounts what `share` asks for, unless a WarmUp mounted just that ahead (what it
   * mounted for another share is undone first); whether it had.
   */
  private async mountForSandbox(share: SandboxShare): Promise<boolean> {
    if (this.mountedAhead === sandboxMountsKey(share)) return true;
    if (this.mountedAhead) await this.unmountSandboxFilesystems();
    await this.mountSandboxFilesystems(share);
    return false;
  }

  /** The pod's shared filesystem (if it has one) and its /dev/shm. */
  private async mountSandboxFilesystems(share: SandboxShare): Promise<void> {
    if (share.shared_fs_tag) {
      const target = share.shared_dir_guest_path ?? '';
      fs.mkdirSync(target, { recursive: true });
      await runCommand('mount', sharedFsMountArgs(share.shared_fs_type ?? '', share.shared_fs_tag, target));
      this.sharedMount = target;
    }
    // The pod's /dev/shm: containers bind it, so they share System V/POSIX shm as on a node.
    fs.mkdirSync(SANDBOX_SHM_DIR, { recursive: true });
    await runCommand('mount', ['-t', 'tmpfs', '-o', `nosuid,nodev,noexec,mode=1777,size=${SANDBOX_SHM_SIZE}`, 'shm', SANDBOX_SHM_DIR]);
  }

  private async unmountSandboxFilesystems(): Promise<void> {
    await runCommand('umount', [SANDBOX_SHM_DIR]);
    if (this.sharedMount) await runCommand('umount', [this.sharedMount]);
    this.sharedMount = undefined;
    this.mountedAhead = undefined;
  }

  /**
   * Only in a VM no pod uses yet: what it runs and removes must never meet a pod's
   * containers. Then, if asked, what CreateSandbox mounts for any pod of this VM.
   */
  private async warmUp(req: SandboxShare): Promise<void> {
    const { runtime, bundlesRoot, warmUpDir, logger } = this.opts;
    await this.warmUpGate.warmUp(async () => {
      await warmUp({ runtime, bundlesRoot, workDir: warmUpDir, busybox: GUEST_BUSYBOX, cgroupsPath: WARM_UP_CGROUP, runCommand, logger });
      if (!req.shared_fs_tag) return;
      await this.mountForSandbox(req);
      this.mountedAhead = sandboxMountsKey(req);
    });
  }

  private async destroySandbox(): Promise<object> {
    for (const [id, container] of this.containers) {
      await container.remove().catch((err) => this.opts.logger.warn({ err, container: id }, 'remove during destroy failed'));
    }
    this.containers.clear();
    this.oomWatcher.close();
    if (this.sharedMount) await runCommand('umount', ['-l', this.sharedMount]).catch(() => undefined);
    // Answer first, then go: the guest powers off when the agent exits.
    setTimeout(() => this.opts.onDestroyed(), 100);
    return {};
  }
}

/** The fields of CreateSandbox and WarmUp that say which shared filesystem the sandbox mounts. */
type SandboxShare = { shared_fs_tag?: string | null; shared_dir_guest_path?: string | null; shared_fs_type?: string | null };

/** One string for what a sandbox mounts, to tell whether what was mounted ahead is that. */
function sandboxMountsKey(share: SandboxShare): string {
  return JSON.stringify([share.shared_fs_type ?? '', share.shared_fs_tag ?? '', share.shared_dir_guest_path ?? '']);
}

/** Longest hostname sethostname(2) takes (__NEW_UTS_LEN). */
const HOSTNAME_MAX_BYTES = 64;

/**
 * Sets the guest's hostname through /proc/sys/kernel/hostname. A write there silently
 * cuts a name at 64 bytes (where sethostname(2), which busybox hostname used, refuses
 * it) or at a newline: both are refused here, so no pod runs under a name it did not ask for.
 */
export function setHostname(name: string, file = '/proc/sys/kernel/hostname'): void {
  if (Buffer.byteLength(name) > HOSTNAME_MAX_BYTES || PROC_SYS_VALUE_REFUSED.test(name)) throw new InvalidArgumentError(`hostname ${JSON.stringify(name)} is not one the kernel takes (at most ${HOSTNAME_MAX_BYTES} bytes, no newline or NUL)`);
  fs.writeFileSync(file, name);
}

