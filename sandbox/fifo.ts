// containerd's stdio FIFOs as non-blocking streams. Blocking reads or writes on a
// FIFO would each pin a thread of libuv's small pool (4 by default) for as long as
// the peer is silent; a few idle execs would then starve every other file
// operation of the daemon. So FIFOs become net.Sockets (epoll, no thread), and only
// the rendezvous of open() may wait, bounded where the peer might never come.
import * as fs from 'fs';
import * as net from 'net';
import { promisify } from 'util';

const open = promisify(fs.open);
const WRITER_OPEN_RETRY_MS = 25;

/** Opens a FIFO's write end; undefined if no reader appears within `timeoutMs`. */
export async function openFifoWriter(path: string, timeoutMs = 5000): Promise<net.Socket | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      // O_NONBLOCK: fails with ENXIO at once while nobody reads, instead of hanging.
      const fd = await open(path, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
      return new net.Socket({ fd, readable: false, writable: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENXIO' || Date.now() > deadline) return undefined;
      await new Promise((r) => setTimeout(r, WRITER_OPEN_RETRY_MS));
    }
  }
}

/**
 * Opens a FIFO's read end. The open waits for the writer (containerd's clients open
 * theirs as soon as a reader exists); reading then never blocks a thread.
 */
export async function openFifoReader(path: string): Promise<net.Socket> {
  pendingReaders.add(path);
  try {
    const fd = await open(path, fs.constants.O_RDONLY);
    return new net.Socket({ fd, readable: true, writable: false });
  } finally {
    pendingReaders.delete(path);
  }
}

/** Reader opens still waiting for their writer; each holds a libuv pool thread. */
const pendingReaders = new Set<string>();

/**
 * Ends an openFifoReader() that is still waiting for a writer (the client went away
 * before opening its end). That open holds a libuv pool thread, and a process cannot
 * exit while one is busy; briefly becoming the writer completes the rendezvous.
 */
export async function releasePendingReader(path: string): Promise<void> {
  try {
    fs.closeSync(await open(path, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
  } catch {
    // ENXIO: nobody waits to read; ENOENT: the FIFO is gone. Nothing to release.
  }
}

/**
 * Before the process exits: releases every reader open still waiting and returns
 * the FIFOs whose open could not be released (their path is gone), which would
 * keep `process.exit` waiting for the pool thread forever.
 */
export async function releaseAllPendingReaders(): Promise<string[]> {
  for (const path of [...pendingReaders]) await releasePendingReader(path);
  for (let i = 0; i < 10 && pendingReaders.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
  return [...pendingReaders];
}
