import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CommandFailedError, CommandShell, endMarker, runCommand, shellQuote } from './guest-command';

/** The commands run by the host's /bin/sh here; the guest's is busybox sh, and both are POSIX. */
describe('CommandShell', () => {
  let shell: CommandShell;
  beforeEach(() => {
    shell = new CommandShell('/bin/sh', 0);
    shell.start();
  });
  afterEach(() => shell.stop());

  it("runs commands as the shell's children and returns their output exactly", async () => {
    const pid = shell.pid;
    expect((await shell.run('sh', ['-c', 'echo $PPID'])).stdout).toBe(`${pid}\n`);
    expect(await shell.run('printf', ['a\nb'])).toEqual({ stdout: 'a\nb', stderr: '' });
    expect(await shell.run('sh', ['-c', 'echo out; echo err >&2; printf tail >&2'])).toEqual({ stdout: 'out\n', stderr: 'err\ntail' });
    expect(shell.pid).toBe(pid);
  });

  it('passes every argument literally, whatever the shell would otherwise parse', async () => {
    const never = `/tmp/katats-never-${process.pid}`;
    const args = ["it's", `$(touch ${never})`, '`id`', 'a; echo b', '*', '"q"', 'line\nbreak', '\\', '', ' spaced ', '$HOME', "'", "''"];
    const { stdout } = await shell.run('printf', ['%s|', ...args]);
    expect(stdout).toBe(args.map((a) => `${a}|`).join(''));
    expect(fs.existsSync(never)).toBe(false);
    expect(shellQuote("a'b")).toBe(`'a'\\''b'`);
  });

  it('reports a failure with its exit status and stderr, and goes on', async () => {
    const failed = await shell.run('sh', ['-c', 'echo partial; echo "no such device" >&2; exit 3']).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(CommandFailedError);
    expect(failed).toMatchObject({ code: 3, stdout: 'partial\n', stderr: 'no such device\n' });
    expect((failed as Error).message).toContain('no such device');
    // As execFile says it: a binary that is not there is ENOENT, not a command that printed "not found".
    await expect(shell.run('/nonexistent/cmd', [])).rejects.toMatchObject({ code: 'ENOENT', message: 'spawn /nonexistent/cmd ENOENT' });
    await expect(shell.run('sh', ['-c', 'echo "container not found" >&2; exit 127'])).rejects.toMatchObject({ code: 127, stderr: 'container not found\n' });
    expect((await shell.run('echo', ['still here'])).stdout).toBe('still here\n');
  });

  it('gives a command /dev/null for stdin, not the commands that follow', async () => {
    expect(await shell.run('cat', [])).toEqual({ stdout: '', stderr: '' });
    expect((await shell.run('echo', ['next'])).stdout).toBe('next\n');
  });

  it('refuses a NUL byte in an argument instead of cutting it', async () => {
    await expect(shell.run('echo', ['a\0b'])).rejects.toThrow(/NUL byte/);
    expect(shell.idle).toBe(true);
  });

  it('is busy while a command runs, so another call does not wait behind it', async () => {
    const slow = shell.run('sleep', ['0.3']);
    expect(shell.idle).toBe(false);
    await expect(shell.run('echo', ['x'])).rejects.toThrow(/not idle/);
    await slow;
    expect(shell.idle).toBe(true);
  });

  it('runs calls made while it is busy in the shell too, each in its turn', async () => {
    const queued = new CommandShell('/bin/sh', 0, 5000);
    queued.start();
    try {
      const ends: string[] = [];
      const call = (name: string, script: string) => queued.runOrFork('sh', ['-c', script]).then((out) => (ends.push(name), out.stdout));
      const calls = [call('a', 'sleep 0.3; echo $PPID'), call('b', 'echo $PPID'), call('c', 'echo $PPID')];
      expect(await Promise.all(calls)).toEqual([`${queued.pid}\n`, `${queued.pid}\n`, `${queued.pid}\n`]);
      expect(ends).toEqual(['a', 'b', 'c']);
    } finally {
      queued.stop();
    }
  });

  it('forks a call that would wait too long: at once behind a command that has held the shell that long, else once its own wait ran out', async () => {
    const queued = new CommandShell('/bin/sh', 0, 1000);
    queued.start();
    try {
      const hung = queued.runOrFork('sleep', ['3']);
      const early = Date.now();
      // Behind a command that began just now: waits its 1 s, then forks.
      expect((await queued.runOrFork('sh', ['-c', 'echo $PPID'])).stdout).toBe(`${process.pid}\n`);
      expect(Date.now() - early).toBeGreaterThanOrEqual(950);
      // The command has now held the shell longer than that: the next call forks without waiting its second.
      const late = Date.now();
      expect((await queued.runOrFork('sh', ['-c', 'echo $PPID'])).stdout).toBe(`${process.pid}\n`);
      expect(Date.now() - late).toBeLessThan(900);
      await hung;
      expect((await queued.runOrFork('sh', ['-c', 'echo $PPID'])).stdout).toBe(`${queued.pid}\n`);
    } finally {
      queued.stop();
    }
  });

  it('forks the waiting calls when the shell dies under the command before them', async () => {
    const queued = new CommandShell('/bin/sh', 0, 5000);
    queued.start();
    const running = queued.runOrFork('sleep', ['2']).catch((e: Error) => e);
    const waiting = queued.runOrFork('sh', ['-c', 'echo $PPID']);
    await new Promise((r) => setTimeout(r, 100));
    process.kill(queued.pid as number, 'SIGKILL');
    try {
      expect((await waiting).stdout).toBe(`${process.pid}\n`);
      expect(await running).toBeInstanceOf(Error);
    } finally {
      queued.stop(); // the shell the forking call started again (revive)
    }
  });

  it('lets the next waiting call go on when the one before it is refused (a NUL byte) at its turn', async () => {
    const queued = new CommandShell('/bin/sh', 0, 5000);
    queued.start();
    try {
      const slow = queued.runOrFork('sleep', ['0.2']);
      const refused = queued.runOrFork('echo', ['a\0b']).catch((e: Error) => e);
      const started = Date.now();
      const next = queued.runOrFork('sh', ['-c', 'echo $PPID']);
      await slow;
      expect(await refused).toBeInstanceOf(TypeError);
      expect((await next).stdout).toBe(`${queued.pid}\n`);
      expect(Date.now() - started).toBeLessThan(4000); // not its whole wait
    } finally {
      queued.stop();
    }
  });

  it('runs a call as its own process when the shell died before it read it', async () => {
    process.kill(shell.pid as number, 'SIGKILL');
    // Node has not seen the exit yet: the shell still looks idle, and the call goes to it.
    expect(shell.idle).toBe(true);
    expect(await shell.run('sh', ['-c', 'echo $PPID'])).toEqual({ stdout: `${process.pid}\n`, stderr: '' });
  });

  it('fails the running command if the shell dies, and can be started again', async () => {
    const pid = shell.pid as number;
    const started = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'guest-command-')), 'started');
    const running = shell.run('sh', ['-c', `touch ${started}; sleep 2`]);
    while (!fs.existsSync(started)) await new Promise((r) => setTimeout(r, 10));
    process.kill(pid, 'SIGKILL');
    // It may have done something by now: not run again, but reported.
    await expect(running).rejects.toThrow(/command shell exited \(SIGKILL\) while running sh -c touch .*; sleep 2/);
    fs.rmSync(path.dirname(started), { recursive: true });
    expect(shell.idle).toBe(false);
    shell.revive();
    expect(shell.pid).not.toBe(pid);
    expect((await shell.run('echo', ['back'])).stdout).toBe('back\n');
  });
});

describe('runCommand', () => {
  it('runs a command as a process of its own when the agent has no shell', async () => {
    expect(await runCommand('printf', ['%s', 'a b'])).toEqual({ stdout: 'a b', stderr: '' });
    await expect(runCommand('sh', ['-c', 'echo bad >&2; exit 2'])).rejects.toMatchObject({ code: 2, stderr: 'bad\n' });
  });
});

describe('endMarker', () => {
  const marker = 'katats-0123abcd';

  it("finds the end marker's line and its status", () => {
    expect(endMarker(`hello\nworld\n${marker} 0\n`, marker)).toEqual({ index: 11, status: 0 });
    expect(endMarker(`\n${marker} 127\n`, marker)).toEqual({ index: 0, status: 127 });
  });

  it('waits until the whole line is there', () => {
    expect(endMarker(`out\n${marker} 1`, marker)).toBeUndefined();
    expect(endMarker(`out\n${marker} `, marker)).toBeUndefined();
    expect(endMarker('out\n', marker)).toBeUndefined();
  });

  it('passes over the marker where no status follows it (output that quotes the marker)', () => {
    const out = `\n${marker} was here\n\n${marker} 2\n`;
    expect(endMarker(out, marker)).toEqual({ index: out.lastIndexOf(`\n${marker} 2`), status: 2 });
    expect(endMarker(`\n${marker} 1x\n`, marker)).toBeUndefined();
  });
});
