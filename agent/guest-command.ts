// Short commands the agent runs in the guest (ip, mount, date, mkfifo, crun kill/delete)
// through one long-lived shell instead of a fork of the agent each.
//
// Why: under TCG a fork of a Node process (its page tables copied, its pages made
// copy-on-write, all emulated) is costly: in a guest, `ip link show lo` took 13-19 ms
// from a 45 MiB Node process and 2 ms from a shell. A VM cloned from a template
// inherits the shell, since the agent starts it before it answers; a cloned pod's CRI
// start runs about a dozen such commands (same-run A/B: 2202 -> 1948 ms median).
//
// The shell only ever gets arguments in single quotes, so nothing in them is parsed.
// One command at a time: a call made while the shell is busy waits its turn, as long as
// the command running has run for less than QUEUE_WAIT_MS and the call waited less than
// that; otherwise (and before the shell started, or after it died) it runs as its own
// process, as every call did before, so a command that hangs holds up others for at
// most that long (it does keep the shell: later calls then fork at once).
// Why wait: the shim sends a pod's sandbox and network calls at once, and a call that
// forked because another held the shell would pay what the shell saves.
// Errors are execFile's: a command the shell cannot find fails as ENOENT, not as a
// command that ran and printed "not found".
import { ChildProcessWithoutNullStreams, execFile, spawn } from 'child_process';
import { randomBytes } from 'crypto';
import { promisify } from 'util';
import type { CommandOutput } from '../lib/bounded-command';
import { escapeRegExp } from '../lib/regexp';

const execFileAsync = promisify(execFile);

/** The command as a process of its own, as every call was before the shell. */
async function forked(file: string, args: string[]): Promise<CommandOutput> {
  const { stdout, stderr } = await execFileAsync(file, args);
  return { stdout, stderr };
}

/**
 * What a failed command rejects with, shaped as child_process.execFile's error
 * (callers read `stderr` and `message`): `code` is the exit status.
 */
export class CommandFailedError extends Error {
  constructor(
    readonly file: string,
    readonly args: string[],
    readonly code: number,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`Command failed: ${[file, ...args].join(' ')} (exit status ${code})\n${stderr}`);
    this.name = 'CommandFailedError';
  }
}

/** One argument, literal to a POSIX shell: single quotes, each ' written as '\''. */
export function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

interface Pending {
  marker: string;
  /** When the shell was given the call (Date.now()). */
  since: number;
  /** The shell said it is about to run the command (so a shell lost after this may have run it). */
  began?: boolean;
  file: string;
  args: string[];
  stdout?: string;
  status?: number;
  stderr?: string;
  resolve: (out: CommandOutput) => void;
  reject: (err: Error) => void;
}

const REVIVE_AFTER_MS = 5000;
/** How long a call waits for the busy shell (and a command may hold it before calls fork instead). */
export const QUEUE_WAIT_MS = 1000;
/** The shell's status for a command it cannot find. */
const COMMAND_NOT_FOUND = 127;

/** What the shell itself says of a command it cannot find: "/bin/sh: FILE: not found" (dash: "/bin/sh: 3: FILE: not found"). */
function shellNotFound(file: string): RegExp {
  return new RegExp(`^\\S+: (?:\\d+: )?${escapeRegExp(file)}: not found\n$`);
}

/**
 * Where the end marker's line ("\n<marker> <status>\n") begins in `out`, and the status;
 * undefined until all of that line is there. Found with indexOf, not a RegExp made per
 * call: V8 compiles each new pattern, which under TCG is slow; a profile of a VM
 * clone's agent had this handler's own time at 120 ms through a warm-up and a pod's start.
 */
export function endMarker(out: string, marker: string): { index: number; status: number } | undefined {
  const head = `\n${marker} `;
  for (let index = out.indexOf(head); index >= 0; index = out.indexOf(head, index + 1)) {
    const end = out.indexOf('\n', index + head.length);
    if (end < 0) return undefined; // the status line is not all here yet
    const status = out.slice(index + head.length, end);
    if (isDigits(status)) return { index, status: Number(status) };
  }
  return undefined;
}

/** Whether `text` is one or more ASCII digits (no RegExp, as above). */
function isDigits(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 48 || code > 57) return false;
  }
  return true;
}

/** How execFile fails for a missing binary (callers tell that apart from a command's own "not found"). */
function notFound(file: string): Error {
  return Object.assign(new Error(`spawn ${file} ENOENT`), { code: 'ENOENT', path: file });
}

/** A shell that runs commands one at a time, each framed by a marker unique to its call. */
export class CommandShell {
  private child?: ChildProcessWithoutNullStreams;
  private pending?: Pending;
  /** When start() last ran; undefined until it first did (tests never start one). */
  private startedAt?: number;
  private out = '';
  private err = '';
  /** Calls waiting for the shell, oldest first (runOrFork). */
  private readonly waiters: Array<() => void> = [];

  constructor(
    private readonly shell = '/bin/sh',
    private readonly reviveAfterMs = REVIVE_AFTER_MS,
    private readonly queueWaitMs = QUEUE_WAIT_MS,
  ) {}

  /** The shell's pid while it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the shell (a fork of the agent, once); a running one is kept. */
  start(): void {
    if (this.child) return;
    this.startedAt = Date.now();
    const child = spawn(this.shell, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    // A shell that died may leave children writing into the old pipes: not the new shell's calls.
    child.stdout.on('data', (text: string) => this.child === child && this.onOutput('out', text));
    child.stderr.on('data', (text: string) => this.child === child && this.onOutput('err', text));
    // A write to a shell that died fails with EPIPE; the exit below reports it.
    child.stdin.on('error', () => undefined);
    child.once('error', (e) => this.lost(child, `cannot start ${this.shell}: ${e.message}`));
    child.once('exit', (code, signal) => this.lost(child, `the command shell exited (${signal ?? `status ${code}`})`));
  }

  /**
   * Starts the shell again if it was started once and has died since (someone in the
   * guest killed it): at most every few seconds, so a shell that cannot live does not
   * add a fork to every call.
   */
  revive(): void {
    if (!this.child && this.startedAt !== undefined && Date.now() - this.startedAt >= this.reviveAfterMs) this.start();
  }

  /** Whether a call now would run in the shell. */
  get idle(): boolean {
    return this.child !== undefined && this.pending === undefined;
  }

  /** Runs `file args` in the shell, with stdin from /dev/null; the caller checks `idle` first. */
  run(file: string, args: string[]): Promise<CommandOutput> {
    const child = this.child;
    if (!child || this.pending) return Promise.reject(new Error('the command shell is not idle'));
    for (const arg of [file, ...args]) {
      if (arg.includes('\0')) {
        this.wakeNext(); // this call's turn ends here: the next waiting one goes on
        return Promise.reject(new TypeError(`a command argument holds a NUL byte: ${JSON.stringify(arg)}`));
      }
    }
    // Unique per call (not secret: a clone draws the same sequence as its template's agent).
    const marker = `katats-${randomBytes(16).toString('hex')}`;
    return new Promise<CommandOutput>((resolve, reject) => {
      this.pending = { marker, since: Date.now(), file, args, resolve, reject };
      this.out = '';
      this.err = '';
      // First "<marker>." (the shell read the call), then the command; the leading newline
      // of the end markers ends any last line the command left open, and is taken off again.
      const line = `printf '%s.\\n' ${marker}; ${[file, ...args].map(shellQuote).join(' ')} </dev/null; printf '\\n%s %d\\n' ${marker} "$?"; printf '\\n%s\\n' ${marker} >&2\n`;
      child.stdin.write(line);
    });
  }

  /**
   * Runs `file args` in the shell, after the calls waiting before it (see the top of
   * this file for how long); else as a process of its own.
   */
  async runOrFork(file: string, args: string[]): Promise<CommandOutput> {
    const deadline = Date.now() + this.queueWaitMs;
    while (!this.idle && this.worthWaiting(deadline)) await this.turn(deadline);
    if (this.idle) return this.run(file, args);
    this.revive();
    return forked(file, args);
  }

  /** The shell runs a command that began less than queueWaitMs ago, and the caller's wait has not run out. */
  private worthWaiting(deadline: number): boolean {
    const now = Date.now();
    return this.child !== undefined && this.pending !== undefined && now - this.pending.since < this.queueWaitMs && now < deadline;
  }

  /** Settles when the shell is done with its command (this caller's turn), or at `deadline`. */
  private turn(deadline: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        const at = this.waiters.indexOf(wake);
        if (at >= 0) this.waiters.splice(at, 1);
        resolve();
      }, Math.max(0, deadline - Date.now()));
      const wake = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push(wake);
    });
  }

  /** The shell is free (or gone): the longest waiting call goes on. */
  private wakeNext(): void {
    this.waiters.shift()?.();
  }

  /** Ends the shell (its stdin closes, so it exits). */
  stop(): void {
    this.child?.stdin.end();
  }

  private onOutput(stream: 'out' | 'err', text: string): void {
    const pending = this.pending;
    if (!pending) return; // nothing is running: a stray line from a backgrounded process
    if (stream === 'out') {
      this.out += text;
      if (!pending.began) {
        const go = `${pending.marker}.\n`;
        const at = this.out.indexOf(go);
        if (at < 0) return;
        pending.began = true;
        this.out = this.out.slice(at + go.length);
      }
      const found = endMarker(this.out, pending.marker);
      if (found) {
        pending.stdout = this.out.slice(0, found.index);
        pending.status = found.status;
        this.out = '';
      }
    } else {
      this.err += text;
      const at = this.err.indexOf(`\n${pending.marker}\n`);
      if (at >= 0) {
        pending.stderr = this.err.slice(0, at);
        this.err = '';
      }
    }
    if (pending.status === undefined || pending.stderr === undefined) return;
    this.pending = undefined;
    this.wakeNext();
    const { file, args, status, stdout = '', stderr } = pending;
    if (status === 0) pending.resolve({ stdout, stderr });
    else if (status === COMMAND_NOT_FOUND && stdout === '' && shellNotFound(file).test(stderr)) pending.reject(notFound(file));
    else pending.reject(new CommandFailedError(file, args, status, stdout, stderr));
  }

  private lost(child: ChildProcessWithoutNullStreams, why: string): void {
    if (this.child !== child) return;
    this.child = undefined;
    const pending = this.pending;
    this.pending = undefined;
    // Each waiting call forks now: there is no shell to wait for.
    for (const wake of this.waiters.splice(0)) wake();
    if (!pending) return;
    // The shell died before it read the call (it was idle when the call was made): the
    // command runs as its own process, as it would have. Once begun, it may have run.
    if (!pending.began) {
      forked(pending.file, pending.args).then(pending.resolve, pending.reject);
      return;
    }
    const said = (pending.stderr ?? this.err).trim();
    pending.reject(new Error(`${why} while running ${[pending.file, ...pending.args].join(' ')}${said ? `: ${said}` : ''}`));
  }
}

/** The agent's shell; main() starts it. Until then, whenever it is gone, and when it is held too long, calls fork. */
export const commandShell = new CommandShell();

/**
 * Runs a short command (no stdin) and returns its output; rejects as execFile does.
 * Through the agent's shell, in turn (CommandShell.runOrFork), else as a process of its own.
 */
export function runCommand(file: string, args: string[]): Promise<CommandOutput> {
  return commandShell.runOrFork(file, args);
}
