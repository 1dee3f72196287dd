// How often a process woke up: the sum of its threads' voluntary context switches (each
// one a sleep, so a wake-up after it). An idle daemon that polls shows here at once.
import * as fs from 'fs';

export function wakeups(pid: number): number {
  let sum = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      sum += Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return sum;
}

/** The wake-ups of `pid` over the next `ms`. */
export async function wakeupsOver(pid: number, ms: number): Promise<number> {
  const before = wakeups(pid);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return wakeups(pid) - before;
}
