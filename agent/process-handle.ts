// What the agent needs from a running runtime process, whether its stdio are pipes
// (agent/stdio-pipes.ts) or a pseudo-terminal (agent/terminal.ts).
import { ChildProcess } from 'child_process';
import * as os from 'os';
import { Readable, Writable } from 'stream';

export interface ProcessHandle {
  stdout: Readable | null;
  stderr: Readable | null;
  stdin: Writable | null;
  /** Exit status as a shell reports it: the code, or 128 + signal number. */
  readonly exited: Promise<number>;
  /** Only processes on a terminal can be resized. */
  resize?(columns: number, rows: number): void;
}

export function pipeExitStatus(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? 128 + signalNumber(signal)));
    child.once('error', () => resolve(127));
  });
}

function signalNumber(signal: NodeJS.Signals | null): number {
  if (!signal) return 0;
  return (os.constants.signals as Record<string, number>)[signal] ?? 0;
}
