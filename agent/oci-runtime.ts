// Thin wrapper over the guest's OCI runtime (crun). Containers run in the foreground
// (`crun run`) as children of the agent, so the agent sees every exit status itself:
// a detached `crun create` would reparent the container to PID 1, which cannot tell
// us how it ended.
import * as fs from 'fs';
import { NotFoundError } from '../lib/errors';
import { ProcessHandle } from './process-handle';
import { spawnOnPipes, StdioOwner } from './stdio-pipes';
import { spawnOnTerminal } from './terminal';
import { runCommand } from './guest-command';


/**
 * How crun answers a kill that lost the race with the container's own end: its state
 * is gone (`…/status: No such file or directory`, `container does not exist`) or its
 * process is (`open pidfd: Invalid argument`, `No such process`).
 */
const CONTAINER_GONE = /status`?: No such file or directory|does not exist|open pidfd|No such process/i;

export interface RunOptions {
  bundleDir: string;
  pidFile: string;
  logFile: string;
  stdin: boolean;
  /**
   * Run on a pseudo-terminal the agent owns. The runtime then needs no console socket
   * (receiving its fd would need SCM_RIGHTS, which Node lacks): the spec says
   * terminal=false, the process inherits the terminal as its stdio, and the
   * container's command is prefixed with the ctty helper (see GuestContainer).
   */
  terminal: boolean;
  /** Where the stdio FIFOs are made, when not on a terminal (see stdio-pipes). */
  fifoPrefix: string;
  /** Owner of the process's stdio pipes; root when absent. */
  stdioOwner?: StdioOwner;
  /** The stdio FIFOs, when made ahead (stdio-pipes' makeFifos). */
  fifosMade?: Promise<void>;
}

export class OciRuntime {
  private versionLine: Promise<string> | undefined;

  constructor(readonly binary: string, private readonly stateRoot: string) {}

  run(id: string, opts: RunOptions): Promise<ProcessHandle> {
    return this.spawnProcess(['run', '--bundle', opts.bundleDir, '--pid-file', opts.pidFile, id], opts);
  }

  /** `crun exec` in the foreground: its exit status is the process's. */
  exec(id: string, opts: Omit<RunOptions, 'bundleDir'> & { processFile: string }): Promise<ProcessHandle> {
    return this.spawnProcess(['exec', '--process', opts.processFile, '--pid-file', opts.pidFile, id], opts);
  }

  private async spawnProcess(command: string[], opts: Omit<RunOptions, 'bundleDir' | 'pidFile'>): Promise<ProcessHandle> {
    const args = ['--root', this.stateRoot, `--log=file:${opts.logFile}`, ...command];
    if (opts.terminal) return spawnOnTerminal(this.binary, args);
    return spawnOnPipes(this.binary, args, { fifoPrefix: opts.fifoPrefix, stdin: opts.stdin, owner: opts.stdioOwner, fifosMade: opts.fifosMade });
  }

  async pause(id: string): Promise<void> {
    await this.command(['pause', id]);
  }

  async resume(id: string): Promise<void> {
    await this.command(['resume', id]);
  }

  async update(id: string, resourcesFile: string): Promise<void> {
    await this.command(['update', '--resources', resourcesFile, id]);
  }

  /** Signals the container's init, or with `all` every process in its cgroup; NotFound once it is gone. */
  async kill(id: string, signal: number, all: boolean): Promise<void> {
    try {
      await this.command(['kill', ...(all ? ['--all'] : []), id, String(signal)]);
    } catch (err) {
      if (CONTAINER_GONE.test((err as Error).message)) throw new NotFoundError(`container ${id} is not running (${(err as Error).message})`, { cause: err });
      throw err;
    }
  }

  /** Removes the runtime's state for `id`; a container it no longer knows is fine. */
  async delete(id: string): Promise<void> {
    try {
      await this.command(['delete', '--force', id]);
    } catch (err) {
      if (!/does not exist|not found|No such file/i.test((err as Error).message)) throw err;
    }
  }

  /**
   * The runtime's first `--version` line, asked once: the binary is on the read-only
   * rootfs. (Every GetGuestDetails wants it; a VM clone then inherits the template's
   * answer instead of starting a process while its translated code is still cold.)
   */
  async version(): Promise<string> {
    const asked = (this.versionLine ??= runCommand(this.binary, ['--version']).then(({ stdout }) => stdout.split('\n')[0] ?? ''));
    try {
      return await asked;
    } catch (err) {
      if (this.versionLine === asked) this.versionLine = undefined; // asked again next time
      throw err;
    }
  }

  /** The runtime's own error message from its log file, for failures before exec. */
  static lastError(logFile: string): string | undefined {
    let text: string;
    try {
      text = fs.readFileSync(logFile, 'utf8');
    } catch {
      return undefined;
    }
    const lines = text.trim().split('\n').filter(Boolean);
    const last = lines[lines.length - 1];
    if (!last) return undefined;
    try {
      const parsed = JSON.parse(last) as { msg?: string };
      return parsed.msg ?? last;
    } catch {
      return last;
    }
  }

  /** Runs a short runtime command; its stderr becomes the error message. */
  private async command(args: string[]): Promise<void> {
    try {
      await runCommand(this.binary, ['--root', this.stateRoot, ...args]);
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`${this.binary} ${args.join(' ')}: ${(e.stderr || e.message).trim()}`);
    }
  }
}
