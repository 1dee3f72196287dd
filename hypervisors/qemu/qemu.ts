// The QEMU driver: launches qemu-system as a child, drives it over QMP (block device
// hot-plug, block-hotplug.ts), stops it gracefully (guest poweroff), then by QMP quit,
// then by SIGKILL.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import { FailedPreconditionError, HypervisorError, NotImplementedError } from '../../lib/errors';
import { Logger } from '../../lib/logger';
import { Hypervisor, VmConfig, VmDevice, VmExit } from '../hypervisor';
import { requireGuestImage } from '../vm-requirements';
import { BlockHotplug } from './block-hotplug';
import { buildQemuArgs, hotplugPortIds, QemuOptions, qemuPaths } from './command-line';
import { QmpClient } from './qmp';

const QMP_CONNECT_TIMEOUT_MS = 10_000;

export class QemuHypervisor implements Hypervisor {
  readonly name = 'qemu';
  private child: ChildProcess | undefined;
  private qmp: QmpClient | undefined;
  private hotplug: BlockHotplug | undefined;
  private consoleLog: string | undefined;
  private resolveExited!: (exit: VmExit) => void;
  readonly exited: Promise<VmExit>;
  private hasExited = false;

  constructor(
    private readonly logger: Logger,
    private readonly options: QemuOptions = {},
  ) {
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
  }

  async start(config: VmConfig): Promise<void> {
    if (this.child) throw new HypervisorError(`VM ${config.id} already started`);
    await assertExecutable(config.binaryPath);
    requireGuestImage(config);
    const paths = qemuPaths(config.workDir);
    this.consoleLog = paths.consoleLog;
    const rootfsImageBytes = config.rootfs.kind === 'image' ? fs.statSync(config.rootfs.path).size : undefined;
    const args = buildQemuArgs(config, this.options, { rootfsImageBytes });
    this.logger.info({ binary: config.binaryPath, args }, 'starting qemu');
    const stderr: Buffer[] = [];
    // In a pod netns, nsenter joins it and execs QEMU: same pid, and QEMU can open the taps.
    const [command, commandArgs] = config.network ? ['nsenter', [`--net=${config.network.netnsPath}`, '--', config.binaryPath, ...args]] : [config.binaryPath, args];
    const child = spawn(command, commandArgs, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    this.child = child;
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr.push(chunk);
      this.logger.warn({ qemu: chunk.toString().trim() }, 'qemu stderr');
    });
    const spawnFailure = new Promise<never>((_, reject) => {
      child.once('error', (err) => reject(new HypervisorError(`cannot run ${config.binaryPath}: ${err.message}`, { cause: err })));
    });
    child.once('exit', (code, signal) => {
      this.hasExited = true;
      this.qmp?.close();
      this.logger.info({ code, signal }, 'qemu exited');
      this.resolveExited({ code, signal });
    });
    const earlyExit = this.exited.then((exit) => {
      const reason = Buffer.concat(stderr).toString().trim() || `exit code ${exit.code} signal ${exit.signal}`;
      throw new HypervisorError(`qemu exited during start-up: ${reason}`);
    });
    try {
      this.qmp = await Promise.race([QmpClient.connect(paths.qmpSocket, QMP_CONNECT_TIMEOUT_MS), spawnFailure, earlyExit]);
      // QEMU made its sockets (before it answered QMP) with its umask; whoever connects to
      // this one gets a root shell in the guest. An unrestricted console fails the start.
      if (config.debugConsole) fs.chmodSync(config.debugConsole.socketPath, 0o600);
    } catch (err) {
      // A QEMU that aborts mid-handshake resets the QMP socket first; its stderr
      // (e.g. KVM refusing an MSR) is the reason a person can act on.
      if (await settlesWithin(this.exited, 1000)) await earlyExit;
      this.killNow();
      await Promise.race([this.exited, delay(2000)]);
      throw err;
    }
    earlyExit.catch(() => undefined); // later exits are reported through `exited`
    this.hotplug = new BlockHotplug(this.qmp, hotplugPortIds(this.options));
  }

  async stop(graceMs: number): Promise<void> {
    if (!this.child || this.hasExited) return;
    if (await settlesWithin(this.exited, graceMs)) return;
    this.logger.warn('guest did not power off in time; sending QMP quit');
    await this.qmp?.execute('quit').catch(() => undefined);
    if (await settlesWithin(this.exited, 3000)) return;
    this.logger.warn('qemu ignored quit; killing it');
    this.killNow();
    await this.exited;
  }

  /** Hot-plugs a block device into the running VM (no cold-plug: the sandbox adds devices per container). */
  async addDevice(device: VmDevice): Promise<void> {
    if (device.kind !== 'block') throw new NotImplementedError(`qemu: hot-plugging ${device.kind} device ${device.id} is not implemented (block devices only)`);
    await this.requireHotplug(device.id).add(device);
    this.logger.info({ device: device.id, hostPath: device.hostPath, readOnly: device.readOnly }, 'block device hot-plugged');
  }

  async removeDevice(id: string): Promise<void> {
    await this.requireHotplug(id).remove(id);
    this.logger.info({ device: id }, 'block device unplugged');
  }

  pid(): number | undefined {
    return this.hasExited ? undefined : this.child?.pid;
  }

  consoleTail(maxBytes = 4096): string {
    if (!this.consoleLog) return '';
    try {
      const text = fs.readFileSync(this.consoleLog);
      return text.subarray(Math.max(0, text.length - maxBytes)).toString();
    } catch {
      return '';
    }
  }

  private requireHotplug(deviceId: string): BlockHotplug {
    if (!this.hotplug || this.hasExited) throw new FailedPreconditionError(`qemu: device ${deviceId} needs a running VM to be plugged or unplugged`);
    return this.hotplug;
  }

  private killNow(): void {
    if (this.child && !this.hasExited) this.child.kill('SIGKILL');
  }
}

async function assertExecutable(binary: string): Promise<void> {
  const { execFileSync } = await import('child_process');
  const resolved = binary.includes('/')
    ? binary
    : (() => {
        try {
          return execFileSync('sh', ['-c', 'command -v "$1"', 'sh', binary], { encoding: 'utf8' }).trim();
        } catch {
          return '';
        }
      })();
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
