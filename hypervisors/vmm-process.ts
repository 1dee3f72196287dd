// One child process of a REST-driven VMM (or its helper daemons): spawned with its
// stderr kept for error messages, its exit observed once, start-up steps that fail
// with the process's own words when it dies, and the stop sequence the Hypervisor
// interface promises (guest power-off, then a polite request, then SIGKILL).
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { HypervisorError, UnavailableError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { VmExit } from './hypervisor';
import { unprivilegedCommand, vmmCommand } from './vmm-launch';
import { TailBuffer, VMM_STDERR_TAIL_BYTES } from './tail-buffer';

/** How long a VMM may take to quit once asked, before SIGKILL. */
const QUIT_GRACE_MS = 3000;
/** A VMM dying mid-request resets the connection a moment before its exit is reaped. */
const EXIT_REAP_MS = 1000;
const POLL_MS = 20;
/** stderr chunks logged per process and minute; the rest are counted. */
const STDERR_LOG_LINES_PER_MINUTE = 20;

/**
 * A gate that opens `limit` times per `windowMs`; when a window with refusals ends (at
 * the next call), `onSuppressed` is told how many there were.
 */
export function rateLimited(limit: number, windowMs: number, onSuppressed: (count: number) => void, now: () => number = Date.now): () => boolean {
  let windowStart = now();
  let used = 0;
  let suppressed = 0;
  return () => {
    if (now() - windowStart >= windowMs) {
      if (suppressed > 0) onSuppressed(suppressed);
      windowStart = now();
      used = 0;
      suppressed = 0;
    }
    if (used < limit) {
      used++;
      return true;
    }
    suppressed++;
    return false;
  };
}

export interface VmmProcessOptions {
  /** Names the process in messages, e.g. 'cloud-hypervisor'. */
  name: string;
  binaryPath: string;
  args: string[];
  logger: Logger;
  /** File that receives stdout (Firecracker prints the guest's serial console there). */
  stdoutFile?: string;
  /** Run inside this network namespace (the pod's), where the VMM opens its taps. */
  netnsPath?: string;
  /** 'vmm' (default): vmmCommand; 'unprivileged': unprivilegedCommand (netnsPath is then ignored). */
  confinement?: 'vmm' | 'unprivileged';
  /** Its working directory (entered while still root: an unprivileged daemon may not be able to reach it by path). */
  cwd?: string;
}

export class VmmProcess {
  readonly exited: Promise<VmExit>;
  private exit: VmExit | undefined;
  /** The stderr kept for messages; a chatty VMM must not grow the shim's memory. */
  private readonly stderr = new TailBuffer(VMM_STDERR_TAIL_BYTES);

  private constructor(private readonly child: ChildProcess, private readonly options: VmmProcessOptions) {
    this.exited = new Promise((resolve) => {
      const settle = (exit: VmExit): void => {
        this.exit ??= exit;
        options.logger.info(exit, `${options.name} exited`);
        resolve(this.exit);
      };
      child.once('exit', (code, signal) => settle({ code, signal }));
      child.on('error', (err) => {
        options.logger.warn({ err: err.message }, `${options.name} process error`);
        // Without a pid it never started (e.g. the binary vanished after the check):
        // no 'exit' will follow, so this is its end.
        if (child.pid !== undefined) return;
        this.stderr.push(Buffer.from(`cannot run ${options.binaryPath}: ${err.message}`));
        settle({ code: null, signal: null });
      });
    });
    const logStderr = rateLimited(STDERR_LOG_LINES_PER_MINUTE, 60_000, (suppressed) =>
      options.logger.warn({ suppressed }, `${options.name} stderr: ${suppressed} more chunks in the last minute not logged`),
    );
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr.push(chunk);
      // A guest can make a VMM or virtiofsd complain once per request it sends.
      if (logStderr()) options.logger.warn({ stderr: chunk.toString().trim() }, `${options.name} stderr`);
    });
  }

  static spawn(options: VmmProcessOptions): VmmProcess {
    const binary = resolveExecutable(options.binaryPath);
    if (!binary) throw new HypervisorError(`${options.name} binary '${options.binaryPath}' is not an executable file${options.binaryPath.includes('/') ? '' : ' on PATH'}; install it or configure its path`);
    options.logger.info({ binary, args: options.args, netns: options.netnsPath }, `starting ${options.name}`);
    const stdout = options.stdoutFile ? fs.openSync(options.stdoutFile, 'a') : 'ignore';
    try {
      // nsenter joins the netns and execs the VMM: same pid, and the VMM sees the taps.
      const [command, args] = options.confinement === 'unprivileged' ? unprivilegedCommand(binary, options.args) : vmmCommand(binary, options.args, { netnsPath: options.netnsPath });
      // Own process group: a signal meant for the shim's group does not stop the VM.
      const child = spawn(command, args, { stdio: ['ignore', stdout, 'pipe'], detached: true, cwd: options.cwd });
      return new VmmProcess(child, options);
    } finally {
      if (typeof stdout === 'number') fs.closeSync(stdout);
    }
  }

  get pid(): number | undefined {
    return this.exit ? undefined : this.child.pid;
  }

  get hasExited(): boolean {
    return this.exit !== undefined;
  }

  /** Settles like `work`, unless the process exits first: then fails with its stderr. */
  async guard<T>(work: Promise<T>, step: string): Promise<T> {
    const death = this.exited.then((exit): never => {
      throw this.deathError(step, exit);
    });
    try {
      return await Promise.race([work, death]);
    } catch (err) {
      if (err instanceof UnavailableError && (await this.exitsWithin(EXIT_REAP_MS))) throw this.deathError(step, await this.exited);
      throw err;
    }
  }

  /** Calls `probe` until the API answers at all (any answer but "cannot connect"). */
  waitForApi<T>(probe: () => Promise<T>, timeoutMs: number): Promise<T> {
    return this.poll(timeoutMs, 'its API to answer', async () => {
      try {
        return { value: await probe() };
      } catch (err) {
        if (err instanceof UnavailableError) return undefined;
        throw err;
      }
    });
  }

  /** Waits for a daemon's listening socket to appear (connecting could take its only client slot). */
  /**
   * Waits until the daemon listens on `socketPath`. The file appears at bind(), a moment
   * before listen(): a VMM that connected in between would be refused and give up, so the
   * socket must also be listening (/proc/net/unix) before the VMM is started.
   */
  async waitForSocketFile(socketPath: string, timeoutMs: number, opts: { unixTable?: string; boundAs?: string } = {}): Promise<void> {
    // The table names a socket as it was bound: relative, if the daemon bound it so.
    const listed = opts.boundAs ?? socketPath;
    await this.poll(timeoutMs, `${socketPath} to be listened on`, async () => (isSocket(socketPath) && (await listeningUnixSocket(listed, opts.unixTable)) ? { value: true } : undefined));
  }

  /** Retries `attempt` until it yields a value, the deadline passes or the process exits. */
  private poll<T>(timeoutMs: number, what: string, attempt: () => Promise<{ value: T } | undefined>): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    const polling = (async () => {
      while (!this.exit) {
        const result = await attempt();
        if (result) return result.value;
        if (Date.now() > deadline) throw new HypervisorError(`${this.options.name} start-up: gave up waiting for ${what} after ${timeoutMs} ms`);
        await delay(POLL_MS);
      }
      throw this.deathError('start-up', await this.exited);
    })();
    return this.guard(polling, 'start-up');
  }

  /**
   * Gives the guest `graceMs` to power off (the VMM then exits by itself), then calls
   * `askToQuit`, then kills the process if it is still there after QUIT_GRACE_MS.
   */
  async stop(graceMs: number, askToQuit: () => Promise<unknown>): Promise<void> {
    if (await this.exitsWithin(graceMs)) return;
    this.options.logger.info(`${this.options.name} still runs after ${graceMs} ms; asking it to quit`);
    await askToQuit().catch((err: Error) => this.options.logger.warn({ err: err.message }, `asking ${this.options.name} to quit failed`));
    if (await this.exitsWithin(QUIT_GRACE_MS)) return;
    this.options.logger.warn(`${this.options.name} did not quit; killing it`);
    this.signal('SIGKILL');
    await this.exited;
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.exit) this.child.kill(signal);
  }

  async exitsWithin(ms: number): Promise<boolean> {
    if (this.exit || ms <= 0) return this.hasExited;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    const exited = await Promise.race([this.exited.then(() => true), timeout]);
    clearTimeout(timer);
    return exited;
  }

  private deathError(step: string, exit: VmExit): HypervisorError {
    const status = exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
    const words = this.stderr.tail().toString().trim() || (this.options.stdoutFile ? tailOfFile(this.options.stdoutFile, 1000).trim() : '');
    return new HypervisorError(`${this.options.name} exited during ${step} (${status})${words ? `: ${words}` : ' without a message'}`);
  }
}

/** The last `maxBytes` of a file, or '' if it cannot be read (not written yet). */
export function tailOfFile(file: string, maxBytes: number): string {
  try {
    const text = fs.readFileSync(file);
    return text.subarray(Math.max(0, text.length - maxBytes)).toString();
  } catch {
    return '';
  }
}

/** `binary` if it names an executable file, else its first match on PATH. */
export function resolveExecutable(binary: string): string | undefined {
  const candidates = binary.includes('/') ? [binary] : (process.env.PATH ?? '').split(':').filter(Boolean).map((dir) => path.join(dir, binary));
  return candidates.find((file) => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.statSync(file).isFile();
    } catch {
      return false;
    }
  });
}

/** Creates `workDir` and removes sockets a previous run left: the VMMs refuse to bind over them. */
export function prepareWorkDir(workDir: string, sockets: string[]): void {
  fs.mkdirSync(workDir, { recursive: true });
  for (const socket of sockets) {
    fs.mkdirSync(path.dirname(socket), { recursive: true });
    fs.rmSync(socket, { force: true });
  }
}

/** __SO_ACCEPTCON in /proc/net/unix's Flags column: the socket listens. */
const SO_ACCEPTCON = 0x10000;

/**
 * Whether a socket bound at `socketPath` listens, as this network namespace's
 * /proc/net/unix says (columns: Num RefCount Protocol Flags Type St Inode Path). Where
 * that table cannot be read, the socket file is taken as enough.
 */
export async function listeningUnixSocket(socketPath: string, table = '/proc/net/unix'): Promise<boolean> {
  let text: string;
  try {
    text = await fs.promises.readFile(table, 'utf8');
  } catch {
    return true;
  }
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length >= 8 && fields.slice(7).join(' ') === socketPath && (parseInt(fields[3], 16) & SO_ACCEPTCON) !== 0) return true;
  }
  return false;
}

function isSocket(file: string): boolean {
  try {
    return fs.statSync(file).isSocket();
  } catch {
    return false;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
