// The debug console's shell: `/bin/sh -l` on its own pseudo-terminal, in the guest's
// root namespaces (a child of the agent, not of crun), with a clean login-like
// environment rather than the agent's.
import type { IPty } from 'node-pty';

/** A shell on a terminal; output arrives as bytes, whatever it is. */
export interface DebugShell {
  /** Exit status as a shell reports it: the code, or 128 + signal number. */
  readonly exited: Promise<number>;
  onData(listener: (data: Buffer) => void): void;
  write(data: Buffer): void;
  /** Flow control: stop reading the terminal until resume(). */
  pause(): void;
  resume(): void;
  /** What a modem hang-up does: SIGHUP, and SIGKILL if the shell outlives `graceMs`. */
  hangUp(graceMs?: number): void;
}

export interface DebugShellOptions {
  command: string[];
  env: Record<string, string>;
  cwd: string;
  cols?: number;
  rows?: number;
}

export const DEFAULT_SHELL: DebugShellOptions = {
  command: ['/bin/sh', '-l'],
  // The client cannot send its own TERM over the raw port; xterm is what most are.
  env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', TERM: 'xterm', SHELL: '/bin/sh', USER: 'root', LOGNAME: 'root' },
  cwd: '/root',
};

const HANGUP_GRACE_MS = 2000;

export function spawnDebugShell(options: DebugShellOptions = DEFAULT_SHELL): DebugShell {
  // Loaded on first use: a native addon the rest of the agent can live without.
  const pty = require('node-pty') as typeof import('node-pty');
  const [file, ...args] = options.command;
  // node-pty's spawn makes the child a session leader with the terminal as its
  // controlling terminal, so job control and Ctrl-C work. encoding null: Buffers.
  const term: IPty = pty.spawn(file, args, { name: options.env.TERM ?? 'xterm', cols: options.cols ?? 80, rows: options.rows ?? 24, cwd: options.cwd, env: options.env, encoding: null });
  // node-pty rethrows a terminal error other than EIO when nobody else listens for it,
  // which would end the agent (and the VM); the shell's exit is reported regardless.
  (term as unknown as NodeJS.EventEmitter).on('error', () => undefined);
  let done = false;
  const exited = new Promise<number>((resolve) => {
    term.onExit(({ exitCode, signal }) => {
      done = true;
      resolve(signal ? 128 + signal : exitCode);
    });
  });
  return {
    exited,
    onData: (listener) => term.onData((data) => listener(data as unknown as Buffer)),
    // node-pty passes what it is given to the terminal's socket; its typing says string.
    write: (data) => term.write(data as unknown as string),
    pause: () => term.pause(),
    resume: () => term.resume(),
    hangUp(graceMs = HANGUP_GRACE_MS) {
      if (done) return;
      term.kill('SIGHUP');
      // Never after the exit was reported: by then the pid may be someone else's.
      const timer = setTimeout(() => !done && term.kill('SIGKILL'), graceMs);
      void exited.then(() => clearTimeout(timer));
    },
  };
}
