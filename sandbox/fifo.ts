// containerd's stdio FIFOs as non-blocking streams. Blocking opens, reads or writes
// on a FIFO would each pin a thread of libuv's small pool (4 by default) for as long
// as the peer is absent or silent; a few execs whose stdin nobody opens would then
// starve every other file operation of the daemon, and keep it from exiting. So
// every open is O_NONBLOCK and FIFOs become net.Sockets (epoll, no thread).
import * as fs from 'fs';
import * as net from 'net';
import { promisify } from 'util';

const open = promisify(fs.open);
const fstat = promisify(fs.fstat);
const close = promisify(fs.close);
const WRITER_OPEN_RETRY_MS = 25;

/**
 * Opens a FIFO's write end; undefined if no reader appears within `timeoutMs`, or
 * if the path cannot be opened as a FIFO at all (the output is then discarded).
 */
export async function openFifoWriter(path: string, timeoutMs = 5000): Promise<net.Socket | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let fd: number;
    try {
      // O_NONBLOCK: fails with ENXIO at once while nobody reads, instead of hanging.
      fd = await open(path, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENXIO' || Date.now() > deadline) return undefined;
      await new Promise((r) => setTimeout(r, WRITER_OPEN_RETRY_MS));
      continue;
    }
    return socketOnFifo(path, fd, false).catch(() => undefined);
  }
}

/**
 * Opens a FIFO's read end at once, whether or not a writer exists yet. Linux
 * reports no hang-up to a reader until a writer that came after its open has gone,
 * so the stream simply waits for containerd's client; destroying it abandons the
 * wait without leaving anything behind.
 */
export async function openFifoReader(path: string): Promise<net.Socket> {
  const fd = await open(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  return socketOnFifo(path, fd, true);
}

async function socketOnFifo(path: string, fd: number, readable: boolean): Promise<net.Socket> {
  try {
    // A regular file here would read as an immediate EOF (or be written through
    // the pool); only a FIFO gets the epoll treatment.
    if (!(await fstat(fd)).isFIFO()) throw new Error(`stdio path '${path}' is not a FIFO`);
    return new net.Socket({ fd, readable, writable: !readable });
  } catch (err) {
    await close(fd).catch(() => undefined);
    throw err;
  }
}
