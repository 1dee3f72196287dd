// spawnOnPipes with real processes on this host: what a container sees as its stdio
// (crun passes the same fds on; tests/e2e/guest-stdio.test.ts checks it in a guest),
// and that the agent still has every byte before it reports an exit.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { silentLogger } from '../lib/logger';
import { GuestProcess } from './guest-process';
import { makeFifos, spawnOnPipes } from './stdio-pipes';

jest.setTimeout(30_000);

/** Everything a GuestProcess captured, read as the shim does (ReadStdout/ReadStderr to EOF). */
async function drain(proc: GuestProcess, stream: 'stdout' | 'stderr'): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const { data, eof } = await proc[stream].read(256 * 1024);
    if (eof) return Buffer.concat(parts);
    parts.push(data);
  }
}

/** Our fds that still point at one of `prefix`'s FIFOs. */
function fdsOn(prefix: string): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(prefix)) out.push(fd);
    } catch {
      /* closed meanwhile (the readdir's own fd) */
    }
  }
  return out;
}

describe('spawnOnPipes', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-pipes-'));
  let n = 0;
  const prefix = (): string => path.join(dir, `p${++n}`);
  const sh = async (script: string, opts: { stdin?: boolean; owner?: { uid: number; gid: number }; fifoPrefix?: string } = {}) => {
    const fifoPrefix = opts.fifoPrefix ?? prefix();
    const handle = await spawnOnPipes('/bin/sh', ['-c', script], { fifoPrefix, stdin: opts.stdin ?? false, owner: opts.owner });
    return { proc: new GuestProcess(handle, silentLogger()), fifoPrefix };
  };

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('gives the process FIFOs it can reopen through /dev/stdout and /proc/self/fd', async () => {
    const { proc } = await sh('stat -L -c %F /proc/self/fd/1 /proc/self/fd/2; readlink /proc/self/fd/1; echo x > /dev/stdout; echo y > /proc/self/fd/2; echo z > /dev/stderr');
    const [out, err, status] = await Promise.all([drain(proc, 'stdout'), drain(proc, 'stderr'), proc.exitStatus]);
    expect(status).toBe(0);
    const lines = out.toString().split('\n');
    expect(lines.slice(0, 2)).toEqual(['fifo', 'fifo']);
    expect(lines[2]).not.toMatch(/socket/);
    expect(lines[3]).toBe('x');
    expect(err.toString()).toBe('y\nz\n');
  });

  it('leaves no FIFO on disk and no process end open in the agent', async () => {
    const { proc, fifoPrefix } = await sh('cat; echo done', { stdin: true });
    expect(fs.readdirSync(dir).filter((f) => path.join(dir, f).startsWith(fifoPrefix))).toEqual([]);
    // Only the agent's own three ends: none of the process's (stdout's EOF depends on it).
    expect(fdsOn(fifoPrefix)).toHaveLength(3);
    proc.stdin!.end('in\n');
    expect((await drain(proc, 'stdout')).toString()).toBe('in\ndone\n');
    expect(await proc.exitStatus).toBe(0);
    await new Promise((r) => setImmediate(r));
    expect(fdsOn(fifoPrefix)).toEqual([]);
  });

  it('reports the exit only after output a grandchild writes later has arrived', async () => {
    const { proc } = await sh('(sleep 0.3; echo late) & echo early');
    expect(await proc.exitStatus).toBe(0);
    // Nothing was read before the exit settled: the buffer holds it all, and its end.
    expect((await proc.stdout.read(1 << 20)).data.toString()).toBe('early\nlate\n');
    expect((await proc.stdout.read(1 << 20)).eof).toBe(true);
  });

  it('carries 20,000 lines and a stream of several MiB intact; an unread stream holds the writer back', async () => {
    const { proc } = await sh('i=0; while [ $i -lt 20000 ]; do echo "line $i"; i=$((i+1)); done; head -c 6000000 /dev/zero | tr "\\0" "a" >&2');
    // Nobody reads yet: the agent buffers about 1 MiB, then the process blocks on the pipe.
    await new Promise((r) => setTimeout(r, 500));
    expect(proc.exited).toBe(false);
    const [out, err, status] = await Promise.all([drain(proc, 'stdout'), drain(proc, 'stderr'), proc.exitStatus]);
    expect(status).toBe(0);
    const lines = out.toString().trimEnd().split('\n');
    expect(lines).toHaveLength(20_000);
    expect(lines[19_999]).toBe('line 19999');
    expect(createHash('sha256').update(err).digest('hex')).toBe(createHash('sha256').update(Buffer.alloc(6_000_000, 'a')).digest('hex'));
  });

  it('passes stdin through and ends it with EOF when the agent closes its end', async () => {
    const { proc } = await sh('stat -L -c %F /proc/self/fd/0; wc -c', { stdin: true });
    proc.stdin!.write('twelve bytes');
    proc.stdin!.end();
    expect((await drain(proc, 'stdout')).toString()).toBe('fifo\n12\n');
    expect(await proc.exitStatus).toBe(0);
  });

  it("gives the pipes to the process's user, who can reopen them", async () => {
    const fifoPrefix = prefix();
    const handle = await spawnOnPipes('setpriv', ['--reuid', '4321', '--regid', '4322', '--clear-groups', 'sh', '-c', 'stat -L -c %u:%g:%a /proc/self/fd/1; echo mine > /dev/stdout'], {
      fifoPrefix,
      stdin: false,
      owner: { uid: 4321, gid: 4322 },
    });
    const proc = new GuestProcess(handle, silentLogger());
    const [out, err] = await Promise.all([drain(proc, 'stdout'), drain(proc, 'stderr')]);
    expect(err.toString()).toBe('');
    expect(out.toString()).toBe('4321:4322:600\nmine\n');
    expect(await proc.exitStatus).toBe(0);
  });

  it('a runtime binary that cannot start: 127 and closed output, nothing left open', async () => {
    const fifoPrefix = prefix();
    const handle = await spawnOnPipes(path.join(dir, 'no-such-runtime'), [], { fifoPrefix, stdin: true });
    const proc = new GuestProcess(handle, silentLogger());
    expect(await proc.exitStatus).toBe(127);
    expect(await drain(proc, 'stdout')).toHaveLength(0);
    proc.stdin!.destroy();
    await new Promise((r) => setImmediate(r));
    expect(fdsOn(fifoPrefix)).toEqual([]);
  });

  it('takes FIFOs made ahead (a container init\'s, made at its Create) instead of making them', async () => {
    const fifoPrefix = prefix();
    await makeFifos(fifoPrefix, true);
    for (const name of ['stdin', 'stdout', 'stderr']) expect(fs.statSync(`${fifoPrefix}.${name}`).isFIFO()).toBe(true);
    const handle = await spawnOnPipes('/bin/sh', ['-c', 'cat; echo done'], { fifoPrefix, stdin: true, fifosMade: Promise.resolve() });
    const proc = new GuestProcess(handle, silentLogger());
    proc.stdin!.end('in\n');
    expect((await drain(proc, 'stdout')).toString()).toBe('in\ndone\n');
    expect(await proc.exitStatus).toBe(0);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith(path.basename(fifoPrefix)))).toEqual([]);
    // Told they were made, it makes none itself: with none there, the open fails.
    await expect(spawnOnPipes('/bin/true', [], { fifoPrefix: prefix(), stdin: false, fifosMade: Promise.resolve() })).rejects.toThrow(/ENOENT/);
  });

  it('a failure to make them ahead fails the spawn with its error and leaves nothing on disk', async () => {
    const fifoPrefix = prefix();
    fs.writeFileSync(`${fifoPrefix}.stdout`, 'half made');
    const failed = Promise.reject(new Error('mkfifo: No space left on device'));
    failed.catch(() => undefined);
    await expect(spawnOnPipes('/bin/true', [], { fifoPrefix, stdin: false, fifosMade: failed })).rejects.toThrow('No space left');
    expect(fs.existsSync(`${fifoPrefix}.stdout`)).toBe(false);
  });

  it('replaces a FIFO an earlier agent left behind under the same name', async () => {
    const fifoPrefix = prefix();
    fs.writeFileSync(`${fifoPrefix}.stdout`, 'stale');
    const { proc } = await sh('echo fresh', { fifoPrefix });
    expect((await drain(proc, 'stdout')).toString()).toBe('fresh\n');
    expect(await proc.exitStatus).toBe(0);
  });
});
