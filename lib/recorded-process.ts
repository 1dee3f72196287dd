// Processes known only by a record on disk (a shim daemon, a VMM). Pids are reused once
// a process is gone, so a record names a process by its pid *and* its start time (in
// clock ticks since boot, /proc/<pid>/stat field 22): a different process with the same
// pid never matches. A pid file written by the process itself (QEMU's -pidfile) holds
// the pid alone; such a pid counts only while the process's argv holds an exact
// argument unique to its owner (the pid file's own path, say), never a substring.
import * as fs from 'fs';
import { statField } from './proc-stat';

export interface ProcessRecord {
  pid: number;
  /** Start time in clock ticks after boot. */
  startTime: number;
}

/** The start time of a live process, undefined when there is none with that pid. */
export function processStartTime(pid: number): number | undefined {
  const start = statField(readTrimmed(`/proc/${pid}/stat`), 22);
  return Number.isInteger(start) ? start : undefined;
}

/** Writes "<pid> <start time>" for a live process (mode 0600). */
export function writeProcessRecord(file: string, pid: number): ProcessRecord {
  const startTime = processStartTime(pid);
  if (startTime === undefined) throw new Error(`process ${pid} is not running; nothing to record`);
  fs.writeFileSync(file, `${pid} ${startTime}\n`, { mode: 0o600 });
  return { pid, startTime };
}

export function readProcessRecord(file: string): ProcessRecord | undefined {
  const [pid, startTime] = readTrimmed(file).split(/\s+/).map(Number);
  return pid > 0 && Number.isInteger(startTime) ? { pid, startTime } : undefined;
}

/** True while the recorded process itself (same pid, same start) runs and is no zombie. */
export function recordAlive(record: ProcessRecord | undefined): record is ProcessRecord {
  return record !== undefined && processStartTime(record.pid) === record.startTime && !isZombie(record.pid);
}

/** True while the pid in `pidFile` is alive, no zombie, and has `argument` as one of its exact argv entries. */
export function recordedProcessRunning(pidFile: string, argument: string): boolean {
  const pid = Number(readTrimmed(pidFile));
  return pid > 0 && processArgs(pid).includes(argument) && !isZombie(pid);
}

/** The argv of `pid` (empty if it is gone or unreadable). */
export function processArgs(pid: number): string[] {
  return readTrimmed(`/proc/${pid}/cmdline`).split('\0');
}

export function isZombie(pid: number): boolean {
  return /\) Z /.test(readTrimmed(`/proc/${pid}/stat`));
}

/** SIGKILLs `pid` and waits (at most 2 s) until it is gone or a zombie. */
export async function killAndWait(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return; // already gone
  }
  for (let i = 0; i < 100 && fs.existsSync(`/proc/${pid}`) && !isZombie(pid); i++) await new Promise((r) => setTimeout(r, 20));
}

/** The file's text without surrounding whitespace; '' when it cannot be read. */
export function readTrimmed(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Kills the process `file` records if it still runs (same pid and start time: a reused pid is left alone); its pid if so. */
export async function killRecordedIfAlive(file: string): Promise<number | undefined> {
  const record = readProcessRecord(file);
  if (!recordAlive(record)) return undefined;
  await killAndWait(record.pid);
  return record.pid;
}
