import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { waitForExit } from './process-exit';

/** A /proc/<pid>/stat line; the command name may hold spaces and parentheses. */
const stat = (state: string, startTime: number): string => `42 (a (b) c) ${state} 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 ${startTime} 0 0\n`;

describe('waitForExit', () => {
  const procRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-proc-'));
  const write = (text: string): void => {
    fs.mkdirSync(path.join(procRoot, '42'), { recursive: true });
    fs.writeFileSync(path.join(procRoot, '42', 'stat'), text);
  };
  afterEach(() => fs.rmSync(path.join(procRoot, '42'), { recursive: true, force: true }));
  afterAll(() => fs.rmSync(procRoot, { recursive: true, force: true }));

  const watch = (stop = new AbortController().signal) => waitForExit(42, { intervalMs: 10, stop, procRoot });
  const settledSoon = async (p: Promise<boolean>): Promise<boolean | 'pending'> => Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), 100))]);

  it.each([
    ['leaves /proc', () => fs.rmSync(path.join(procRoot, '42'), { recursive: true })],
    ['becomes a zombie', () => write(stat('Z', 1000))],
    ['gives its pid to a later process', () => write(stat('S', 2000))],
  ])('resolves true once the process %s', async (_what, change) => {
    write(stat('S', 1000));
    const exited = watch();
    expect(await settledSoon(exited)).toBe('pending');
    change();
    expect(await exited).toBe(true);
  });

  it('resolves true at once for a process already gone', async () => {
    expect(await watch()).toBe(true);
  });

  it('resolves false when stopped first', async () => {
    write(stat('R', 1000));
    const stop = new AbortController();
    const exited = watch(stop.signal);
    stop.abort();
    expect(await exited).toBe(false);
  });

  it('sees a real process end', async () => {
    const child = spawn('sleep', ['0.2']);
    const t0 = Date.now();
    expect(await waitForExit(child.pid!, { intervalMs: 20, stop: new AbortController().signal })).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
  });
});
