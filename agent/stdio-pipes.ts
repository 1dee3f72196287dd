// Runtime processes whose stdin/stdout/stderr are pipes, as under containerd's runc
// shim. Node's stdio 'pipe' is a socketpair, and opening /dev/stdout, /dev/stderr or
// /proc/self/fd/N on a socket fails with ENXIO: images that log there (nginx, httpd)
// die at start. Node has no pipe(2), so each stream is a FIFO made in the process's
// private bundle directory (a container init's at its Create) and unlinked as soon as
// both ends are open: nothing can open it by name afterwards, and nothing is left
// behind however the process ends.
// Inside the container the ends read as `<path> (deleted)` rather than `pipe:[…]`;
// they are pipes all the same (S_IFIFO, reopenable through /proc).
//
// The process gets ends in blocking mode, like any pipe; the agent's ends are
// non-blocking and served on the event loop (net.Socket), never by a thread-pool read
// that a silent process could hold forever. The agent closes the process's ends right
// after spawn(), or the agent's reads would never see EOF.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import { pipeExitStatus, ProcessHandle } from './process-handle';
import { runCommand } from './guest-command';

const { O_RDONLY, O_WRONLY, O_NONBLOCK } = fs.constants;

/** Who owns the pipes, so a process that is not root can reopen its own stdio. */
export interface StdioOwner {
  uid: number;
  gid: number;
}

export interface PipeOptions {
  /** FIFOs are made as `<prefix>.stdin|stdout|stderr`, in a directory only root can enter. */
  fifoPrefix: string;
  stdin: boolean;
  owner?: StdioOwner;
  /** The FIFOs, made ahead by makeFifos; when absent, they are made here. */
  fifosMade?: Promise<void>;
}

interface PipeEnds {
  /** The process's end, blocking. */
  child: number;
  /** The agent's end, non-blocking. */
  agent: number;
}

function fifoNames(stdin: boolean): string[] {
  return [...(stdin ? ['stdin'] : []), 'stdout', 'stderr'];
}

function fifoPaths(fifoPrefix: string, stdin: boolean): string[] {
  return fifoNames(stdin).map((name) => `${fifoPrefix}.${name}`);
}

/**
 * Makes a process's FIFOs. A container's init has them made at its Create, so its
 * Start does not wait for the command shell's round trip (17-50 ms in a TCG guest).
 */
export async function makeFifos(fifoPrefix: string, stdin: boolean): Promise<void> {
  const paths = fifoPaths(fifoPrefix, stdin);
  // A FIFO of an earlier process of the same name, left by an agent that died between
  // mkfifo and unlink, would make mkfifo fail.
  for (const p of paths) fs.rmSync(p, { force: true });
  await runCommand('mkfifo', ['-m', '0600', ...paths]);
}

/** Spawns `binary` with pipes for stdio; the handle's exit follows the process's. */
export async function spawnOnPipes(binary: string, args: string[], opts: PipeOptions): Promise<ProcessHandle> {
  const names = fifoNames(opts.stdin);
  const paths = fifoPaths(opts.fifoPrefix, opts.stdin);
  try {
    await (opts.fifosMade ?? makeFifos(opts.fifoPrefix, opts.stdin));
  } catch (err) {
    for (const p of paths) fs.rmSync(p, { force: true });
    throw err;
  }
  const opened: number[] = [];
  const track = (fd: number): number => (opened.push(fd), fd);
  let ends: { stdin?: PipeEnds; stdout: PipeEnds; stderr: PipeEnds };
  try {
    const at = (name: string): string => paths[names.indexOf(name)];
    ends = {
      stdin: opts.stdin ? openInput(at('stdin'), track) : undefined,
      stdout: openOutput(at('stdout'), track),
      stderr: openOutput(at('stderr'), track),
    };
    if (opts.owner) for (const end of [ends.stdin, ends.stdout, ends.stderr]) if (end) fs.fchownSync(end.child, opts.owner.uid, opts.owner.gid);
  } catch (err) {
    for (const fd of opened) fs.closeSync(fd);
    throw err;
  } finally {
    for (const p of paths) fs.rmSync(p, { force: true });
  }

  const stdout = new net.Socket({ fd: ends.stdout.agent, readable: true, writable: false });
  const stderr = new net.Socket({ fd: ends.stderr.agent, readable: true, writable: false });
  const stdin = ends.stdin ? new net.Socket({ fd: ends.stdin.agent, readable: false, writable: true }) : null;
  let child: ChildProcess;
  try {
    child = spawn(binary, args, { stdio: [ends.stdin?.child ?? 'ignore', ends.stdout.child, ends.stderr.child] });
  } catch (err) {
    for (const stream of [stdout, stderr, stdin]) stream?.destroy();
    throw err;
  } finally {
    // The child has its copies (or never will): ours would keep the pipes open.
    for (const end of [ends.stdin, ends.stdout, ends.stderr]) if (end) fs.closeSync(end.child);
  }
  return { stdout, stderr, stdin, exited: pipeExitStatus(child) };
}

/** Output: the agent reads. Its end opens first, so the writer's open does not wait. */
function openOutput(fifo: string, track: (fd: number) => number): PipeEnds {
  const agent = track(fs.openSync(fifo, O_RDONLY | O_NONBLOCK));
  const child = track(fs.openSync(fifo, O_WRONLY));
  return { agent, child };
}

/**
 * Input: the agent writes; closing its end is the process's EOF. A write end opens
 * without waiting only while a reader exists, and the process's read end must be
 * blocking, so a short-lived non-blocking reader stands in for the open.
 */
function openInput(fifo: string, track: (fd: number) => number): PipeEnds {
  const standIn = fs.openSync(fifo, O_RDONLY | O_NONBLOCK);
  try {
    const agent = track(fs.openSync(fifo, O_WRONLY | O_NONBLOCK));
    const child = track(fs.openSync(fifo, O_RDONLY));
    return { agent, child };
  } finally {
    fs.closeSync(standIn);
  }
}
