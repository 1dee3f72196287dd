// Finding a sandbox's QEMU from its work dir alone (`delete` after a crash,
// `kata-ts-runtime exec`): QEMU writes its pid to `<workDir>/qemu.pid` (-pidfile), and a
// pid counts only while that process's argv names this very pid file. A VM that was a
// spare shim's before its pod claimed it (sandbox/warm-vm.ts) was started in another
// work dir, since moved here: its argv names the pid file by the old path, which is the
// same file (the work dir is a bind of that directory) as long as the VM's files exist.
import * as fs from 'fs';
import { isZombie, processArgs, readTrimmed } from '../../lib/recorded-process';
import { qemuPaths } from './command-line';

/** The pid of the QEMU running for `workDir`, or undefined (none, a zombie, or a reused pid). */
export function runningQemuPid(workDir: string): number | undefined {
  const { pidFile } = qemuPaths(workDir);
  const pid = Number(readTrimmed(pidFile));
  if (!(pid > 0) || isZombie(pid)) return undefined;
  const args = processArgs(pid);
  const named = args[args.indexOf('-pidfile') + 1];
  if (args.indexOf('-pidfile') < 0 || !named) return undefined;
  return named === pidFile || sameFile(named, pidFile) ? pid : undefined;
}

function sameFile(a: string, b: string): boolean {
  try {
    const [x, y] = [fs.statSync(a), fs.statSync(b)];
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}
