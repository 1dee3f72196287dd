// pino loggers: the shim writes to containerd's `log` FIFO in the bundle, the agent to
// the guest console. Components get child loggers (`logger.child({sandbox})`).
import pino from 'pino';

export type Logger = pino.Logger;

/** Where a logger's lines go: a stream, or anything that takes them one by one. */
export type LogSink = NodeJS.WritableStream | pino.DestinationStream;

export function createLogger(destination: LogSink | number, level: string = process.env.KATATS_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, logSink(destination));
}

/** The sink for an fd (written synchronously: a daemon's last lines before exit are not lost), or the sink itself. */
export function logSink(destination: LogSink | number): LogSink {
  return typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination;
}

/** Lines kept by a HeldLog before it has somewhere to send them (the newest). */
const HELD_LOG_BYTES = 64 * 1024;

/**
 * A sink for a process that does not know yet where its log goes (a spare shim daemon,
 * until a pod claims it): it keeps the last lines, and sends them and all later ones to
 * the sink it is given.
 */
export class HeldLog implements pino.DestinationStream {
  private held: string[] = [];
  private bytes = 0;
  private target: LogSink | undefined;

  write(line: string): void {
    if (this.target) {
      this.target.write(line);
      return;
    }
    this.held.push(line);
    this.bytes += line.length;
    while (this.bytes > HELD_LOG_BYTES && this.held.length > 1) this.bytes -= this.held.shift()!.length;
  }

  sendTo(target: LogSink): void {
    for (const line of this.held) target.write(line);
    this.held = [];
    this.bytes = 0;
    this.target = target;
  }
}

/** A logger that drops everything (tests, the short-lived start/delete actions). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
