import { execFileSync, spawn, ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { runningQemuPid } from './running-qemu';

describe('runningQemuPid', () => {
  let dir: string;
  const children: ChildProcess[] = [];
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'running-qemu-'))));
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A stand-in VMM whose argv names `pidFile` as QEMU's does; the pid file written as QEMU writes it, at `writtenAt`. */
  function vmm(pidFile: string, writtenAt = pidFile): number {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => undefined, 60_000)', '--', '-pidfile', pidFile], { stdio: 'ignore' });
    children.push(child);
    fs.writeFileSync(writtenAt, `${child.pid}\n`);
    return child.pid!;
  }

  it('finds the VMM whose argv names the work dir\'s pid file, and nothing for a pid another process took', () => {
    const pid = vmm(path.join(dir, 'qemu.pid'));
    expect(runningQemuPid(dir)).toBe(pid);
    const other = spawn('sleep', ['60']);
    children.push(other);
    fs.writeFileSync(path.join(dir, 'qemu.pid'), `${other.pid}\n`);
    expect(runningQemuPid(dir)).toBeUndefined();
    fs.rmSync(path.join(dir, 'qemu.pid'));
    expect(runningQemuPid(dir)).toBeUndefined();
  });

  const asRoot = process.getuid?.() === 0 ? it : it.skip;
  asRoot('finds a VMM started in another work dir since bound here (a spare VM), by the pid file being the same file', () => {
    const origin = path.join(dir, 'origin');
    const workDir = path.join(dir, 'work');
    fs.mkdirSync(origin);
    fs.mkdirSync(workDir);
    const pid = vmm(path.join(origin, 'qemu.pid'));
    expect(runningQemuPid(workDir)).toBeUndefined();
    execFileSync('mount', ['--bind', origin, workDir]);
    try {
      expect(runningQemuPid(workDir)).toBe(pid);
      // Another file of the same name is not the same file.
      fs.rmSync(path.join(origin, 'qemu.pid'));
      fs.writeFileSync(path.join(origin, 'qemu.pid'), `${pid}\n`);
      const elsewhere = path.join(dir, 'elsewhere');
      fs.mkdirSync(elsewhere);
      fs.writeFileSync(path.join(elsewhere, 'qemu.pid'), `${pid}\n`);
      expect(runningQemuPid(elsewhere)).toBeUndefined();
    } finally {
      execFileSync('umount', [workDir]);
    }
  });
});
