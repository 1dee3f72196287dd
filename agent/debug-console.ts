// The debug console (`kata-ts-runtime exec`): relays a virtio-serial port, whose host
// side is a Unix socket of the VMM, to a root shell on a pseudo-terminal.
//
// A port has no accept(): the guest only sees whether a host is connected. Opened
// non-blocking, a read returns 0 while no host is connected, EAGAIN while one is but
// sent nothing, and data otherwise. So: probe for a host, then run one session (shell
// ↔ port) until the host goes away (its read sees EOF), hang the shell up, and probe
// again. Each connection after the previous shell exited gets a new shell.
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
        const port = portStream(host.fd);
        let shell: DebugShell;
        try {
          shell = this.spawnShell();
        } catch (err) {
          port.destroy();
          throw err;
        }
        await serveSession(port, shell, host.typedAhead, this.logger);
        this.logger.info('debug console: session ended');
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
 * One connection: relays until the host goes away. When the shell exits first, the
 * host is told in-band (see lib/debug-console.ts) and its further input is dropped;
 * when the host goes first, the shell is hung up. Resolves once both are gone.
 */
export async function serveSession(host: Duplex, shell: DebugShell, typedAhead: Buffer, logger: Logger): Promise<void> {
  let shellExited = false;
  let paused = false;
  shell.onData((data) => {
    if (host.destroyed || host.write(data) || paused) return;
    // The host reads slower than the shell writes: stop reading the terminal meanwhile.
    paused = true;
    shell.pause();
    host.once('drain', () => {
      paused = false;
      shell.resume();
    });
  });
  if (typedAhead.length > 0) shell.write(typedAhead);
  host.on('data', (data: Buffer) => {
    if (!shellExited) shell.write(data);
  });
  const hostGone = new Promise<void>((resolve) => {
    host.once('end', resolve);
    host.once('close', resolve);
    host.once('error', (err) => {
      logger.warn({ err: err.message }, 'debug console: port error');
      resolve();
    });
  });
  const status = await Promise.race([shell.exited, hostGone.then(() => undefined)]);
  if (status === undefined) {
    shell.hangUp();
    logger.info({ status: await shell.exited }, 'debug console: host went away; shell hung up');
  } else {
    shellExited = true;
    logger.info({ status }, 'debug console: shell exited');
    host.write(shellExitNotice(status));
    await hostGone;
  }
  host.destroy();
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
