// The debug console (`kata-ts-runtime exec`): relays a virtio-serial port, whose host
// side is a Unix socket of the VMM, to a root shell on a pseudo-terminal.
//
// A port has no accept(): the guest only sees whether a host is connected. Opened
// non-blocking, a read returns 0 while no host is connected, EAGAIN while one is but
// sent nothing, and data otherwise. So: probe for a host, then relay shells (a new one
// whenever one exits) until the host goes away (a read sees EOF), hang the shell up,
// and probe again.
//
// The port is driven by the event loop (epoll), never the thread pool, so nothing
// here can hold back the agent's own channel (whose blocking reads use that pool).
import * as fs from 'fs';
import * as net from 'net';
import { Duplex } from 'stream';
import { shellExitNotice } from '../lib/debug-console';
import { Logger } from '../lib/logger';
import { DebugShell } from './debug-shell';

/** How often an idle console looks for a host: the wait before a prompt appears. */
const HOST_PROBE_MS = 250;
/** A shell that lived shorter than this is followed by a new one only after this long. */
const RESPAWN_MIN_LIFE_MS = 1000;

export class DebugConsole {
  constructor(
    private readonly devicePath: string,
    private readonly spawnShell: () => DebugShell,
    private readonly logger: Logger,
  ) {}

  /** Serves the port for good, unless an error leaves it unusable (logged). */
  async run(): Promise<void> {
    try {
      for (;;) {
        const host = await this.waitForHost();
        this.logger.info('debug console: host connected, starting a shell');
        await serveConnection(portStream(host.fd), this.spawnShell, host.typedAhead, this.logger);
        this.logger.info('debug console: host gone');
      }
    } catch (err) {
      this.logger.error({ err: (err as Error).message, device: this.devicePath }, 'debug console stopped');
    }
  }

  /** Opens the port and polls until a host is connected; what it already sent goes to the shell. */
  private async waitForHost(): Promise<{ fd: number; typedAhead: Buffer }> {
    const fd = fs.openSync(this.devicePath, fs.constants.O_RDWR | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
    const buffer = Buffer.alloc(4096);
    for (;;) {
      try {
        const n = fs.readSync(fd, buffer, 0, buffer.length, null);
        if (n > 0) return { fd, typedAhead: Buffer.from(buffer.subarray(0, n)) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return { fd, typedAhead: Buffer.alloc(0) };
        fs.closeSync(fd);
        throw err;
      }
      await new Promise((r) => setTimeout(r, HOST_PROBE_MS));
    }
  }
}

/**
 * One host connection: a shell relayed to it, and when that shell exits the host is
 * told in-band (see lib/debug-console.ts) and gets a new one. The host leaving (EOF)
 * hangs the current shell up and ends the connection.
 *
 * A new shell rather than waiting for the host to leave: a client queued behind this
 * one (the VMM accepts it the moment this one closes) can connect before the guest
 * ever sees the port closed, and must still find a shell.
 */
export async function serveConnection(host: Duplex, spawnShell: () => DebugShell, typedAhead: Buffer, logger: Logger): Promise<void> {
  let gone = false;
  const hostGone = new Promise<void>((resolve) => {
    const leave = (): void => {
      gone = true;
      resolve();
    };
    host.once('end', leave);
    host.once('close', leave);
    host.once('error', (err) => {
      logger.warn({ err: err.message }, 'debug console: port error');
      leave();
    });
  });
  let shell: DebugShell | undefined;
  // Input that comes between two shells is kept for the next one.
  const pending = typedAhead.length > 0 ? [typedAhead] : [];
  host.on('data', (data: Buffer) => (shell ? shell.write(data) : pending.push(data)));
  try {
    while (!gone) {
      const started = Date.now();
      const current = spawnShell();
      relayOutput(current, host);
      for (const data of pending.splice(0)) current.write(data);
      shell = current;
      const status = await Promise.race([current.exited, hostGone.then(() => undefined)]);
      if (status === undefined) {
        current.hangUp();
        logger.info({ status: await current.exited }, 'debug console: host went away; shell hung up');
        break;
      }
      shell = undefined;
      logger.info({ status }, 'debug console: shell exited');
      host.write(shellExitNotice(status));
      // A shell that cannot start (or a client that ends it at once) must not make this spin.
      if (Date.now() - started < RESPAWN_MIN_LIFE_MS) await Promise.race([hostGone, new Promise((r) => setTimeout(r, RESPAWN_MIN_LIFE_MS))]);
    }
  } finally {
    host.destroy();
  }
}

/** The shell's output to the host, no faster than the host takes it. */
function relayOutput(shell: DebugShell, host: Duplex): void {
  let paused = false;
  shell.onData((data) => {
    if (host.destroyed || host.write(data) || paused) return;
    paused = true;
    shell.pause();
    host.once('drain', () => {
      paused = false;
      shell.resume();
    });
  });
}

/**
 * The port as a stream on the event loop. Node offers that only for sockets and pipes,
 * not character devices, so the fd goes into a pipe handle, as node-pty does with its
 * terminals. The stream owns the fd from here on: destroying it closes the port.
 */
function portStream(fd: number): net.Socket {
  type PipeBinding = { Pipe: new (type: number) => { open(fd: number): void }; constants: { SOCKET: number } };
  const { Pipe, constants } = (process as unknown as { binding(name: 'pipe_wrap'): PipeBinding }).binding('pipe_wrap');
  const handle = new Pipe(constants.SOCKET);
  try {
    handle.open(fd);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  // Half-open: EOF means the host left; a shutdown(2) of our side would only fail (ENOTSOCK).
  return new net.Socket({ handle, allowHalfOpen: true } as net.SocketConstructorOpts);
}
