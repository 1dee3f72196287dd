// Niceness is per thread on Linux (setpriority(2) with a tid): a process's niceness is
// changed by changing each of its threads'.
import * as fs from 'fs';
import * as os from 'os';
import { statField } from './proc-stat';

/** Sets every thread of `pid` to `nice`; a thread that ended meanwhile, or one we may not change, is skipped. */
export function setThreadsPriority(pid: number | 'self', nice: number): void {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return; // gone
  }
  for (const tid of tids) {
    try {
      os.setPriority(Number(tid), nice);
    } catch {
      /* a thread that ended, or no CAP_SYS_NICE (it then stays lower, which only slows it) */
    }
  }
}

/** Each thread's niceness (/proc/<pid>/task/<tid>/stat, field 19); empty once the process is gone. */
export function threadPriorities(pid: number): number[] {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  return tids.flatMap((tid) => {
    try {
      return [statField(fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'), 19)];
    } catch {
      return []; // a thread that ended
    }
  });
}
