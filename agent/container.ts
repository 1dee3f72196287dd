// A container in the guest: its bundle (config.json written from the shim's spec),
// its state machine, its init process and its exec processes.
import * as fs from 'fs';
import * as path from 'path';
import { AlreadyExistsError, FailedPreconditionError, InternalError, InvalidArgumentError, NotFoundError } from '../lib/errors';
import { Logger } from '../lib/logger';
import type { SpecWithDevices } from './devices';
import { GuestProcess } from './guest-process';
import { OciRuntime } from './oci-runtime';
import { waitForExit } from './process-exit';
import { findExecutable } from './rootfs-path';
import { makeFifos, StdioOwner } from './stdio-pipes';

export type ContainerStatus = 'created' | 'running' | 'paused' | 'stopped';

interface OciProcess {
  args?: string[];
  env?: string[];
  cwd?: string;
  terminal?: boolean;
  user?: { uid?: number; gid?: number };
}

interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export interface OciSpec {
  root?: { path?: string; readonly?: boolean };
  process?: OciProcess;
  linux?: {
    cgroupsPath?: string;
    namespaces?: Array<{ type: string; path?: string }>;
    uidMappings?: IdMapping[];
    gidMappings?: IdMapping[];
  } & SpecWithDevices['linux'];
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

const PID_FILE_WAIT_MS = 20_000;
/** How often the pid file is read when no inotify event came. */
const PID_FILE_POLL_MS = 50;
/** How often the init of a container without its own PID namespace is looked for. */
const INIT_EXIT_POLL_MS = 100;

/** The guest's terminal helper (guest/ctty.c) and where containers see it. */
const CTTY_HELPER = '/usr/libexec/katats/ctty';
const CTTY_IN_CONTAINER = '/dev/.katats-ctty';

/** A process that wants a terminal starts through the helper, which claims it. */
function onTerminal(proc: OciProcess | undefined): OciProcess {
  return { ...proc, terminal: false, args: [CTTY_IN_CONTAINER, ...(proc?.args ?? [])] };
}

/**
 * The spec the runtime gets: the helper bind-mounted read-only under /dev (a tmpfs
 * the runtime creates, so read-only rootfs images work too) for the init and any
 * later exec that asks for a terminal.
 */
function runtimeSpec(spec: OciSpec, terminal: boolean): OciSpec {
  const mounts = [...((spec.mounts as unknown[]) ?? []), { destination: CTTY_IN_CONTAINER, type: 'bind', source: CTTY_HELPER, options: ['bind', 'ro'] }];
  return { ...spec, mounts, process: terminal ? onTerminal(spec.process) : spec.process };
}

/**
 * Whether the container has a PID namespace of its own: a `pid` entry without a path.
 * Without one (it shares the pod's or the guest's) its processes outlive its init,
 * so, as containerd's runc shim does (ShouldKillAllOnExit), they are killed when the
 * init exits; with one the kernel does that. crun, their subreaper, would otherwise
 * keep `crun run` waiting for them, and the init's exit would go unreported.
 */
export function hasOwnPidNamespace(spec: OciSpec): boolean {
  return (spec.linux?.namespaces ?? []).some((ns) => ns.type === 'pid' && !ns.path);
}

/**
 * Who owns a process's stdio pipes: its own user, as the guest sees it (through the
 * spec's user namespace mappings), so a process that is not root can reopen
 * /dev/stdout. containerd's CRI asks runc's shim for this only in user-namespaced
 * pods (containerd#10906), while calling it right for every container; elsewhere
 * runc leaves the pipes root's 0600 and such a reopen fails with EACCES.
 * Undefined means root; an id the mappings lack stays root too.
 */
export function stdioOwner(spec: OciSpec, proc: OciProcess | undefined): StdioOwner | undefined {
  const uid = mapId(proc?.user?.uid ?? 0, spec.linux?.uidMappings);
  const gid = mapId(proc?.user?.gid ?? 0, spec.linux?.gidMappings);
  if (uid === undefined || gid === undefined || (uid === 0 && gid === 0)) return undefined;
  return { uid, gid };
}

function mapId(id: number, mappings: IdMapping[] | undefined): number | undefined {
  if (!mappings?.length) return id;
  const m = mappings.find((range) => id >= range.containerID && id < range.containerID + range.size);
  return m ? m.hostID + (id - m.containerID) : undefined;
}

export class GuestContainer {
  status: ContainerStatus = 'created';
  init: GuestProcess | undefined;
  private readonly execs = new Map<string, GuestProcess>();
  /**
   * Runtime processes being set up (their pipes take an await). The shim asks for
   * their output as soon as it asked for them, so calls about them wait (see ready()).
   */
  private initSetup: Promise<unknown> | undefined;
  private readonly execSetups = new Map<string, Promise<unknown>>();
  /** The init has exited, though the runtime may still wait for what it left. */
  private initGone = false;
  /** Exit status for a container stopped before it ever started. */
  private stoppedBeforeStart: number | undefined;
  /** The init's stdio FIFOs, being made since Create (none on a terminal); Start takes them. */
  private initFifos: Promise<void> | undefined;
  /** Settles once the init's Start was asked for, or it never will be (stopped before it, removed). */
  private readonly initStartAsked: Promise<void>;
  private markInitStartAsked: () => void = () => undefined;

  private constructor(
    readonly id: string,
    readonly bundleDir: string,
    readonly spec: OciSpec,
    private readonly wantsStdin: boolean,
    private readonly terminal: boolean,
    private readonly runtime: OciRuntime,
    private readonly logger: Logger,
  ) {
    this.initStartAsked = new Promise((resolve) => (this.markInitStartAsked = resolve));
  }

  /** Validates the spec against the rootfs and writes the guest bundle. */
  static create(id: string, specJson: Buffer, stdin: boolean, bundlesRoot: string, runtime: OciRuntime, logger: Logger, adjust: (spec: OciSpec) => void = () => undefined): GuestContainer {
    const spec = parseJson<OciSpec>(specJson, `container ${id}: OCI spec`);
    adjust(spec);
    const rootfs = spec.root?.path;
    if (!rootfs || !path.isAbsolute(rootfs)) throw new InvalidArgumentError(`container ${id}: spec root.path must be an absolute guest path, got '${rootfs ?? ''}'`);
    if (!fs.existsSync(rootfs)) throw new FailedPreconditionError(`container ${id}: rootfs ${rootfs} is not visible in the guest (shared filesystem not mounted?)`);
    checkExecutable(`container ${id}`, rootfs, spec.process);
    const bundleDir = path.join(bundlesRoot, id);
    fs.mkdirSync(bundleDir, { recursive: true, mode: 0o700 });
    const terminal = Boolean(spec.process?.terminal);
    fs.writeFileSync(path.join(bundleDir, 'config.json'), JSON.stringify(runtimeSpec(spec, terminal)));
    const container = new GuestContainer(id, bundleDir, spec, stdin, terminal, runtime, logger);
    // In the guest's idle time between Create's answer and Start, not on Start's path.
    if (!terminal) container.initFifos = makeFifos(container.processFiles('init').fifoPrefix, stdin);
    // Start reports a failure; until then it must not count as unhandled.
    container.initFifos?.catch(() => undefined);
    return container;
  }

  get cgroupsPath(): string | undefined {
    return this.spec.linux?.cgroupsPath;
  }

  async start(): Promise<number> {
    if (this.status !== 'created' || this.initSetup) throw new FailedPreconditionError(`container ${this.id} is ${this.initSetup ? 'starting' : this.status}, cannot start it`);
    const files = this.processFiles('init');
    const fifosMade = this.initFifos;
    this.initFifos = undefined;
    const setup = this.runtime.run(this.id, { bundleDir: this.bundleDir, ...files, stdin: this.wantsStdin, terminal: this.terminal, stdioOwner: stdioOwner(this.spec, this.spec.process), fifosMade });
    this.initSetup = setup;
    this.markInitStartAsked();
    let child;
    try {
      child = await setup;
    } finally {
      this.initSetup = undefined;
    }
    const init = new GuestProcess(child, this.logger.child({ exec: 'init' }));
    this.init = init;
    this.status = 'running';
    init.exitStatus.then(() => (this.status = 'stopped'));
    const pid = await this.awaitPid(init, files, `container ${this.id} failed to start`);
    this.logger.info({ pid }, 'container started');
    if (!hasOwnPidNamespace(this.spec)) void this.killLeftoversOnExit(init);
    return pid;
  }

  /** Starts an exec process (OCI Process JSON) in the running container. */
  async exec(execId: string, processJson: Buffer, stdin: boolean): Promise<number> {
    if (this.status !== 'running') throw new FailedPreconditionError(`container ${this.id} is ${this.status}; exec needs a running container`);
    if (this.execs.has(execId) || this.execSetups.has(execId)) throw new AlreadyExistsError(`exec ${execId} already exists in container ${this.id}`);
    const processSpec = parseJson<OciProcess>(processJson, `exec ${execId} of container ${this.id}: process spec`);
    checkExecutable(`exec ${execId} of container ${this.id}`, this.spec.root!.path!, processSpec);
    const files = this.processFiles(`exec-${execId}`);
    const processFile = path.join(this.bundleDir, `exec-${execId}.json`);
    const terminal = Boolean(processSpec.terminal);
    fs.writeFileSync(processFile, JSON.stringify(terminal ? onTerminal(processSpec) : processSpec));
    const setup = this.runtime.exec(this.id, { processFile, ...files, stdin, terminal, stdioOwner: stdioOwner(this.spec, processSpec) });
    this.execSetups.set(execId, setup);
    let child;
    try {
      child = await setup;
    } finally {
      this.execSetups.delete(execId);
    }
    const proc = new GuestProcess(child, this.logger.child({ exec: execId }));
    this.execs.set(execId, proc);
    return this.awaitPid(proc, files, `exec ${execId} in container ${this.id} failed to start`);
  }

  process(execId: string): GuestProcess {
    const proc = execId ? this.execs.get(execId) : this.init;
    if (!proc) throw new NotFoundError(execId ? `exec ${execId} not found in container ${this.id}` : `container ${this.id} has not been started`);
    return proc;
  }

  /**
   * The process whose output is read: for the init, once its Start was asked for. The
   * shim sends its reads right after its Start, so they may be served first; a read
   * that failed then would end the shim's copy, and output nobody read would fill the
   * process's pipe. A container stopped or removed before its Start ends the wait.
   */
  async outputOf(execId: string): Promise<GuestProcess> {
    if (!execId) await this.initStartAsked;
    return this.ready(execId);
  }

  /** The process, once set up if that is under way. */
  async ready(execId: string): Promise<GuestProcess> {
    await this.settled(execId);
    return this.process(execId);
  }

  /** Waits while the process is being set up; its failure is its Start's or Exec's to report. */
  private async settled(execId: string): Promise<void> {
    const setup = execId ? this.execSetups.get(execId) : this.initSetup;
    if (setup) await setup.catch(() => undefined);
  }

  /**
   * Delivers a signal; a container that never started is simply marked stopped. A
   * process that has exited answers NotFound, as under runc, also when the signal
   * races its end (its output may still be draining, or the runtime's state gone).
   */
  async signal(execId: string, signal: number, all: boolean): Promise<void> {
    await this.settled(execId);
    if (execId) {
      const proc = this.process(execId);
      if (proc.exited || !proc.pid) throw new NotFoundError(`exec ${execId} of container ${this.id} is not running`);
      try {
        process.kill(proc.pid, signal);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ESRCH') throw new NotFoundError(`exec ${execId} of container ${this.id} is not running`, { cause: err });
        throw err;
      }
      return;
    }
    if (this.status === 'created') {
      this.stoppedBeforeStart = 128 + signal;
      this.status = 'stopped';
      this.markInitStartAsked();
      return;
    }
    if (this.status === 'stopped' || this.initGone || this.init?.exited) throw new NotFoundError(`container ${this.id} is not running`);
    await this.runtime.kill(this.id, signal, all);
  }

  async wait(execId: string): Promise<number> {
    await this.settled(execId);
    if (execId) return this.process(execId).exitStatus;
    if (this.init) return this.init.exitStatus;
    if (this.stoppedBeforeStart !== undefined) return this.stoppedBeforeStart;
    throw new FailedPreconditionError(`container ${this.id} has not been started`);
  }

  async pause(): Promise<void> {
    if (this.status !== 'running') throw new FailedPreconditionError(`container ${this.id} is ${this.status}; only a running container can be paused`);
    await this.runtime.pause(this.id);
    this.status = 'paused';
  }

  async resume(): Promise<void> {
    if (this.status !== 'paused') throw new FailedPreconditionError(`container ${this.id} is ${this.status}; only a paused container can be resumed`);
    await this.runtime.resume(this.id);
    this.status = 'running';
  }

  async update(resourcesJson: Buffer): Promise<void> {
    if (this.status !== 'running' && this.status !== 'paused') throw new FailedPreconditionError(`container ${this.id} is ${this.status}; cannot update its resources`);
    parseJson(resourcesJson, `container ${this.id}: resources`);
    const file = path.join(this.bundleDir, 'resources.json');
    fs.writeFileSync(file, resourcesJson);
    await this.runtime.update(this.id, file);
  }

  /** Kills whatever still runs, removes runtime state and the bundle. */
  async remove(): Promise<void> {
    this.markInitStartAsked();
    await this.settled('');
    await Promise.all([...this.execSetups.keys()].map((execId) => this.settled(execId)));
    if (this.status === 'paused') await this.runtime.resume(this.id).catch(() => undefined);
    if (this.status === 'running' || this.status === 'paused') {
      await this.runtime.kill(this.id, 9, true).catch((err) => {
        if (!(err instanceof NotFoundError)) this.logger.warn({ err }, 'kill during remove failed');
      });
      await this.init?.exitStatus;
    }
    await Promise.all([...this.execs.values()].map((p) => p.exitStatus));
    await this.runtime.delete(this.id);
    // A never-started init's FIFOs may still be in the making: the directory goes after them.
    await this.initFifos?.catch(() => undefined);
    fs.rmSync(this.bundleDir, { recursive: true, force: true });
    this.status = 'stopped';
  }

  /** Forgets a finished exec. */
  removeExec(execId: string): void {
    if (this.execSetups.has(execId)) throw new FailedPreconditionError(`exec ${execId} of container ${this.id} is still starting`);
    const proc = this.process(execId);
    if (!proc.exited) throw new FailedPreconditionError(`exec ${execId} of container ${this.id} is still running`);
    this.execs.delete(execId);
  }

  /** Pids in the container's cgroup (cgroup v2, cgroupfs layout). */
  pids(): number[] {
    if (!this.cgroupsPath || this.status === 'created' || this.status === 'stopped') return [];
    try {
      const text = fs.readFileSync(path.join('/sys/fs/cgroup', this.cgroupsPath, 'cgroup.procs'), 'utf8');
      return text.split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  }

  private processFiles(name: string): { pidFile: string; logFile: string; fifoPrefix: string } {
    const base = path.join(this.bundleDir, name);
    return { pidFile: `${base}.pid`, logFile: `${base}.log`, fifoPrefix: base };
  }

  /**
   * Once the init of a container without its own PID namespace has exited: SIGKILL
   * what it left (daemons, execs), so `crun run` returns and the exit is reported, as
   * runc's shim does. Nothing to do once the runtime returned by itself.
   */
  private async killLeftoversOnExit(init: GuestProcess): Promise<void> {
    const stop = new AbortController();
    void init.runtimeExited.then(() => stop.abort());
    if (!(await waitForExit(init.pid, { intervalMs: INIT_EXIT_POLL_MS, stop: stop.signal }))) return;
    this.initGone = true;
    try {
      await this.runtime.kill(this.id, 9, true);
      this.logger.info('init exited; killed the processes it left');
    } catch (err) {
      if (!(err instanceof NotFoundError)) this.logger.warn({ err }, 'cannot kill the processes the init left');
    }
  }

  /**
   * Waits for the runtime's pid file; if the runtime exits first, fails with its own
   * error. Told of the file by inotify on the bundle directory (a poll of the file under
   * TCG costs the runtime's start some of the one vCPU); the slow poll is the fallback.
   */
  private async awaitPid(proc: GuestProcess, files: { pidFile: string; logFile: string }, failure: string): Promise<number> {
    const deadline = Date.now() + PID_FILE_WAIT_MS;
    let wake: () => void = () => undefined;
    // The file is read once more after the runtime exited: a short-lived container's pid may be in it.
    let runtimeGone = false;
    void proc.runtimeExited.then(() => {
      runtimeGone = true;
      wake();
    });
    let watcher: fs.FSWatcher | undefined;
    try {
      watcher = fs.watch(path.dirname(files.pidFile), (_event, name) => {
        if (name === path.basename(files.pidFile)) wake();
      });
      watcher.on('error', () => undefined); // the poll goes on
    } catch {
      /* no inotify: the poll alone */
    }
    try {
      while (Date.now() < deadline) {
        // Registered before the read: a write between the two wakes this wait.
        const changed = new Promise<void>((resolve) => (wake = resolve));
        try {
          const pid = Number(fs.readFileSync(files.pidFile, 'utf8').trim());
          if (pid > 0) {
            proc.pid = pid;
            return pid;
          }
        } catch {
          /* not written yet */
        }
        if (proc.exited || runtimeGone) break;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([changed, new Promise((r) => (timer = setTimeout(r, PID_FILE_POLL_MS)))]);
        clearTimeout(timer);
      }
    } finally {
      watcher?.close();
    }
    const status = await Promise.race([proc.exitStatus, new Promise<undefined>((r) => setTimeout(() => r(undefined), 1000))]);
    const reason = OciRuntime.lastError(files.logFile) ?? (status === undefined ? 'no pid reported in time' : `the OCI runtime exited with status ${status}`);
    throw new InternalError(`${failure}: ${reason}`);
  }
}

function parseJson<T>(bytes: Buffer, what: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (err) {
    throw new InvalidArgumentError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function checkExecutable(what: string, rootfs: string, proc: OciProcess | undefined): void {
  const args = proc?.args ?? [];
  if (args.length === 0) throw new InvalidArgumentError(`${what}: the process has no command (process.args is empty and the image has no entrypoint)`);
  const env = proc?.env ?? [];
  if (!findExecutable(rootfs, args[0], env, proc?.cwd ?? '/')) {
    const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '(default)';
    throw new FailedPreconditionError(`${what}: executable '${args[0]}' not found in the image (PATH=${pathVar})`);
  }
}
