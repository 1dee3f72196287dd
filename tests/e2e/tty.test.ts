// Interactive terminals: the test is the user's terminal (a pseudo-terminal from
// node-pty) running ctr -t; keystrokes, window size and Ctrl-C must reach the guest.
import * as pty from 'node-pty';
import { HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { KataEnv, removeContainer, RUNTIME, startKataEnv } from './kata-env';

jest.setTimeout(300_000);

/** A ctr process on a terminal, with its screen output so far. */
class TerminalSession {
  private readonly term: pty.IPty;
  output = '';
  private readonly exitCode: Promise<number>;

  constructor(args: string[]) {
    this.term = pty.spawn('ctr', args, { name: 'xterm', cols: 100, rows: 30, cwd: '/', env: process.env as Record<string, string> });
    this.term.onData((data) => (this.output += data));
    this.exitCode = new Promise((resolve) => this.term.onExit(({ exitCode }) => resolve(exitCode)));
  }

  type(text: string): void {
    this.term.write(text);
  }

  resize(columns: number, rows: number): void {
    this.term.resize(columns, rows);
  }

  /** Waits until the output since `from` matches; returns the match. */
  async expect(pattern: RegExp, from = 0, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = this.output.slice(from).match(pattern);
      if (match) return match;
      if (Date.now() > deadline) throw new Error(`terminal never showed ${pattern}; screen so far:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The exit code of ctr, which must come within `timeoutMs`. */
  async exited(timeoutMs = 60_000): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`ctr did not exit within ${timeoutMs} ms; screen so far:\n${this.output}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exitCode, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    this.term.kill('SIGKILL');
  }
}

describe('terminals (ctr -t)', () => {
  let env: KataEnv;
  let baseline: HostSnapshot;

  beforeAll(async () => {
    env = await startKataEnv();
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });
  afterAll(async () => {
    await env?.stop();
  });

  const ctrArgs = (...args: string[]) => ['-a', env.containerd.address, '-n', env.containerd.namespace, ...args];

  it('ctr run -t: interactive shell, window size, Ctrl-C, exit code', async () => {
    const session = new TerminalSession(ctrArgs('run', '-t', '--rm', '--runtime', RUNTIME, env.image, 'tty-run', 'sh'));
    try {
      await session.expect(/\/ # /, 0, 240_000);
      let mark = session.output.length;
      session.type('stty size\r');
      expect((await session.expect(/^(\d+) (\d+)\r?$/m, mark)).slice(1)).toEqual(['30', '100']);

      mark = session.output.length;
      session.resize(120, 40);
      await new Promise((r) => setTimeout(r, 1000)); // SIGWINCH → ctr → ResizePty → guest
      session.type('stty size\r');
      expect((await session.expect(/^(\d+) (\d+)\r?$/m, mark)).slice(1)).toEqual(['40', '120']);

      session.type('sleep 100\r');
      // Ctrl-C must reach sleep, not the shell's line editor: wait until sleep runs.
      await waitForProcessCount(env, 'tty-run', 2);
      mark = session.output.length;
      session.type('\x03'); // Ctrl-C: SIGINT to the terminal's foreground job
      await session.expect(/\^C/, mark, 20_000);
      mark = session.output.length;
      session.type('echo "sleep ended with $?"\r');
      expect((await session.expect(/sleep ended with (\d+)/, mark, 20_000))[1]).toBe('130');

      session.type('exit 3\r');
      expect(await session.exited()).toBe(3);
    } finally {
      session.kill();
      // After a failure, remove what `--rm` would have, so the next test starts clean.
      await removeContainer((args) => env.containerd.ctr(args), 'tty-run');
    }
    expect(await waitForNoLeaks(baseline, 20_000)).toEqual([]);
  });

  it('ctr task exec -t into a running container, with keys typed before the process reads them', async () => {
    const id = 'tty-exec';
    try {
      expect((await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, env.image, id, 'sleep', '600'], { timeoutMs: 240_000 })).code).toBe(0);
      const session = new TerminalSession(ctrArgs('task', 'exec', '-t', '--exec-id', 'shell', id, 'sh'));
      try {
        await session.expect(/\/ # /);
        const mark = session.output.length;
        session.type('echo "answer $((6 * 7)) on $(tty)"\r');
        expect((await session.expect(/answer (\d+) on (\S+)/, mark)).slice(1, 2)).toEqual(['42']);
        session.type('exit 4\r');
        expect(await session.exited()).toBe(4);
      } finally {
        session.kill();
      }

      // The line is typed while the process sleeps: it waits in the guest's terminal,
      // where nothing but the process may read it (the agent's idle socket once could).
      const typeAhead = new TerminalSession(ctrArgs('task', 'exec', '-t', '--exec-id', 'type-ahead', id, 'sh', '-c', 'echo ready; sleep 2; read -r line; echo "got:$line"; exit 5'));
      try {
        await typeAhead.expect(/ready/);
        typeAhead.type('typed ahead\r');
        await typeAhead.expect(/got:typed ahead/);
        expect(await typeAhead.exited()).toBe(5);
      } finally {
        typeAhead.kill();
      }
      await env.containerd.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
      await new Promise((r) => setTimeout(r, 1000));
      expect((await env.containerd.ctr(['task', 'delete', id])).code).toBe(0);
      expect((await env.containerd.ctr(['containers', 'rm', id])).code).toBe(0);
    } finally {
      // After a failure, remove what is left, so the next test starts clean.
      await removeContainer((args) => env.containerd.ctr(args), id);
    }
    expect(await waitForNoLeaks(baseline, 20_000)).toEqual([]);
  });
});

/** Polls `ctr task ps` until the task has at least `count` processes. */
async function waitForProcessCount(env: KataEnv, id: string, count: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ps = await env.containerd.ctr(['task', 'ps', id]);
    const pids = ps.stdout.split('\n').slice(1).filter((l) => /^\s*\d+/.test(l));
    if (pids.length >= count) return;
    if (Date.now() > deadline) throw new Error(`task ${id} never had ${count} processes; ctr task ps said:\n${ps.stdout}${ps.stderr}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
