// A container in the guest: its bundle (config.json written from the shim's spec),
// its state machine and its init process.
import * as fs from 'fs';
import * as path from 'path';
import { FailedPreconditionError, InternalError, InvalidArgumentError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { GuestProcess } from './guest-process';
import { OciRuntime } from './oci-runtime';
import { findExecutable } from './rootfs-path';

export type ContainerStatus = 'created' | 'running' | 'stopped';

export interface OciSpec {
  root?: { path?: string; readonly?: boolean };
  process?: { args?: string[]; env?: string[]; cwd?: string; terminal?: boolean };
  [key: string]: unknown;
}

const PID_FILE_WAIT_MS = 20_000;

export class GuestContainer {
  status: ContainerStatus = 'created';
  init: GuestProcess | undefined;
  /** Exit status for a container stopped before it ever started. */
  private stoppedBeforeStart: number | undefined;

  private constructor(
    readonly id: string,
    readonly bundleDir: string,
    readonly spec: OciSpec,
    private readonly wantsStdin: boolean,
    private readonly runtime: OciRuntime,
    private readonly logger: Logger,
  ) {}

  /** Validates the spec against the rootfs and writes the guest bundle. */
  static create(id: string, specJson: Buffer, stdin: boolean, bundlesRoot: string, runtime: OciRuntime, logger: Logger): GuestContainer {
    let spec: OciSpec;
    try {
      spec = JSON.parse(specJson.toString('utf8')) as OciSpec;
    } catch (err) {
      throw new InvalidArgumentError(`container ${id}: OCI spec is not valid JSON: ${(err as Error).message}`);
    }
    const rootfs = spec.root?.path;
    if (!rootfs || !path.isAbsolute(rootfs)) throw new InvalidArgumentError(`container ${id}: spec root.path must be an absolute guest path, got '${rootfs ?? ''}'`);
    if (!fs.existsSync(rootfs)) throw new FailedPreconditionError(`container ${id}: rootfs ${rootfs} is not visible in the guest (shared filesystem not mounted?)`);
    const args = spec.process?.args ?? [];
    if (args.length === 0) throw new InvalidArgumentError(`container ${id}: the process has no command (process.args is empty and the image has no entrypoint)`);
    if (spec.process?.terminal) throw new InvalidArgumentError(`container ${id}: terminals are not supported yet`);
    const env = spec.process?.env ?? [];
    if (!findExecutable(rootfs, args[0], env, spec.process?.cwd ?? '/')) {
      const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '(default)';
      throw new FailedPreconditionError(`container ${id}: executable '${args[0]}' not found in the image (PATH=${pathVar})`);
    }
    const bundleDir = path.join(bundlesRoot, id);
    fs.mkdirSync(bundleDir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(bundleDir, 'config.json'), JSON.stringify(spec));
    return new GuestContainer(id, bundleDir, spec, stdin, runtime, logger);
  }

  async start(): Promise<number> {
    if (this.status !== 'created') throw new FailedPreconditionError(`container ${this.id} is ${this.status}, cannot start it`);
    const pidFile = path.join(this.bundleDir, 'init.pid');
    const logFile = path.join(this.bundleDir, 'runtime.log');
    const child = this.runtime.run(this.id, { bundleDir: this.bundleDir, pidFile, logFile, stdin: this.wantsStdin });
    const init = new GuestProcess(child, this.logger.child({ exec: 'init' }));
    this.init = init;
    this.status = 'running';
    init.exitStatus.then(() => (this.status = 'stopped'));
    const pid = await waitForPidFile(pidFile, init, PID_FILE_WAIT_MS);
    if (pid === undefined) {
      const status = await init.exitStatus;
      const reason = OciRuntime.lastError(logFile) ?? `the OCI runtime exited with status ${status}`;
      throw new InternalError(`container ${this.id} failed to start: ${reason}`);
    }
    this.logger.info({ pid }, 'container started');
    return pid;
  }

  /** Delivers a signal; a container that never started is simply marked stopped. */
  async signal(signal: number, all: boolean): Promise<void> {
    if (this.status === 'created') {
      this.stoppedBeforeStart = 128 + signal;
      this.status = 'stopped';
      return;
    }
    if (this.status === 'stopped') throw new FailedPreconditionError(`container ${this.id} is not running`);
    await this.runtime.kill(this.id, signal, all);
  }

  async wait(): Promise<number> {
    if (this.init) return this.init.exitStatus;
    if (this.stoppedBeforeStart !== undefined) return this.stoppedBeforeStart;
    throw new FailedPreconditionError(`container ${this.id} has not been started`);
  }

  /** Kills whatever still runs, removes runtime state and the bundle. */
  async remove(): Promise<void> {
    if (this.status === 'running') {
      await this.runtime.kill(this.id, 9, true).catch((err) => this.logger.warn({ err }, 'kill during remove failed'));
      await this.init?.exitStatus;
    }
    await this.runtime.delete(this.id);
    fs.rmSync(this.bundleDir, { recursive: true, force: true });
    this.status = 'stopped';
  }

  /** Pids in the container's cgroup (cgroup v2, cgroupfs layout). */
  pids(): number[] {
    const cgroupsPath = (this.spec as { linux?: { cgroupsPath?: string } }).linux?.cgroupsPath;
    if (!cgroupsPath || this.status !== 'running') return [];
    try {
      const text = fs.readFileSync(path.join('/sys/fs/cgroup', cgroupsPath, 'cgroup.procs'), 'utf8');
      return text.split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  }
}

async function waitForPidFile(pidFile: string, init: GuestProcess, timeoutMs: number): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
      if (pid > 0) return pid;
    } catch {
      /* not written yet */
    }
    if (init.exited) return undefined;
    await new Promise((r) => setTimeout(r, 10));
  }
  return undefined;
}
