// A host process's footprint from /proc, for the shim's metrics (the VMM's and the
// shim's own): resident and proportional memory, CPU time, threads and open files.
// PSS is what operators sum across pods: the shared rootfs image and QEMU's binary
// count once across all VMs, where RSS would count them in every one.
import { promises as fsp } from 'fs';
import * as path from 'path';
import { statField } from './proc-stat';

export interface ProcessStats {
  rssBytes: number;
  /** Undefined where smaps_rollup cannot be read (kernels before 4.14). */
  pssBytes: number | undefined;
  /** User plus system time. */
  cpuSeconds: number;
  threads: number;
  openFds: number;
}

/**
 * What /proc/<pid>/stat counts CPU time in: USER_HZ, which the kernel fixes at 100 for
 * the user-space ABI whatever CONFIG_HZ is.
 */
const USER_HZ = 100;

/** A "Name:   1234 kB" field of status or smaps_rollup, in bytes. */
export function kibField(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** utime + stime (fields 14 and 15) of /proc/<pid>/stat, in seconds. */
export function cpuSecondsFromStat(stat: string): number | undefined {
  const utime = statField(stat, 14);
  const stime = statField(stat, 15);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / USER_HZ : undefined;
}

async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * The process's figures, or undefined when it is gone (or was never there). Read off
 * the event loop: the kernel's walk of the address space for smaps_rollup runs in
 * libuv's pool, not in the thread that answers the Task API.
 */
export async function readProcessStats(pid: number, procDir = '/proc'): Promise<ProcessStats | undefined> {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const dir = path.join(procDir, String(pid));
  const [status, stat, rollup, openFds] = await Promise.all([
    readOptional(path.join(dir, 'status')),
    readOptional(path.join(dir, 'stat')),
    readOptional(path.join(dir, 'smaps_rollup')),
    fsp.readdir(path.join(dir, 'fd')).then(
      (entries) => entries.length,
      () => 0, // exited meanwhile
    ),
  ]);
  if (status === undefined || stat === undefined) return undefined;
  const threads = /^Threads:\s+(\d+)$/m.exec(status);
  return {
    // A kernel thread or zombie has no VmRSS line: nothing resident.
    rssBytes: kibField(status, 'VmRSS') ?? 0,
    pssBytes: rollup === undefined ? undefined : kibField(rollup, 'Pss'),
    cpuSeconds: cpuSecondsFromStat(stat) ?? 0,
    threads: threads ? Number(threads[1]) : 0,
    openFds,
  };
}
