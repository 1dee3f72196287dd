// When a process that is not the agent's child has exited. A container's init is
// crun's child, and crun (a child subreaper) waits for every process the init left
// before `crun run` returns; Node has no pidfd to wait on, so /proc is polled.
import * as fs from 'fs';
import * as path from 'path';

interface ProcStat {
  state: string;
  startTime: string;
}

/** Fields of /proc/<pid>/stat after the command name, which may hold spaces and parentheses. */
function readStat(procRoot: string, pid: number): Promise<ProcStat | undefined> {
  return fs.promises.readFile(path.join(procRoot, String(pid), 'stat'), 'utf8').then(
    (text) => {
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      return { state: fields[0], startTime: fields[19] };
    },
    () => undefined,
  );
}

/**
 * Resolves true once process `pid` has exited: gone, a zombie, or its pid taken by a
 * process started later. Resolves false if `stop` aborts first.
 */
export async function waitForExit(pid: number, opts: { intervalMs: number; stop: AbortSignal; procRoot?: string }): Promise<boolean> {
  const procRoot = opts.procRoot ?? '/proc';
  const first = await readStat(procRoot, pid);
  let current = first;
  while (current && current.startTime === first?.startTime && current.state !== 'Z' && current.state !== 'X') {
    if (opts.stop.aborted) return false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, opts.intervalMs);
      opts.stop.addEventListener('abort', done, { once: true });
      function done(): void {
        clearTimeout(timer);
        opts.stop.removeEventListener('abort', done);
        resolve();
      }
    });
    if (opts.stop.aborted) return false;
    current = await readStat(procRoot, pid);
  }
  return true;
}
