// Every external command the daemon runs (mount, umount, stat, nsenter, ip, tc,
// iptables) gets a bound: one hung filesystem or netlink call must fail that one
// request with a message naming what hung, not stall the pod's whole daemon. At the
// bound the child is SIGKILLed and the caller is answered at once: a child stuck in a
// FUSE request its server already read does not die even of SIGKILL until the server
// answers, so waiting for its exit could be forever. It is reaped whenever it ends.
import { spawn } from 'child_process';
import { DeadlineExceededError } from './errors';

export interface CommandOutput {
  stdout: string;
  stderr: string;
}

/** A command that exited non-zero or could not start; `stderr` is what it said. */
export class CommandFailedError extends Error {
  constructor(readonly command: string, readonly stderr: string, readonly exitCode: number | string | undefined, message: string) {
    super(message);
  }
}

const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

/** A bound on each ip/tc/iptables/sysctl call in a network namespace (a wedged netlink or xtables lock). */
export const NETNS_COMMAND_TIMEOUT_MS = 20_000;

export interface BoundedOptions {
  /** The whole environment (default: the daemon's). */
  env?: NodeJS.ProcessEnv;
  /** Working directory (default: the daemon's). */
  cwd?: string;
  /** Written to the command's stdin, which is then closed (without it, stdin ends at once). */
  input?: string | Buffer;
  /** argv[0] as the command sees it (default: `command`). */
  argv0?: string;
  /**
   * An open fd of ours the command gets as its fd 3 (`/proc/self/fd/3`): its own
   * reference from the moment it starts, so closing ours meanwhile changes nothing.
   */
  fd3?: number;
}

export function runBounded(command: string, args: string[], timeoutMs: number, opts: BoundedOptions = {}): Promise<CommandOutput> {
  const line = [command, ...args].join(' ');
  return new Promise((resolve, reject) => {
    // Its own process group, so the bound kills what it started too (a hook script's
    // children would otherwise outlive it as root on the host, holding its output open).
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe', ...(opts.fd3 === undefined ? [] : [opts.fd3])], env: opts.env ?? process.env, cwd: opts.cwd, argv0: opts.argv0, detached: true });
    // A command may exit without reading its input: EPIPE is not its failure.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(opts.input);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let bytes = 0;
    let settled = false;
    const finish = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= MAX_OUTPUT_BYTES) into.push(chunk);
    };
    child.stdout!.on('data', collect(out));
    child.stderr!.on('data', collect(err));
    const timer = setTimeout(() => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL'); // the group is gone already; the child may not be
      }
      // Not waiting for 'close': the streams are dropped, the process is reaped later.
      child.stdin!.destroy();
      child.stdout!.destroy();
      child.stderr!.destroy();
      finish(() => reject(new DeadlineExceededError(`'${line}' did not finish within ${timeoutMs / 1000} s and was killed (a hung filesystem or network namespace?)`)));
    }, timeoutMs);
    child.on('error', (e) => finish(() => reject(new CommandFailedError(command, '', (e as NodeJS.ErrnoException).code, `'${line}' could not run: ${e.message}`))));
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) return finish(() => resolve({ stdout, stderr }));
      const status = code ?? signal ?? undefined;
      finish(() => reject(new CommandFailedError(command, stderr.trim(), status, `'${line}' failed: ${stderr.trim() || `exit status ${status}`}`)));
    });
  });
}
