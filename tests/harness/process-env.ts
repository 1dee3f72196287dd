// What a process was started with: its initial environment (/proc/<pid>/environ), which
// later changes to its own environment do not alter.
import * as fs from 'fs';

/** The value `name` had in `pid`'s environment when it started; undefined if unset. */
export function startEnvValue(pid: number, name: string): string | undefined {
  const entry = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').find((e) => e.startsWith(`${name}=`));
  return entry?.slice(name.length + 1);
}
