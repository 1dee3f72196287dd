import * as fs from 'fs';
import { CommandFailedError, runBounded } from './bounded-command';
import { DeadlineExceededError } from './errors';

describe('runBounded', () => {
  it('returns what the command printed', async () => {
    expect(await runBounded('sh', ['-c', 'echo out; echo err >&2'], 5000)).toEqual({ stdout: 'out\n', stderr: 'err\n' });
  });

  it('feeds the input to stdin and shows the command its argv0, env and working directory', async () => {
    const out = await runBounded('/bin/sh', ['-c', 'printf "%s %s %s " "$0" "$ONLY" "$(pwd)"; cat'], 5000, { input: 'from stdin', argv0: 'named', env: { ONLY: 'this' }, cwd: '/' });
    expect(out.stdout).toBe('named this / from stdin');
  });

  it('fails with the command line and its stderr', async () => {
    const err = await runBounded('sh', ['-c', 'echo no such thing >&2; exit 3'], 5000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandFailedError);
    expect((err as CommandFailedError).message).toBe("'sh -c echo no such thing >&2; exit 3' failed: no such thing");
    expect((err as CommandFailedError).exitCode).toBe(3);
  });

  it('kills a command that hangs past the bound, ignoring SIGTERM, and names it', async () => {
    const started = Date.now();
    const err = await runBounded('sh', ['-c', 'trap "" TERM; exec sleep 30'], 300).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect((err as Error).message).toMatch(/^'sh -c trap "" TERM; exec sleep 30' did not finish within 0.3 s and was killed/);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe('runBounded with a child that cannot die at once', () => {
  it('answers at the bound, not when the killed command is finally gone', async () => {
    // Here a grandchild keeps the output pipes open for 3 s after the kill; a child in
    // a FUSE request its server already read outlives SIGKILL the same way.
    const started = Date.now();
    const err = await runBounded('sh', ['-c', 'sleep 3 & exec sleep 30'], 300).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('kills what the command started too, not only the command', async () => {
    // A sleep of a length nobody else uses, so /proc tells it apart.
    const seconds = `30.${process.pid}${Date.now() % 1000}`;
    const marker = `sleep\0${seconds}\0`;
    const err = await runBounded('sh', ['-c', `sh -c 'sleep ${seconds}' & wait`], 300).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    const alive = (): boolean => fs.readdirSync('/proc').some((p) => /^\d+$/.test(p) && readCmdline(p) === marker);
    for (let i = 0; i < 50 && alive(); i++) await new Promise((r) => setTimeout(r, 20));
    expect(alive()).toBe(false);
  });

  it('says when the command cannot run at all', async () => {
    await expect(runBounded('/nonexistent/tool', ['x'], 1000)).rejects.toThrow("'/nonexistent/tool x' could not run: spawn /nonexistent/tool ENOENT");
  });
});

function readCmdline(pid: string): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}
