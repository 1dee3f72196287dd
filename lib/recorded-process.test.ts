import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { processStartTime, readProcessRecord, recordAlive, recordedProcessRunning, writeProcessRecord } from './recorded-process';

async function withChild(args: string[], body: (pid: number) => Promise<void> | void): Promise<void> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', '--', ...args], { stdio: 'ignore' });
  // spawn returns before the child exec'd: until then its argv is ours.
  while (!fs.readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').includes('setInterval')) await new Promise((r) => setTimeout(r, 10));
  try {
    await body(child.pid!);
  } finally {
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
  }
}

describe('a process recorded in a pid file', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pidfile-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('counts as running only while the pid is alive and carries the exact argument', async () => {
    const pidFile = path.join(dir, 'vmm.pid');
    expect(recordedProcessRunning(pidFile, pidFile)).toBe(false); // no pid file yet
    await withChild(['-pidfile', pidFile], (pid) => {
      fs.writeFileSync(pidFile, `${pid}\n`);
      expect(recordedProcessRunning(pidFile, pidFile)).toBe(true);
      // A substring of an argument is another owner's (a longer path, an id with a suffix).
      expect(recordedProcessRunning(pidFile, path.join(dir, 'vmm'))).toBe(false);
      expect(recordedProcessRunning(pidFile, `${pidFile}x`)).toBe(false);
    });
    expect(recordedProcessRunning(pidFile, pidFile)).toBe(false);
  });

  it('names a process by pid and start time: another process under the same pid is not it', async () => {
    const file = path.join(dir, 'owner');
    await withChild([], (pid) => {
      const record = writeProcessRecord(file, pid);
      expect(readProcessRecord(file)).toEqual(record);
      expect(record.startTime).toBe(processStartTime(pid));
      expect(recordAlive(record)).toBe(true);
      // The same pid, started at another time: a reused pid.
      expect(recordAlive({ pid, startTime: record.startTime + 1 })).toBe(false);
    });
    expect(recordAlive(readProcessRecord(file))).toBe(false);
    expect(readProcessRecord(path.join(dir, 'absent'))).toBeUndefined();
  });
});
