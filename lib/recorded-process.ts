// Processes known only by a pid file (a shim daemon, a VMM): a recorded pid counts as
// that process only while its command line still carries the given marker, because
// pids are reused once the process is gone.
import * as fs from 'fs';

export function recordedProcessRunning(pidFile: string, marker: string): boolean {
  const pid = Number(readTrimmed(pidFile));
  return pid > 0 && readTrimmed(`/proc/${pid}/cmdline`).replace(/\0/g, ' ').includes(marker) && !isZombie(pid);
}

export function isZombie(pid: number): boolean {
  return /\) Z /.test(readTrimmed(`/proc/${pid}/stat`));
}

/** The file's text without surrounding whitespace; '' when it cannot be read. */
export function readTrimmed(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}
