import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { cpuSecondsFromStat, kibField, readProcessStats } from './proc-stats';

describe('process stats from /proc', () => {
  it('reads kB fields in bytes', () => {
    expect(kibField('Name:\tqemu\nVmRSS:\t  2048 kB\n', 'VmRSS')).toBe(2048 * 1024);
    expect(kibField('VmRSS:\t  2048 kB\n', 'Pss')).toBeUndefined();
  });

  it('reads utime + stime after a command name with spaces and parentheses', () => {
    const rest = 'S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 100';
    expect(cpuSecondsFromStat(`42 (a (b) c) ${rest}`)).toBe(3);
    expect(cpuSecondsFromStat('')).toBeUndefined();
  });

  it('reads this process: memory, CPU, threads, files', async () => {
    const stats = (await readProcessStats(process.pid))!;
    expect(stats.rssBytes).toBeGreaterThan(1024 * 1024);
    expect(stats.pssBytes).toBeGreaterThan(0);
    expect(stats.cpuSeconds).toBeGreaterThan(0);
    expect(stats.threads).toBeGreaterThan(1);
    expect(stats.openFds).toBeGreaterThan(2);
  });

  it('answers undefined for a process that is not there', async () => {
    const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'proc-'));
    try {
      expect(await readProcessStats(12345, proc)).toBeUndefined();
      expect(await readProcessStats(0)).toBeUndefined();
    } finally {
      fs.rmSync(proc, { recursive: true, force: true });
    }
  });
});
