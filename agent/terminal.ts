// Pseudo-terminals for container processes that asked for one. The agent opens the
// pair itself (node-pty's open(), no process) and gives the runtime the slave end,
// opened O_NOCTTY so the runtime's own session never claims it; inside the container
// guest/ctty.c makes it the process's controlling terminal. See OciRuntime.
import { spawn } from 'child_process';
import * as fs from 'fs';
import { Socket } from 'net';
import { PassThrough, Writable } from 'stream';
import { ProcessHandle, pipeExitStatus } from './process-handle';

/** A terminal's size until the shim's first ResizePty. */
export const DEFAULT_TERMINAL_SIZE = { cols: 80, rows: 24 };
/** After the process exits, how long a process it left behind (`cmd &`) may keep the terminal, and so its output, open. */
const TAIL_LIMIT_MS = 1000;

/**
 * node-pty 1.0's open() is untyped and builds its object without running the
 * constructor, so the usual onData/write/destroy are unusable on it. What works are
 * resize() and the fields it sets: the slave's path (we open it O_NOCTTY) and both
 * ends as sockets (we read and write the master, and close the slave's at once). The
 * version is pinned in package.json.
 */
interface OpenedTerminal {
  resize(columns: number, rows: number): void;
  _pty: string;
  _master: Socket;
  _slave: Socket;
}
interface NodePtyOpen {
  open(options: { cols: number; rows: number; encoding: null }): OpenedTerminal;
}

export function spawnOnTerminal(binary: string, args: string[]): ProcessHandle {
  // Loaded only when a terminal is asked for: a native addon the rest can live without.
  const term = (require('node-pty') as NodePtyOpen).open({ ...DEFAULT_TERMINAL_SIZE, encoding: null });
  const master = term._master;
  const stdout = new PassThrough();
  master.on('data', (data: Buffer) => stdout.write(data));
  // Reading the master fails (EIO) once no process holds the slave, after the last
  // byte written to it was read: the socket then closes, and the output is complete.
  master.on('error', () => undefined);
  const masterClosed = new Promise<void>((resolve) => master.once('close', () => resolve()));

  const slave = fs.openSync(term._pty, fs.constants.O_RDWR | fs.constants.O_NOCTTY);
  // open() leaves its slave socket flowing: it would read the process's input, and
  // whichever of the two reads first gets it (typed keys vanished from a shell's
  // line). Our own fd keeps the terminal open until the process holds it.
  term._slave.destroy();
  const child = spawn(binary, args, { stdio: [slave, slave, slave] });
  fs.closeSync(slave);

  const stdin = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      master.write(chunk, () => callback());
    },
    final(callback) {
      // End of input on a terminal is the EOF character (Ctrl-D), not a closed pipe.
      master.write('\x04', () => callback());
    },
  });

  const exited = pipeExitStatus(child).then(async (status) => {
    let timer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([masterClosed.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), TAIL_LIMIT_MS)))]);
    clearTimeout(timer);
    // A loop that stalled past the limit runs timers before it polls: let it read what is there.
    if (!closed) await new Promise((resolve) => setImmediate(resolve));
    stdout.end();
    master.destroy();
    return status;
  });
  return { stdout, stderr: null, stdin, exited, resize: (columns, rows) => term.resize(columns, rows) };
}
