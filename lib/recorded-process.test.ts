import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { recordedProcessRunning } from './recorded-process';

describe('a process recorded in a pid file', () => {
  it('counts as running only while the pid is alive and still carries the marker', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pidfile-'));
    const pidFile = path.join(dir, 'vmm.pid');
    expect(recordedProcessRunning(pidFile, 'sandbox-sb1')).toBe(false); // no pid file yet
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', 'sandbox-sb1'], { stdio: 'ignore' });
    try {
      fs.writeFileSync(pidFile, `${child.pid}\n`);
      expect(recordedProcessRunning(pidFile, 'sandbox-sb1')).toBe(true);
      // The same pid under another name: reused, not ours.
      expect(recordedProcessRunning(pidFile, 'sandbox-sb2')).toBe(false);
    } finally {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    expect(recordedProcessRunning(pidFile, 'sandbox-sb1')).toBe(false);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
