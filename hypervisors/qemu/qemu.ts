// The QEMU driver: launches qemu-system as a child, drives it over QMP (pause/resume,
// block device hot-plug in block-hotplug.ts, vCPU/memory hot-plug in vm-resize.ts),
// stops it gracefully (guest poweroff), then by QMP quit, then by SIGKILL.
import { ChildProcess, spawn } from 'child_process';
import { randomBytes } from 'crypto';
import { vmmCommand } from '../vmm-launch';
import { VmmNetns } from '../vmm-netns';
import { rateLimited, resolveExecutable } from '../vmm-process';
import { fileIdentity } from '../../lib/file-identity';
import * as fs from 'fs';
import * as path from 'path';
import { FailedPreconditionError, HypervisorError, ResourceExhaustedError } from '../../lib/errors';
import { Logger } from '../../lib/logger';
import { Hypervisor, SharedFsKind, TemplateFiles, VmConfig, VmDevice, VmExit, VmNetwork, VmResize, VmSize } from '../hypervisor';
import { hotplugLimits, requireGuestImage } from '../vm-requirements';
import { BlockHotplug } from './block-hotplug';
import { buildQemuArgs, hotplugPortIds, memoryHotplugSlots, needsSharedRam, QemuOptions, qemuPaths, QemuTemplateRole, templateRefusal } from './command-line';
import { HotplugPorts } from './hotplug-ports';
import { plugNic, unplugNic } from './nic-hotplug';
import { restoreFailure, restoreTemplateState, saveTemplateState } from './template-migration';
import { QmpClient } from './qmp';
import { TailBuffer, VMM_STDERR_TAIL_BYTES } from '../tail-buffer';
import { QemuResize } from './vm-resize';
import { recordServingChildren, startVirtiofsDaemons, stopVirtiofsDaemons, VirtiofsDaemon } from '../virtiofsd';
import { startVsockBackend, stopVsockBackend, VsockBackend, vsockBackendPaths } from '../vsock-backend';
import { waitForVsockDeviceStart } from './vsock-device-start';

const QMP_CONNECT_TIMEOUT_MS = 10_000;
/** The socket a template's state goes through (template-migration.ts), in the work dir. */
const MIGRATION_SOCKET = 'migrate.sock';
/** The fd a clone's QEMU gets its template's RAM file on (the first after stdio). */
const PASSED_FD = 3;
/** Console output kept for messages; `kata-ts-runtime check` looks for its marker in the last 64 KiB. */
const CONSOLE_TAIL_BYTES = 128 * 1024;

/** How long the guest gets to let go of an unused NIC plugged ahead (ACPI eject; seconds under TCG). */
const NIC_UNPLUG_TIMEOUT_MS = 30_000;
/** The tap of a NIC plugged ahead, in the VMM's namespace (plugNics renames it if the pod's has another name). */
const PRE_PLUGGED_TAP = 'tap0_kata';

export class QemuHypervisor implements Hypervisor {
  readonly name = 'qemu';
  /**
   * virtio-serial, or hybrid vsock through vhost-device-vsock (options.vsockBackend).
   * Kernel vhost-vsock would do too, but Node has no AF_VSOCK to dial it.
   */
  readonly agentChannelKind: 'virtio-serial' | 'hybrid-vsock';
  private child: ChildProcess | undefined;
  private qmp: QmpClient | undefined;
  private hotplug: BlockHotplug | undefined;
  private ports: HotplugPorts | undefined;
  /** NICs hot-plugged so far (each gets the next id). */
  private nicsPlugged = 0;
  /** A clone's own network namespace, where QEMU opens the pod's taps plugNics moves in (and back out). */
  private netns: VmmNetns | undefined;
  /** The NIC prePlugNic plugged, until plugNics gives it to a pod. */
  private prePlugged: { id: string; tapName: string; mac: string } | undefined;
  /** A NIC plugged ahead whose pod had no network: its port is freed when a device needs it. */
  private unusedNic: string | undefined;
  private nicUnplug: Promise<boolean> | undefined;
  /** Set by startTemplate: where saveTemplate() puts the state. */
  private template: { workDir: string; files: TemplateFiles } | undefined;
  private resizer: QemuResize | undefined;
  /** The guest console (QEMU's stdout), its end only: the guest decides how much it prints. */
  private console: TailBuffer | undefined;
  private resolveExited!: (exit: VmExit) => void;
  readonly exited: Promise<VmExit>;
  private hasExited = false;
  /** One virtiofsd per shared directory (virtio-fs only); they outlive QEMU by at most a stop. */
  private virtiofsDaemons: VirtiofsDaemon[] = [];
  /** The agent's vsock (hybrid-vsock only); killed after QEMU, which it would outlive. */
  private vsockBackend: VsockBackend | undefined;
  readonly sharedFsKind: SharedFsKind;

  constructor(
    private readonly logger: Logger,
    private readonly options: QemuOptions = {},
  ) {
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
    this.sharedFsKind = options.virtioFs ? 'virtio-fs' : 'virtio-9p';
    this.agentChannelKind = options.vsockBackend ? 'hybrid-vsock' : 'virtio-serial';
  }

  async start(config: VmConfig): Promise<void> {
    const args = await this.argsFor(config);
    try {
      if (this.options.virtioFs) this.virtiofsDaemons = await startVirtiofsDaemons(this.options.virtioFs, config.workDir, config.sharedDirectories, this.logger);
      if (this.options.vsockBackend && config.agentChannel.kind === 'hybrid-vsock') {
        this.vsockBackend = await startVsockBackend(this.options.vsockBackend, vsockBackendPaths(config.workDir, config.agentChannel.socketPath), this.logger.child({ component: 'vsock-backend' }));
      }
      await this.launch(config, args);
    } catch (err) {
      await this.stopDaemons(0);
      throw err;
    }
  }

  private async argsFor(config: VmConfig, template?: QemuTemplateRole): Promise<string[]> {
    if (this.child) throw new HypervisorError(`VM ${config.id} already started`);
    await assertExecutable(config.binaryPath);
    requireGuestImage(config);
    return buildQemuArgs(config, this.options, hostFacts(config), template);
  }

  templateRefusal(config: VmConfig): string | undefined {
    return templateRefusal(config, this.options);
  }

  /** The command line of a template of `config` (placed by the caller) and which QEMU binary runs it. */
  templateIdentity(config: VmConfig): string {
    const args = buildQemuArgs(config, this.options, hostFacts(config), { role: 'template', memoryPath: path.join(config.workDir, 'memory') });
    const binary = resolveExecutable(config.binaryPath);
    return JSON.stringify({ binary: binary ? fileIdentity(binary) : config.binaryPath, args });
  }

  async startTemplate(config: VmConfig, files: TemplateFiles, onSpawned: (pid: number) => void): Promise<void> {
    const args = await this.argsFor(config, { role: 'template', memoryPath: files.memoryPath });
    // Root's only: every clone's RAM starts as these pages. QEMU sizes the file itself.
    fs.closeSync(fs.openSync(files.memoryPath, 'wx', 0o600));
    this.template = { workDir: config.workDir, files };
    // Nothing but its maker would end a template VM that never gets saved: it dies with
    // the maker, and its pid is recorded for a takeover (where the signal does not reach).
    await this.launch(config, args, { dieWithSpawner: true, onSpawned });
  }

  async saveTemplate(): Promise<void> {
    const qmp = this.requireQmp('saving a template');
    if (!this.template) throw new FailedPreconditionError('qemu: this VM was not started as a template');
    await saveTemplateState(qmp, path.join(this.template.workDir, MIGRATION_SOCKET), this.template.files.statePath, this.exited);
    this.logger.info('template state saved');
    // Its state is saved and its vCPUs stopped: nothing is lost by ending it now.
    await this.quitOrKill();
  }

  async startClone(config: VmConfig, files: TemplateFiles, state: Buffer, { memoryFd, dieWithSpawner = false }: { memoryFd?: number; dieWithSpawner?: boolean } = {}): Promise<void> {
    if (config.network) throw new FailedPreconditionError('qemu: a clone starts without its pod network (plugNics adds its NICs)');
    // The caller's open RAM file, as QEMU's fd 3: QEMU opens it anew through /dev/fd (the same file, even if unlinked meanwhile).
    const args = await this.argsFor(config, { role: 'clone', memoryPath: memoryFd === undefined ? files.memoryPath : `/dev/fd/${PASSED_FD}` });
    // In an empty network namespace of its own: nothing of the pod is needed to start it.
    await this.launch(config, args, { ownNetns: true, dieWithSpawner, passFd: memoryFd });
    try {
      this.netns = VmmNetns.open(this.child!.pid!, () => !this.hasExited);
      // Only QEMU's own refusal condemns the template; a kill or a timeout is this clone's trouble.
      await restoreTemplateState(this.qmp!, path.join(config.workDir, MIGRATION_SOCKET), state, this.exited).catch((err: Error) => {
        throw restoreFailure(err);
      });
      await this.qmp!.execute('cont');
    } catch (err) {
      await this.stopQemu(0);
      throw err;
    }
    this.logger.info({ pid: this.child?.pid }, 'VM restored from its template and running');
  }

  async plugNics(network: VmNetwork | undefined): Promise<void> {
    const qmp = this.requireQmp('plugging NICs');
    for (const nic of network?.nics ?? []) {
      if (!this.netns) throw new FailedPreconditionError('qemu: NICs are hot-plugged only into a clone (a VMM in a network namespace of its own)');
      const podNetns = network!.netnsPath;
      const ahead = this.prePlugged;
      if (ahead) {
        // Once only, also if the move fails: the caller then ends this VM.
        this.prePlugged = undefined;
        await this.netns.moveOut(ahead.tapName, podNetns, nic.tapName);
        this.logger.info({ tap: nic.tapName, pluggedMac: ahead.mac, mac: nic.mac, netns: podNetns }, "the NIC plugged ahead is the pod's (its tap moved into the pod's network namespace)");
        continue;
      }
      const id = `nic${this.nicsPlugged}`;
      // QEMU opens the pod's tap by name in its own namespace, then the tap goes back.
      await this.netns.moveIn(nic.tapName, podNetns);
      let plugFailure: unknown;
      await plugNic(qmp, this.ports!, { kind: 'network', id, tapName: nic.tapName, macAddress: nic.mac }).then(
        () => void this.nicsPlugged++,
        (err: unknown) => void (plugFailure = err),
      );
      // Also when the plug failed: the tap is the pod's (were it left here, it would end with QEMU's namespace).
      await this.netns.moveOut(nic.tapName, podNetns).catch((err: Error) => {
        if (!plugFailure) throw err;
        this.logger.warn({ tap: nic.tapName, err: err.message }, 'the tap cannot be moved back after the failed plug');
      });
      if (plugFailure) throw plugFailure; // the reason a person can act on, not the move's
      this.logger.info({ id, tap: nic.tapName, mac: nic.mac, netns: podNetns }, 'NIC plugged (its tap opened in the VMM\'s network namespace, then moved back)');
    }
    if (this.prePlugged) {
      // A pod without a network: the guest keeps a NIC that is down and leads nowhere
      // (its tap is in the VMM's empty namespace). Unplugging it now would cost the
      // guest's time during the pod's start; its port is freed once a device needs it.
      this.unusedNic = this.prePlugged.id;
      this.prePlugged = undefined;
    }
  }

  async prePlugNic(): Promise<string> {
    const qmp = this.requireQmp('plugging a NIC ahead');
    if (!this.netns) throw new FailedPreconditionError('qemu: a NIC is plugged ahead only into a clone (a VMM in a network namespace of its own)');
    if (this.prePlugged || this.nicsPlugged > 0) throw new FailedPreconditionError('qemu: a NIC is plugged ahead only into a clone with none yet');
    const id = `nic${this.nicsPlugged}`;
    const tapName = PRE_PLUGGED_TAP;
    // Locally administered and unicast; the agent gives the NIC its pod's MAC.
    const bytes = randomBytes(6);
    bytes[0] = (bytes[0] & 0xfc) | 0x02;
    const mac = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
    await this.netns.makeTap(tapName);
    // A tap QEMU did not take ends with its namespace, as a NIC it took does once unused.
    await plugNic(qmp, this.ports!, { kind: 'network', id, tapName, macAddress: mac });
    this.nicsPlugged++;
    this.prePlugged = { id, tapName, mac };
    this.logger.info({ id, tap: tapName, mac }, "NIC plugged ahead (its tap in the VMM's network namespace until a pod takes it)");
    return mac;
  }

  private async launch(config: VmConfig, args: string[], { onSpawned, passFd, ...launchOptions }: { dieWithSpawner?: boolean; ownNetns?: boolean; onSpawned?: (pid: number) => void; passFd?: number } = {}): Promise<void> {
    const paths = qemuPaths(config.workDir);
    this.logger.info({ binary: config.binaryPath, args }, 'starting qemu');
    const console = new TailBuffer(CONSOLE_TAIL_BYTES);
    this.console = console;
    // Only its end matters (why start-up failed), and a QEMU that keeps complaining must not grow the shim.
    const stderr = new TailBuffer(VMM_STDERR_TAIL_BYTES);
    // Reduced capabilities; in a pod netns (a cold boot), nsenter joins it and execs QEMU: same pid, and QEMU can open the taps.
    const [command, commandArgs] = vmmCommand(config.binaryPath, args, { netnsPath: config.network?.netnsPath, ...launchOptions });
    const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe', ...(passFd === undefined ? [] : [passFd])], detached: true });
    this.child = child;
    if (child.pid !== undefined) onSpawned?.(child.pid);
    child.stdout?.on('data', (chunk: Buffer) => console.push(chunk));
    const logStderr = rateLimited(20, 60_000, (suppressed) => this.logger.warn({ suppressed }, `qemu stderr: ${suppressed} more chunks in the last minute not logged`));
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr.push(chunk);
      if (logStderr()) this.logger.warn({ qemu: chunk.toString().trim() }, 'qemu stderr');
    });
    const spawnFailure = new Promise<never>((_, reject) => {
      child.once('error', (err) => reject(new HypervisorError(`cannot run ${config.binaryPath}: ${err.message}`, { cause: err })));
    });
    child.once('exit', (code, signal) => {
      this.hasExited = true;
      this.netns?.close();
      this.qmp?.close();
      // virtiofsd exits by itself once its vhost-user peer is gone (this makes sure of
      // it); the vsock backend would wait for another VMM.
      void this.stopDaemons();
      this.logger.info({ code, signal }, 'qemu exited');
      this.resolveExited({ code, signal });
    });
    const earlyExit = this.exited.then((exit) => {
      const reason = stderr.tail().toString().trim() || `exit code ${exit.code} signal ${exit.signal}`;
      throw new HypervisorError(`qemu exited during start-up: ${reason}`);
    });
    try {
      this.qmp = await Promise.race([QmpClient.connect(paths.qmpSocket, QMP_CONNECT_TIMEOUT_MS), spawnFailure, earlyExit]);
      // QEMU connected to each virtiofsd before it answered QMP: their serving children exist.
      recordServingChildren(this.virtiofsDaemons);
      // QEMU made its sockets (before it answered QMP) with its umask; whoever connects to
      // this one gets a root shell in the guest. An unrestricted console fails the start.
      if (config.debugConsole && this.agentChannelKind === 'virtio-serial') fs.chmodSync(config.debugConsole.socketPath, 0o600);
    } catch (err) {
      // A QEMU that aborts mid-handshake resets the QMP socket first; its stderr
      // (e.g. KVM refusing an MSR) is the reason a person can act on.
      if (await settlesWithin(this.exited, 1000)) await earlyExit;
      this.killNow();
      await Promise.race([this.exited, delay(2000)]);
      throw err;
    }
    earlyExit.catch(() => undefined); // later exits are reported through `exited`
    this.ports = new HotplugPorts(hotplugPortIds(this.options));
    this.hotplug = new BlockHotplug(this.qmp, this.ports);
    const limits = hotplugLimits(config, this.name);
    this.resizer = new QemuResize(this.qmp, config.memoryMiB, limits, limits.memoryMiB > config.memoryMiB ? memoryHotplugSlots(this.options) : 0, needsSharedRam(config, this.options));
  }

  async stop(graceMs: number): Promise<void> {
    await this.stopQemu(graceMs);
    await this.stopDaemons();
  }

  /** The vhost-user daemons QEMU was connected to. Safe to call more than once. */
  private async stopDaemons(virtiofsdGraceMs?: number): Promise<void> {
    await Promise.all([stopVirtiofsDaemons(this.virtiofsDaemons, virtiofsdGraceMs), stopVsockBackend(this.vsockBackend)]);
  }

  private async stopQemu(graceMs: number): Promise<void> {
    if (!this.child || this.hasExited) return;
    if (await settlesWithin(this.exited, graceMs)) return;
    this.logger.warn('guest did not power off in time; sending QMP quit');
    await this.quitOrKill();
  }

  /** QMP quit, then SIGKILL if QEMU is still there 3 s later. */
  private async quitOrKill(): Promise<void> {
    // Bounded: a QEMU that is stopped (SIGSTOP) or wedged never answers QMP.
    await settlesWithin(this.qmp?.execute('quit').catch(() => undefined) ?? Promise.resolve(), 3000);
    if (await settlesWithin(this.exited, 3000)) return;
    this.logger.warn('qemu ignored quit; killing it');
    this.killNow();
    await this.exited;
  }

  /** Stops the vCPUs (QMP stop); the guest notices nothing but lost time. */
  async pause(): Promise<void> {
    await this.requireQmp('pause').execute('stop');
    this.logger.info('vCPUs stopped');
  }

  async resume(): Promise<void> {
    await this.requireQmp('resume').execute('cont');
    this.logger.info('vCPUs running again');
  }

  /** Over hybrid vsock: once the guest started its vsock device (see vsock-device-start.ts). */
  async agentChannelReady(signal: AbortSignal): Promise<void> {
    // A VM that is gone is the dial's to report (the agent client names it).
    if (!this.vsockBackend || !this.qmp || this.hasExited || signal.aborted) return;
    await waitForVsockDeviceStart(this.qmp, signal, this.logger, () => this.hasExited);
  }

  /** QEMU's run state (query-status): "running", "paused", … */
  async vmState(): Promise<string> {
    return (await this.requireQmp('query-status').execute<{ status: string }>('query-status')).status;
  }

  /** Hot-plugs vCPUs and memory (vm-resize.ts); the guest must online them. */
  async resize(target: VmResize): Promise<VmSize> {
    this.requireQmp('resize');
    const size = await this.resizer!.resize(target);
    this.logger.info({ target, size }, 'VM resized');
    return size;
  }

  /** Hot-plugs a block device or NIC into the running VM (no cold-plug: the sandbox adds disks per container). */
  async addDevice(device: VmDevice): Promise<void> {
    this.requireHotplug(device.id);
    try {
      await this.plugDevice(device);
    } catch (err) {
      // Every port taken, one by a NIC plugged ahead that this pod has no use for: freed, and once more.
      if (!(err instanceof ResourceExhaustedError) || !(await this.freeUnusedNicPort())) throw err;
      await this.plugDevice(device);
    }
  }

  private async plugDevice(device: VmDevice): Promise<void> {
    if (device.kind === 'network') {
      await plugNic(this.qmp!, this.ports!, device);
      this.logger.info({ device: device.id, tap: device.tapName }, 'NIC hot-plugged');
      return;
    }
    await this.requireHotplug(device.id).add(device);
    this.logger.info({ device: device.id, hostPath: device.hostPath, readOnly: device.readOnly }, 'block device hot-plugged');
  }

  async removeDevice(id: string): Promise<void> {
    await this.requireHotplug(id).remove(id);
    this.logger.info({ device: id }, 'block device unplugged');
  }

  /**
   * Unplugs the unused NIC plugged ahead (once: a guest that keeps it keeps its port);
   * whether a port was freed. A device that found every port taken meanwhile waits for
   * the same unplug.
   */
  private async freeUnusedNicPort(): Promise<boolean> {
    const id = this.unusedNic;
    if (id) {
      this.unusedNic = undefined;
      const unplug = unplugNic(this.qmp!, this.ports!, id, NIC_UNPLUG_TIMEOUT_MS).then(
        () => (this.logger.info({ id }, 'the NIC plugged ahead, unused by this pod, unplugged: a device needs its port'), true),
        (err: Error) => (this.logger.warn({ id, err: err.message }, 'the NIC plugged ahead, unused by this pod, could not be unplugged; its port stays taken'), false),
      );
      this.nicUnplug = unplug;
      // Only the devices that waited for it had the port it freed in view.
      void unplug.then(() => (this.nicUnplug = undefined));
    }
    return (await this.nicUnplug) ?? false;
  }

  pid(): number | undefined {
    return this.hasExited ? undefined : this.child?.pid;
  }

  consoleTail(maxBytes = 4096): string {
    return this.console?.tail(maxBytes).toString() ?? '';
  }

  private requireQmp(what: string): QmpClient {
    if (!this.qmp || this.hasExited) throw new FailedPreconditionError(`qemu: ${what} needs a running VM`);
    return this.qmp;
  }

  private requireHotplug(deviceId: string): BlockHotplug {
    if (!this.hotplug || this.hasExited) throw new FailedPreconditionError(`qemu: device ${deviceId} needs a running VM to be plugged or unplugged`);
    return this.hotplug;
  }

  private killNow(): void {
    if (this.child && !this.hasExited) this.child.kill('SIGKILL');
  }
}

function hostFacts(config: VmConfig): { rootfsImageBytes?: number } {
  return { rootfsImageBytes: config.rootfs.kind === 'image' ? fs.statSync(config.rootfs.path).size : undefined };
}

async function assertExecutable(binary: string): Promise<void> {
  const resolved = binary.includes('/') ? binary : (resolveExecutable(binary) ?? '');
  try {
    if (!resolved) throw new Error('not found on PATH');
    fs.accessSync(resolved, fs.constants.X_OK);
  } catch (err) {
    throw new HypervisorError(`QEMU binary '${binary}' is not usable (${(err as Error).message}); install qemu-system-x86 or set hypervisor.path in the configuration`);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const result = await Promise.race([promise.then(() => true as const), timeout]);
  clearTimeout(timer);
  return result;
}
