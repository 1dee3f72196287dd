// Every external command the daemon runs (mount, umount, nsenter, ip, tc, iptables)
// gets a bound: one hung filesystem or netlink call must fail that one request with
// a message naming what hung, not stall the pod's whole daemon. The child is
// SIGKILLed at the bound (a FUSE or NFS wait is killable, never interruptible only).
import { execFile } from 'child_process';
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

export function runBounded(command: string, args: string[], timeoutMs: number): Promise<CommandOutput> {
  const line = [command, ...args].join(' ');
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve({ stdout, stderr });
      const failure = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: number | string };
      if (failure.killed && failure.signal === 'SIGKILL') {
        return reject(new DeadlineExceededError(`'${line}' did not finish within ${timeoutMs / 1000} s and was killed (a hung filesystem or network namespace?)`));
      }
      reject(new CommandFailedError(command, stderr.trim(), failure.code, `'${line}' failed: ${stderr.trim() || failure.message}`));
    });
  });
}
